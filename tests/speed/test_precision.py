"""The precision guard and the precision/hardware rules."""

from __future__ import annotations

import math

import pytest
import torch

from medisam.errors import ModelError
from medisam.models import precision as P


def test_guard_accepts_small_drops_and_rejects_large_ones():
    fp32 = [0.90, 0.80, 0.70, 0.95]
    close = [0.899, 0.797, 0.699, 0.945]  # mean drop 0.0025
    far = [0.89, 0.78, 0.69, 0.94]        # mean drop 0.0125
    ok = P.precision_guard("bf16", fp32, close)
    assert ok.accepted and ok.n_cases == 4
    assert ok.delta == pytest.approx(-0.0025)
    bad = P.precision_guard("int8", fp32, far)
    assert not bad.accepted and bad.delta == pytest.approx(-0.0125)
    assert P.precision_guard("int8", fp32, [d + 0.1 for d in fp32]).accepted  # better is fine
    edge = P.precision_guard("bf16", [1.0, 1.0], [0.995, 0.995])
    assert edge.accepted  # exactly at the tolerance
    assert not P.precision_guard("bf16", [1.0], [0.99], tolerance=0.001).accepted


def test_guard_refuses_unpaired_or_empty_inputs():
    with pytest.raises(ValueError, match="paired"):
        P.precision_guard("bf16", [0.9, 0.8], [0.9])
    with pytest.raises(ValueError, match="finite"):
        P.precision_guard("bf16", [0.9], [math.nan])
    empty = P.precision_guard("bf16", [], [])
    assert not empty.accepted and empty.n_cases == 0


def test_guard_on_a_small_real_sample(data_dir):
    """The guard on 2 real CT slices: int8 ONNX encoder vs fp32 ONNX (= torch fp32 to 1e-5)."""
    import numpy as np

    pytest.importorskip("onnxruntime")
    from medisam.io import read_image
    from medisam.io.intensity import to_display
    from medisam.metrics_basic import dice
    from medisam.models import load_model
    from medisam.predict import Predictor

    folder = data_dir / "msd_task09_spleen_ct_slices_mini"
    if not folder.is_dir():
        pytest.skip("spleen slices not available")
    fp32 = load_model("litemedsam", device="cpu", backend="onnx")
    int8 = load_model("litemedsam", device="cpu", backend="onnx", precision="int8")
    d32, d8 = [], []
    for path in sorted((folder / "images").iterdir())[:2]:
        image = read_image(path)
        truth = read_image(folder / "masks" / (path.stem + ".png")).array > 0
        truth = truth[..., 0] if truth.ndim == 3 else truth
        ys, xs = np.nonzero(truth)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        display = to_display(image.array, image.modality, None)
        d32.append(dice(Predictor(fp32).set_display_image(display).predict(box=box).masks[0], truth))
        d8.append(dice(Predictor(int8).set_display_image(display).predict(box=box).masks[0], truth))
    check = P.precision_guard("int8", d32, d8)
    assert check.n_cases == 2 and check.mean_dice_fp32 > 0.5
    assert check.accepted == (check.delta >= -P.DICE_TOLERANCE)
    assert abs(check.delta) < 0.2  # int8 must not break segmentation outright


test_guard_on_a_small_real_sample = pytest.mark.real_weights(test_guard_on_a_small_real_sample)


def test_autocast_dtype_rules(monkeypatch):
    cpu = torch.device("cpu")
    assert P.torch_autocast_dtype("fp32", cpu) is None
    with pytest.raises(ModelError, match="int8"):
        P.torch_autocast_dtype("int8", cpu)
    with pytest.raises(ModelError, match="fp16 is for CUDA"):
        P.torch_autocast_dtype("fp16", cpu)
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: False)
    with pytest.raises(ModelError, match="no native bf16"):
        P.torch_autocast_dtype("bf16", cpu)
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: True)
    assert P.torch_autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ModelError, match="unknown precision"):
        P.check_precision("fp8")
