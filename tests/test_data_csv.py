"""`--data CSV`: loading, and every validation failure as one line naming file, row and column."""

import json

import numpy as np
import pytest

from oneneuron.errors import InputError
from oneneuron.fsio import sha256_file
from tests.conftest import run_cli
from train.data import load_csv, probe_batch, probe_rows

GOOD = "a,b,y\n1,2,5\n2,1,4\n3,5,14\n4,3,11\n"

# name -> (file content or None for no file, extra CLI args, fragments the one error line must contain)
FAILURES = {
    "missing file": (None, [], ["no such file", "--data"]),
    "empty file": ("", [], ["empty file", "header"]),
    "no header": ("1,2,5\n2,1,4\n3,5,14\n", [], ["line 1", "no header", "e.g. x,y"]),
    "non-numeric cell": (
        "a,b,y\n1,2,5\n2,oops,4\n3,5,14\n4,3,11\n",
        [],
        ["row 2 (line 3)", "column 'b'", "'oops' is not a number"],
    ),
    "empty cell": (
        "a,b,y\n1,2,5\n2,1,4\n3,,14\n4,3,11\n",
        [],
        ["row 3 (line 4)", "column 'b'", "empty cell"],
    ),
    "nan": (
        "a,b,y\n1,2,5\n2,1,NaN\n3,5,14\n4,3,11\n",
        [],
        ["row 2 (line 3)", "column 'y'", "'NaN'", "finite"],
    ),
    "inf": (
        "a,b,y\n1,2,5\n2,1,4\n-inf,5,14\n4,3,11\n",
        [],
        ["row 3 (line 4)", "column 'a'", "'-inf'", "finite"],
    ),
    "beyond float32": (
        "a,b,y\n1,2,5\n2,1,4\n3,5,1e39\n4,3,11\n",
        [],
        ["row 3 (line 4)", "column 'y'", "float32"],
    ),
    "ragged row": ("a,b,y\n1,2,5\n2,1\n3,5,14\n4,3,11\n", [], ["row 2 (line 3)", "2 cells", "3 columns"]),
    "too few rows": ("a,b,y\n1,2,5\n2,1,4\n", [], ["2 data rows for 2 feature(s)", "at least 3"]),
    "constant feature": (
        "a,b,y\n1,7,5\n2,7,4\n3,7,14\n4,7,11\n",
        [],
        ["column 'b'", "constant", "--features"],
    ),
    "missing target": (
        GOOD,
        ["--target", "price"],
        ["no target column 'price'", "columns: a, b, y", "--target"],
    ),
    "unknown feature": (GOOD, ["--features", "a,z"], ["no feature column 'z'", "--features"]),
    "duplicate column": (
        "a,a,y\n1,2,5\n2,1,4\n3,5,14\n4,3,11\n",
        [],
        ["line 1, column 2", "duplicate", "'a'"],
    ),
    "dependent features": ("a,b,y\n1,2,5\n2,4,4\n3,6,14\n4,8,11\n", [], ["linearly dependent", "--features"]),
    "bad --probe width": (GOOD, ["--probe", "1:2:3"], ["--probe point 1:2:3", "2 features"]),
    "test fraction leaves too few rows": (
        GOOD,
        ["--test-fraction", "0.5"],
        [
            "--test-fraction 0.5 holds out 2 of 4 rows",
            "leaving 2",
            "need at least 3",
            "lower --test-fraction",
        ],
    ),
}


@pytest.mark.parametrize("case", FAILURES)
def test_validation_failure_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    content, extra, fragments = FAILURES[case]
    csv_path = tmp_path / "data.csv"
    if content is not None:
        csv_path.write_text(content)
    artifacts = tmp_path / "artifacts"
    result = run_cli("-m", "train.all", "--data", str(csv_path), "--artifacts", str(artifacts), *extra)
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()  # the resolved config (INFO), then the one error line
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in result.stderr, (case, result.stderr)
    for fragment in fragments + ([str(csv_path)] if case != "bad --probe width" else []):
        assert fragment in errors[0], (case, fragment, errors[0])
    assert not artifacts.exists(), f"{case}: created {artifacts}"


def test_failure_leaves_an_existing_artifacts_dir_untouched(tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "training.json").write_text('{"keep": true}')
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n2,nope\n3,4\n")
    result = run_cli("-m", "train.all", "--data", str(tmp_path / "bad.csv"), "--artifacts", str(artifacts))
    assert result.returncode == 2 and "column 'y'" in result.stderr
    assert sorted(p.name for p in artifacts.iterdir()) == ["training.json"]
    assert json.loads((artifacts / "training.json").read_text()) == {"keep": True}


def test_target_and_features_need_data(tmp_path):
    result = run_cli("-m", "train.all", "--features", "a", "--artifacts", str(tmp_path / "a"))
    assert result.returncode == 2 and "pass --data" in result.stderr and not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--test-fraction", "0.2"], "the article's six points are all training data"),
        (["--test-fraction", "1"], "is not in [0, 1)"),
        (["--data", "x.csv", "--test-fraction", "nan"], "is not in [0, 1)"),
        (["--data", "x.csv", "--test-fraction", "a fifth"], "is not a number"),
    ],
)
def test_bad_test_fraction_is_one_line_exit_2(tmp_path, args, fragment):
    result = run_cli("-m", "train.all", *args, "--artifacts", str(tmp_path / "a"))
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "a").exists()


