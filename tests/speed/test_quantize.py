"""INT8 encoder (NNCF) for the OpenVINO backend: made once per export, reused, close to fp32."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.models import load_model
from medisam.models.quantize import AUGMENTATIONS, calibration_inputs, quantized_encoder_path

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def test_calibration_inputs_are_preprocessed_variants():
    model = load_model("litemedsam-tiny", device="cpu", backend="torch")
    image = np.random.default_rng(0).uniform(0, 255, (40, 60, 3)).astype(np.float32)
    inputs = calibration_inputs(model.preprocess, [image])
    assert len(inputs) == AUGMENTATIONS
    assert all(x.shape == (1, 3, 256, 256) and x.dtype == np.float32 for x in inputs)
    assert not np.allclose(inputs[0], inputs[-1])  # the variants differ


def test_int8_backend_quantises_once_and_stays_close(capsys):
    torch_model = load_model("litemedsam-tiny", device="cpu", backend="torch")
    fp32 = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="fp32")
    try:
        int8 = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="int8")
    except Exception as exc:  # e.g. a CPU without VNNI: int8 is not offered there
        pytest.skip(f"int8 not available here: {exc}")
    err = capsys.readouterr().err
    assert "quantising the litemedsam-tiny encoder to int8" in err
    target = quantized_encoder_path(int8.export_dir)
    assert target.is_file() and target.with_suffix(".bin").is_file()
    assert int8.precision == "int8" and int8.cache_signature != fp32.cache_signature
    x = torch_model.preprocess(np.random.default_rng(1).uniform(0, 255, (64, 64, 3)).astype(np.float32))[0]
    a, b = fp32.encode(x), int8.encode(x)
    assert a.shape == b.shape == (1, 256, 64, 64)
    corr = np.corrcoef(a.numpy().ravel(), b.numpy().ravel())[0, 1]
    assert corr > 0.9, corr  # quantised, not broken
    mtime = target.stat().st_mtime
    load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="int8")
    assert "quantising" not in capsys.readouterr().err and target.stat().st_mtime == mtime
