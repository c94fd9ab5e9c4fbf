"""Your own data end to end: a noisy 3-feature CSV -> train (CLI) -> export -> check -> loader -> report.

The CSV: y = 1.5 a - 2 b + 0.5 c + 3 + noise, noise ~ N(0, 0.1^2), 50 rows, numpy seed 42;
the features are on different scales (a ~ N(0, 1), b ~ U(0, 10), c ~ N(5, 2)). Trained with the
default --test-fraction (0.2 for a CSV): 40 train rows, 10 held-out test rows.
"""

import hashlib
import json

import numpy as np
import pytest

from tests.conftest import run_cli

TRUE_W = np.array([1.5, -2.0, 0.5])
TRUE_B = 3.0
SIGMA = 0.1
ROWS = 50
EPOCHS = 1000
# Optimisation slack: on standardized features the Hessian of the mean loss is 2 x the
# features' correlation matrix (plus 2 for the bias); its eigenvalues for this seed are
# 0.75..1.26 (x 2), so each Keras update at lr 0.01 shrinks the distance to the least-squares
# minimum by >= 1.5%, 1000 updates by >= 1 - exp(-15). The summed loss (torch) has 50x the
# curvature: a contraction factor |1 - lr * 2 * 50 * eig| <= 0.26 per update. 1e-3 is ample.
OPT_SLACK = 1e-3