def test_split_is_seeded_bounded_and_recorded():
    from train.data import Dataset
    from train.split import recorded_split, split_data

    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 8)).astype(np.float32)
    y = rng.normal(size=(10, 1)).astype(np.float32)
    data = Dataset(x=x, y=y, features=tuple("abcdefgh"), target="y", source="t.csv")
    # the default 0.2 would hold out 2 of 10 rows, leaving 8 for 8 features + bias: it holds out 1
    auto = split_data(data, None, seed=5)
    assert auto.split.test_rows == 1 and auto.split.train_rows == 9 and auto.split.test_fraction == 0.2
    assert len(auto.train_part().x) == 9 and len(auto.test_part().x) == 1
    with pytest.raises(InputError, match="holds out 2 of 10 rows, leaving 8"):
        split_data(data, 0.2, seed=5)  # asked for explicitly: refused, not shrunk
    bigger = Dataset(x=x[:, :2], y=y, features=("a", "b"), target="y", source="t.csv")
    a, b, c = (split_data(bigger, 0.3, seed) for seed in (1, 1, 2))
    assert a.test_index.tolist() == b.test_index.tolist() and len(a.test_index) == 3
    assert a.test_index.tolist() != c.test_index.tolist()  # another seed, other rows
    train, test = a.train_part(), a.test_part()
    assert sorted(map(tuple, np.vstack([train.x, test.x]).tolist())) == sorted(map(tuple, bigger.x.tolist()))
    assert recorded_split(bigger, a.split).test_index.tolist() == a.test_index.tolist()
    with pytest.raises(InputError, match="differ from the training record's"):
        recorded_split(bigger, c.split.__class__(1, 0.3, 7, 3, c.split.test_index_sha256))
    assert split_data(bigger, 0.0, seed=1).test_part() is None


def test_load_csv_reads_columns_as_float32_with_identity(tmp_path):
    path = tmp_path / "d.csv"
    # a BOM, spaces around cells, a blank line and a trailing newline are all fine
    path.write_text("\ufeff a , b ,y\n1, 2,5\n\n2,1,4\n3,5,14\n4,3,11\n", encoding="utf-8")
    data = load_csv(path)
    assert data.features == ("a", "b") and data.target == "y" and data.n_features == 2
    assert data.x.dtype == np.float32 and data.x.shape == (4, 2) and data.y.shape == (4, 1)
    assert data.x[:, 1].tolist() == [2, 1, 5, 3] and data.y[:, 0].tolist() == [5, 4, 14, 11]
    info = data.info()
    assert info.file_sha256 == sha256_file(path) and info.sha256 == data.sha256
    assert info.features == ("a", "b") and info.target == "y"
    assert info.source == str(path) and info.rows == 4


def test_target_and_feature_selection(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,a,b,price\n1,1,2,5\n2,2,1,4\n3,3,5,14\n4,4,3,11\n")
    data = load_csv(path, target="price", features=("b", "a"))
    assert (
        data.features == ("b", "a")
        and data.x[0].tolist() == [2, 1]
        and data.y[:, 0].tolist() == [5, 4, 14, 11]
    )
    with pytest.raises(InputError, match="is the target"):
        load_csv(path, target="price", features=("a", "price"))


def test_probe_values_mean_every_feature_or_one_row(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(GOOD)
    data = load_csv(path)
    assert probe_rows([(7.0,), (1.0, 2.0)], 2).tolist() == [[7, 7], [1, 2]]
    probe = probe_batch(data, [(7.0,)])
    # rows, then 0, 10, -1000, 1000 in every feature, then min - span and max + span, then --probe
    assert probe.shape == (4 + 4 + 2 + 1, 2)
    assert probe[4:8, 0].tolist() == [0, 10, -1000, 1000]
    assert probe[8].tolist() == [1 - 3, 1 - 4] and probe[9].tolist() == [4 + 3, 5 + 4]
    assert probe[-1].tolist() == [7, 7]


def test_every_bad_cell_is_reported_in_one_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n1,2,5\n2,oops,4\n3,,14\n4,3\n5,1,inf\n6,2,8\n")
    with pytest.raises(InputError) as info:
        load_csv(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 4 bad cells or rows:"
    assert lines[1:] == [
        "  row 2 (line 3), column 'b': 'oops' is not a number; expected e.g. 1.5 or -2e3",
        "  row 3 (line 4), column 'b': empty cell; every cell must hold a number (fill it or drop the row)",
        "  row 4 (line 5): 2 cells but the header has 3 columns; every row needs one value per column",
        "  row 5 (line 6), column 'y': 'inf' is not a finite float32 number (|v| <= 3.4e38, no NaN/inf); "
        "fix or drop the row",
    ]


def test_bad_cells_beyond_the_limit_are_counted_not_listed(tmp_path):
    path = tmp_path / "d.csv"
    rows = [f"{i},{i % 3},x{i}" for i in range(1, 26)]  # 25 rows, every target cell bad
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    result = run_cli("-m", "train.all", "--data", str(path), "--artifacts", str(tmp_path / "artifacts"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    err = result.stderr[result.stderr.index("error: ") :].splitlines()
    assert err[0] == f"error: {path}: 25 bad cells or rows; the first 20:"
    assert [line.split(",")[0] for line in err[1:21]] == [f"  row {i} (line {i + 1})" for i in range(1, 21)]
    assert all("column 'y': 'x" in line for line in err[1:21])
    assert err[21:] == ["  ... and 5 more"]
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(("sep", "name"), [(";", "';'"), ("\t", "tab")])
def test_wrong_delimiter_gets_a_hint(tmp_path, sep, name):
    path = tmp_path / "houses.csv"
    path.write_text(f"sqft{sep}price\n1000{sep}200000\n1500{sep}260000\n2000{sep}330000\n")
    with pytest.raises(InputError) as info:
        load_csv(path, target="price")
    message = str(info.value)
    assert message.startswith(f"{path}: line 1: the header ")
    assert f"separated by {name}, not by commas" in message
    assert "columns would be sqft, price" in message and "save it as comma-separated CSV" in message
    assert "no target column" not in message
