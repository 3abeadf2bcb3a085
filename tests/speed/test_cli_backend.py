"""``--backend/--precision/--threads`` on ``medisam segment`` and ``medisam info --backends``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medisam.cli import main
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.predict import Predictor
from tests.conftest import disk_image


@pytest.fixture()
def disk_png(tmp_path):
    image, mask = disk_image(128, radius=30)
    path = tmp_path / "disk.png"
    Image.fromarray(image).save(path)
    return path, image, mask


def _read_mask(path) -> np.ndarray:
    from medisam.io import read_image

    return np.asarray(read_image(path).array) > 0


def test_segment_torch_backend_options_match_the_library(disk_png, tmp_path, capsys):
    path, image, _ = disk_png
    out = tmp_path / "mask.png"
    code = main(["segment", str(path), "-o", str(out), "--box", "30,30,100,100", "--model", "litemedsam-tiny",
                 "--device", "cpu", "--backend", "torch", "--precision", "fp32", "--threads", "1"])
    assert code == 0 and out.is_file()
    assert "backend torch, precision fp32, device cpu" in capsys.readouterr().err
    expected = Predictor(load_model("litemedsam-tiny", device="cpu")).set_image(image).predict(
        box=(30, 30, 100, 100)).masks[0]
    got = _read_mask(out)
    got = got[..., 0] if got.ndim == 3 else got
    assert got.shape == expected.shape
    assert np.array_equal(got, expected) or dice(got, expected) >= 0.999


@pytest.mark.parametrize("option, value, message", [
    ("--backend", "tensorrt", "unknown --backend 'tensorrt'; choose one of torch, onnx, openvino or auto"),
    ("--precision", "fp8", "unknown --precision 'fp8'"),
    ("--threads", "0", "--threads must be >= 1"),
])
def test_segment_bad_runtime_option_is_one_line_exit_2(disk_png, tmp_path, capsys, option, value, message):
    path, _, _ = disk_png
    out = tmp_path / "mask.png"
    code = main(["segment", str(path), "-o", str(out), "--box", "30,30,100,100",
                 "--model", "litemedsam-tiny", "--device", "cpu", option, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


def test_segment_onnx_backend_when_installed(disk_png, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    path, image, _ = disk_png
    out = tmp_path / "mask.png"
    assert main(["segment", str(path), "-o", str(out), "--box", "30,30,100,100", "--model", "litemedsam-tiny",
                 "--device", "cpu", "--backend", "onnx"]) == 0
    assert "backend onnx, precision fp32" in capsys.readouterr().err
    expected = Predictor(load_model("litemedsam-tiny", device="cpu")).set_image(image).predict(
        box=(30, 30, 100, 100)).masks[0]
    got = _read_mask(out)
    got = got[..., 0] if got.ndim == 3 else got
    assert dice(got, expected) >= 0.999 or not expected.any()


def test_info_backends_lists_the_auto_choice(capsys):
    assert main(["info", "--backends"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "onnx" in out and "auto =" in out


def test_info_without_input_or_backends_is_an_error(capsys):
    assert main(["info"]) == 2
    assert "--backends" in capsys.readouterr().err