def make_csv(path):
    rng = np.random.default_rng(42)
    x = np.column_stack([rng.normal(0, 1, ROWS), rng.uniform(0, 10, ROWS), rng.normal(5, 2, ROWS)])
    y = x @ TRUE_W + TRUE_B + rng.normal(0, SIGMA, ROWS)
    lines = ["a,b,c,y"] + [",".join(f"{v:.6f}" for v in (*row, t)) for row, t in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return x


def documented_split(rows, fraction=0.2, seed=0):
    """README "Your own data": the first floor(fraction * rows) of default_rng(seed).permutation(rows)."""
    test = np.sort(np.random.default_rng(seed).permutation(rows)[: int(fraction * rows)])
    train = np.setdiff1d(np.arange(rows), test)
    return train, test, hashlib.sha256(test.astype("<i8").tobytes()).hexdigest()


def rmse_r2(x, y, w, b):
    residual = x @ np.asarray(w) + b - y
    return np.sqrt(np.mean(residual**2)), 1 - np.sum(residual**2) / np.sum((y - y.mean()) ** 2)


def standard_errors(x):
    """Least squares' standard errors for the weights and the bias, given the noise SIGMA."""
    design = np.hstack([x, np.ones((len(x), 1))])
    return SIGMA * np.sqrt(np.diag(np.linalg.inv(design.T @ design)))


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Trained with the CLI (--data --standardize), then exported in-process."""
    from export.all import export_all

    root = tmp_path_factory.mktemp("own")
    x = make_csv(root / "data.csv")
    artifacts = root / "artifacts"
    result = run_cli(
        "-m",
        "train.all",
        "--data",
        str(root / "data.csv"),
        "--standardize",
        "--epochs",
        str(EPOCHS),
        "--probe",
        "2,1:2:3",
        "--artifacts",
        str(artifacts),
    )
    assert result.returncode == 0, result.stderr
    export_all(artifacts)
    return {"artifacts": artifacts, "x": x, "stdout": result.stdout, "csv": root / "data.csv"}


def test_both_frameworks_recover_the_true_weights(own):
    record = json.loads((own["artifacts"] / "training.json").read_text())
    train, _, _ = documented_split(ROWS)
    se = standard_errors(own["x"][train])  # least squares (and both models) saw the train rows only
    # Noise makes even the exact least-squares answer miss the truth by ~1 standard error;
    # 5 standard errors is a bound noise exceeds with probability ~6e-7 per coefficient.
    tolerance = 5 * se + OPT_SLACK
    ref_w, ref_b = np.asarray(record["reference"]["weights"]), record["reference"]["bias"]
    assert np.all(np.abs(ref_w - TRUE_W) <= 5 * se[:3]) and abs(ref_b - TRUE_B) <= 5 * se[3]
    for name in ("keras_linear", "torch_linear"):
        model = record["models"][name]
        w, b = np.asarray(model["weights"]), model["bias"]
        assert np.all(np.abs(w - TRUE_W) <= tolerance[:3]), (name, w, tolerance)
        assert abs(b - TRUE_B) <= tolerance[3], (name, b, tolerance)
        np.testing.assert_allclose(w, ref_w, atol=OPT_SLACK)  # and SGD reached least squares
        assert model["standardization"]["scale"][1] > 2  # b ~ U(0, 10): std ~2.9, folded into w
    assert record["data"]["features"] == ["a", "b", "c"] and record["data"]["n_features"] == 3
    assert record["data"]["target"] == "y" and record["data"]["rows"] == ROWS
    assert "w[a]" in own["stdout"] and "y(x=10, 10, 10)" in own["stdout"]


def test_held_out_rows_are_the_documented_seeded_split_and_never_trained_on(own):
    record = json.loads((own["artifacts"] / "training.json").read_text())
    train, test, digest = documented_split(ROWS)
    assert record["data"]["split"] == {
        "seed": 0,
        "test_fraction": 0.2,
        "train_rows": 40,
        "test_rows": 10,
        "test_index_sha256": digest,
    }
    values = np.loadtxt(own["csv"], delimiter=",", skiprows=1, dtype=np.float32).astype(np.float64)
    x, y = values[:, :3], values[:, 3]
    design = np.hstack([x[train], np.ones((len(train), 1))])
    coef = np.linalg.lstsq(design, y[train], rcond=None)[0]  # least squares on the train rows only
    np.testing.assert_allclose(record["reference"]["weights"], coef[:3], atol=1e-9)
    assert abs(record["reference"]["bias"] - coef[3]) < 1e-9
    for name in ("keras_linear", "torch_linear"):
        w, b = record["models"][name]["weights"], record["models"][name]["bias"]
        np.testing.assert_allclose(w, coef[:3], atol=OPT_SLACK)  # it converged to the train-rows optimum
        assert abs(b - coef[3]) <= OPT_SLACK


def test_table_and_record_show_rmse_and_r2_on_train_and_test(own):
    record = json.loads((own["artifacts"] / "training.json").read_text())
    train, test, _ = documented_split(ROWS)
    values = np.loadtxt(own["csv"], delimiter=",", skiprows=1, dtype=np.float32).astype(np.float64)
    x, y = values[:, :3], values[:, 3]
    lines = own["stdout"].splitlines()
    fits = {**record["models"], "least_squares": record["reference"]}
    for column, name in enumerate(("keras_linear", "torch_linear", "least_squares")):
        w, b = fits[name]["weights"], fits[name]["bias"]
        for part, rows in (("train", train), ("test", test)):
            rmse, r2 = rmse_r2(x[rows], y[rows], w, b)
            got = record["metrics"][name][part]
            assert got["rows"] == len(rows)
            assert got["rmse"] == pytest.approx(rmse, rel=1e-9) and got["r2"] == pytest.approx(r2, rel=1e-9)
            for label, value in ((f"RMSE {part}", rmse), (f"R² {part}", r2)):
                row = next(line for line in lines if line.startswith(label))
                assert row.split()[2 + column] == f"{value:.6g}", (label, name, row)
    # held-out noise: the test RMSE is near the noise's 0.1, on rows no model was fit on
    assert 0.05 < record["metrics"]["least_squares"]["test"]["rmse"] < 0.2
    assert any(
        line.startswith("rows: 40 train, 10 test (--test-fraction 0.2, seed 0)")
        and "least squares fit on the train rows only" in line
        for line in lines
    )


def test_check_bound_is_relative_to_the_target_scale(own):
    from serve.check import Tolerances, run_check

    manifest = json.loads((own["artifacts"] / "manifest.json").read_text())
    values = np.loadtxt(own["csv"], delimiter=",", skiprows=1, dtype=np.float32).astype(np.float64)
    train, _, _ = documented_split(ROWS)
    scale = max(1.0, float(np.std(values[train, 3])))
    assert scale > 3 and manifest["probe"]["headline_tolerance_scale"] == pytest.approx(scale, rel=1e-12)
    rows, _ = run_check(own["artifacts"])
    keras = next(r for r in rows if r.artifact == "keras_linear.onnx" and r.runtime == "onnxruntime")
    assert keras.diff_analytic > 0
    # an --analytic-tol between diff/scale and diff: an absolute bound fails, the relative one passes
    tol = Tolerances(analytic=2 * keras.diff_analytic / scale)
    assert tol.analytic < keras.diff_analytic
    rows, _ = run_check(own["artifacts"], tol)
    assert all(r.ok for r in rows if r.artifact.startswith("keras_linear")), rows
    rows, _ = run_check(own["artifacts"], Tolerances(analytic=0.5 * keras.diff_analytic / scale))
    assert not any(r.ok for r in rows if r.artifact.startswith("keras_linear"))
    result = run_cli("-m", "serve.check", "--artifacts", str(own["artifacts"]))
    assert result.returncode == 0, result.stdout + result.stderr
    bound = f"<= 0.05·max(1, std(y train)) = 0.05·{scale:.6g} = {0.05 * scale:.6g}"
    assert bound in result.stdout, result.stdout


def test_exports_carry_n_inputs_and_pass_the_check(own):
    from serve.check import run_check

    manifest = json.loads((own["artifacts"] / "manifest.json").read_text())
    assert manifest["data"]["file_sha256"] and manifest["data"]["n_features"] == 3
    for entry in manifest["artifacts"]:
        sig = entry["signature"]
        assert sig["inputs"][0]["shape"] == ["batch", 3] and sig["outputs"][0]["shape"] == ["batch", 1]
    # probe: 50 rows, 0/10/-1000/1000, min - span and max + span, then --probe 2 and 1:2:3
    probe = manifest["probe"]["x"]
    assert len(probe) == ROWS + 4 + 2 + 2 and probe[-2:] == [[2, 2, 2], [1, 2, 3]]
    rows, _ = run_check(own["artifacts"])
    assert len(rows) == 6 and all(r.ok for r in rows), [r for r in rows if not r.ok]
    for r in rows:
        assert r.max_diff_reference is not None and r.max_diff_reference < 0.05


def test_loader_predicts_with_three_features(own):
    from serve import PredictInputError, load

    record = json.loads((own["artifacts"] / "training.json").read_text())
    for name in ("keras_linear", "torch_linear"):
        model = load(name, artifacts=own["artifacts"])
        assert model.n_features == 3
        x = own["x"][:5].astype(np.float32)
        expected = (
            x.astype(np.float64) @ np.asarray(record["models"][name]["weights"])
            + record["models"][name]["bias"]
        )
        np.testing.assert_allclose(model.predict(x)[:, 0], expected, atol=1e-4)
        assert model.predict([1.0, 2.0, 3.0]).shape == (1, 1)
        with pytest.raises(PredictInputError, match=r"\(rows, 3\)"):
            model.predict([[1.0, 2.0]])


def test_report_for_many_features_is_predicted_vs_actual(own, tmp_path):
    from train.report import build_report

    files = {p.name for p in build_report(own["artifacts"], tmp_path / "report")}
    assert files == {"predicted_vs_actual.png", "loss.png", "index.html"}
    html = (tmp_path / "report" / "index.html").read_text()
    assert "w[a]" in html and "w[c]" in html and str(own["csv"]) in html
    record = json.loads((own["artifacts"] / "training.json").read_text())
    for name in ("keras_linear", "torch_linear", "least_squares"):
        for part in ("train", "test"):
            for what in ("rmse", "r2"):
                value = record["metrics"][name][part][what]
                assert f'data-key="metrics.{name}.{part}.{what}" data-value="{value!r}"' in html
    assert "RMSE test (10 rows)" in html and "10 rows were held out as test rows" in html


def test_report_refuses_changed_data(own, tmp_path):
    import shutil

    from oneneuron.errors import InputError
    from train.report import build_report

    artifacts = tmp_path / "art"
    shutil.copytree(own["artifacts"], artifacts)
    record = json.loads((artifacts / "training.json").read_text())
    record["data"]["sha256"] = "0" * 64
    (artifacts / "training.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="changed since training; run python -m train.all"):
        build_report(artifacts, tmp_path / "report")
