"""`python -m train.all --data CSV --test-fraction 0.2`: hold out seeded test rows, and measure the fit.

The split: `numpy.random.default_rng(seed).permutation(rows)`; its first floor(fraction · rows)
entries are the test rows, the rest train both frameworks and the least-squares reference. The
record keeps the seed, the fraction, both row counts and the sha256 of the sorted test indices,
so the report (or anyone) recomputes exactly these rows and can tell when they differ.

A CSV holds out 0.2 by default (`AUTO_TEST_FRACTION`), as many rows as leave features + 1 training
rows (none for a tiny file); an explicit `--test-fraction` that leaves too few is refused. The
article's six points are never split: its table is the article's.

Metrics: RMSE and R² = 1 - SS_res / SS_tot (SS_tot about that subset's own mean), in float64 from
the recorded weights and bias, on the train rows and on the test rows.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence

import numpy as np

from oneneuron.errors import InputError
from oneneuron.record import ErrorMetrics, FitMetrics
from oneneuron.schema import DataSplit
from train.data import Dataset

logger = logging.getLogger(__name__)

AUTO_TEST_FRACTION = 0.2  # a CSV's default --test-fraction


def index_sha256(index: np.ndarray) -> str:
    """sha256 of sorted 0-based row indices as little-endian int64 bytes."""
    return hashlib.sha256(np.ascontiguousarray(np.sort(index), dtype="<i8").tobytes()).hexdigest()


def test_index(rows: int, fraction: float, seed: int, limit: int | None = None) -> np.ndarray:
    """The sorted test row indices: the first floor(fraction · rows) (at most `limit`) of a seeded
    permutation of the rows."""
    n_test = math.floor(round(fraction * rows, 9))
    n_test = n_test if limit is None else min(n_test, limit)
    return np.sort(np.random.default_rng(seed).permutation(rows)[:n_test])


def split_data(data: Dataset, fraction: float | None, seed: int) -> Dataset:
    """`data` with its test rows chosen; `fraction` None: `AUTO_TEST_FRACTION` for a CSV, none for the
    article. Raises InputError when an explicit fraction leaves fewer than features + 1 train rows."""
    rows, need = len(data.x), data.n_features + 1
    if data.source == "article":
        if fraction:
            raise InputError(
                f"--test-fraction {fraction:g}: the article's six points are all training data (its "
                "table is the article's); hold out rows of your own data with --data PATH.csv"
            )
        return data
    explicit = fraction is not None
    fraction = AUTO_TEST_FRACTION if fraction is None else fraction
    index = test_index(rows, fraction, seed)
    if rows - len(index) < need:
        if explicit:
            raise InputError(
                f"{data.source}: --test-fraction {fraction:g} holds out {len(index)} of {rows} rows, "
                f"leaving {rows - len(index)} to train {data.n_features} feature(s) and the bias; need "
                f"at least {need}; lower --test-fraction (0 trains on every row) or add rows"
            )
        index = test_index(rows, fraction, seed, limit=max(0, rows - need))
        logger.info(
            "%s: %d rows; holding out %d test row(s) instead of %g of them, to keep %d training rows",
            data.source,
            rows,
            len(index),
            fraction,
            need,
        )
    split = DataSplit(seed, fraction, rows - len(index), len(index), index_sha256(index))
    return data.with_split(index, split)


def recorded_split(data: Dataset, split: DataSplit | None) -> Dataset:
    """Re-apply the split a record describes to freshly read data; InputError if it differs."""
    if split is None:
        return data
    index = test_index(len(data.x), split.test_fraction, split.seed, limit=split.test_rows)
    if len(index) != split.test_rows or index_sha256(index) != split.test_index_sha256:
        raise InputError(
            f"{data.source}: the test rows recomputed from seed {split.seed} and --test-fraction "
            f"{split.test_fraction:g} differ from the training record's; re-run python -m train.all"
        )
    return data.with_split(index, split)


def error_metrics(x: np.ndarray, y: np.ndarray, weights: Sequence[float], bias: float) -> ErrorMetrics | None:
    """RMSE and R² of y ≈ x @ weights + bias over these rows (None for no rows)."""
    if len(x) == 0:
        return None
    actual = y.reshape(-1).astype(np.float64)
    residual = x.astype(np.float64) @ np.asarray(weights, dtype=np.float64) + float(bias) - actual
    ss_res = float(residual @ residual)
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if len(actual) > 1 and ss_tot > 0 else None
    return ErrorMetrics(len(actual), math.sqrt(ss_res / len(actual)), r2)


def fit_metrics(data: Dataset, weights: Sequence[float], bias: float) -> FitMetrics:
    """Error on the train rows and, with a split, on the test rows."""
    train, test = data.train_part(), data.test_part()
    return FitMetrics(
        error_metrics(train.x, train.y, weights, bias),
        error_metrics(test.x, test.y, weights, bias) if test is not None else None,
    )
