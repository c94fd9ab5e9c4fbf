"""`python -m train.report`: figures are real PNGs, and the page shows the training record's numbers."""

import json
import re
import struct

import numpy as np
import pytest

from tests.conftest import run_cli
from train.report import build_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CELL = re.compile(r'<td class="num" data-key="([^"]+)" data-value="([^"]+)">([^<]*)</td>')


def png_size(path):
    """Width and height from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def lookup(record, key):
    value = record
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@pytest.fixture
def report(exported_dir, tmp_path):
    """The article's report (one feature, with a manifest), written outside the shared fixture dir."""
    out = tmp_path / "report"
    return out, build_report(exported_dir, out)


def test_files_exist_and_are_sensible_pngs(report):
    from matplotlib import image

    out, files = report
    assert sorted(f.name for f in files) == ["fit.png", "index.html", "loss.png"]
    for name in ("fit.png", "loss.png"):
        path = out / name
        width, height = png_size(path)
        assert 400 <= width <= 2000 and 300 <= height <= 2000, (name, width, height)
        assert 10_000 <= path.stat().st_size <= 1_000_000, (name, path.stat().st_size)
        pixels = image.imread(path)  # decodes: a valid PNG
        assert pixels.shape[:2] == (height, width) and float(np.std(pixels)) > 0.01  # not blank


def test_index_numbers_equal_the_training_record(exported_dir, report):
    out, _ = report
    record = json.loads((exported_dir / "training.json").read_text())
    html = (out / "index.html").read_text()
    cells = CELL.findall(html)
    keys = {key for key, _, _ in cells}
    for name in ("keras_linear", "torch_linear"):
        assert {
            f"models.{name}.{k}" for k in ("final_loss", "weights.0", "bias", "headline_y", "train_seconds")
        } <= keys
    assert {"reference.weights.0", "reference.bias", "probe.headline_reference_y"} <= keys
    for key, value, shown in cells:
        assert float(value) == lookup(record, key), key  # the exact value, not a rounded copy
        assert float(shown.replace(",", "")) == pytest.approx(lookup(record, key), rel=1e-5, abs=1e-3), key
    for src in ("fit.png", "loss.png"):
        assert f'<img src="{src}"' in html
    assert "keras_linear.onnx" in html and "earlier training run" not in html  # manifest table, current


def test_cli_writes_into_artifacts_report_and_drops_stale_figures(exported_copy):
    out = exported_copy / "report"
    out.mkdir()
    (out / "predicted_vs_actual.png").write_bytes(b"old run on other data")
    result = run_cli("-m", "train.report", "--artifacts", str(exported_copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(f"wrote {out / 'fit.png'}")
    assert sorted(p.name for p in out.iterdir()) == ["fit.png", "index.html", "loss.png"]


def test_missing_training_record_exits_2_with_fix(tmp_path):
    result = run_cli("-m", "train.report", "--artifacts", str(tmp_path))
    assert result.returncode == 2 and "training.json: not found" in result.stderr
    assert "python -m train.all" in result.stderr and not (tmp_path / "report").exists()
