"""SAM 2.1 / MedSAM2 registry entries, builds and checkpoint loading (random weights only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.errors import ModelError
from medisam.models import MODELS, get_spec, load_model


def test_sam2_registry_entries():
    files = {"sam2.1-hiera-tiny": "sam2.1_hiera_tiny.pt", "sam2.1-hiera-small": "sam2.1_hiera_small.pt",
             "sam2.1-hiera-base-plus": "sam2.1_hiera_base_plus.pt",
             "sam2.1-hiera-large": "sam2.1_hiera_large.pt", "medsam2": "MedSAM2_latest.pt"}
    for name, file in files.items():
        spec = get_spec(name)
        assert (spec.family, spec.checkpoint_file, spec.sha256, spec.is_test_model) == ("sam2", file, None, False)
    assert get_spec("medsam2").input_size == 512 and get_spec("sam2.1-hiera-large").input_size == 1024
    assert get_spec("sam2-tiny").is_test_model and "sam2-tiny" in MODELS


def test_medsam2_is_sam21_tiny_at_512_px():
    """MedSAM2 loads SAM 2.1 Hiera-T weights: identical parameter names and shapes, 512 px input."""
    medsam2 = get_spec("medsam2").builder()
    tiny = get_spec("sam2.1-hiera-tiny").builder()
    a, b = medsam2.state_dict(), tiny.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    assert (medsam2.image_size, tiny.image_size) == (512, 1024)
    assert sum(p.numel() for p in tiny.parameters()) == pytest.approx(38.9e6, rel=0.01)  # published 38.9 M


def test_published_sam2_without_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDISAM_WEIGHTS", str(tmp_path))
    with pytest.raises(ModelError, match="MedSAM2_latest.pt"):
        load_model("medsam2", device="cpu")


def test_checkpoint_round_trip_and_named_key_mismatch(tmp_path, sam2_tiny):
    net = sam2_tiny.net
    with torch.no_grad():
        net.no_mem_embed.add_(0.5)  # make the saved weights differ from the seeded init
    path = tmp_path / "sam2_tiny.pt"
    torch.save({"model": net.state_dict()}, path)
    with torch.no_grad():
        net.no_mem_embed.sub_(0.5)
    loaded = load_model("sam2-tiny", checkpoint=path, device="cpu")
    assert torch.equal(loaded.net.no_mem_embed, net.no_mem_embed + 0.5)
    assert loaded.checkpoint_sha256 and loaded.net is not net

    bad = {k: v for k, v in net.state_dict().items() if k != "no_mem_embed"}
    bad["extra.weight"] = torch.zeros(2)
    bad["obj_ptr_proj.layers.0.weight"] = torch.zeros(3, 3)
    torch.save({"model": bad}, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as err:
        load_model("sam2-tiny", checkpoint=tmp_path / "bad.pt", device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing keys: no_mem_embed" in msg and "extra.weight" in msg and "obj_ptr_proj.layers.0.weight" in msg


def test_sam2_forward_gives_finite_multiscale_features(sam2_tiny):
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        out = sam2_tiny.net.forward_image(x)
    shapes = [tuple(f.shape) for f in out["backbone_fpn"]]
    assert shapes == [(1, 8, 32, 32), (1, 16, 16, 16), (1, 64, 8, 8)]
    assert all(torch.isfinite(f).all() for f in out["backbone_fpn"])
    assert np.isfinite(sam2_tiny.net.no_mem_embed.detach().numpy()).all()


def test_2d_predictor_points_sam2_models_to_their_own(sam2_tiny):
    from medisam.predict import Predictor
    from medisam.predict.factory import open_predictor
    from medisam.predict.sam2_image import Sam2ImagePredictor

    with pytest.raises(ModelError, match=r"open_predictor\(model\)"):
        Predictor(sam2_tiny)
    assert isinstance(open_predictor(sam2_tiny), Sam2ImagePredictor)


def test_sam2_2d_boxes_decode_in_one_batch_as_each_alone(sam2_tiny):
    """``predict_batch`` decoded one box per call (n decoder passes); one batched pass gives each box's own row."""
    import numpy as np

    from medisam.predict.factory import open_predictor

    rng = np.random.default_rng(3)
    pred = open_predictor(sam2_tiny).set_display_image(rng.uniform(0, 255, (70, 90, 3)))
    boxes = [(5, 5, 40, 30), (20, 10, 85, 66), (0, 0, 89, 69)]
    calls = []
    decode = pred._sam2.predict
    pred._sam2.predict = lambda **kw: calls.append(kw["box"].shape) or decode(**kw)
    batch = pred.predict_batch(boxes)
    assert calls == [(3, 4)]  # one pass for the three boxes
    assert batch.masks.shape == (3, 70, 90) and batch.scores.shape == (3,) and batch.low_res_logits.shape[0] == 3
    for i, box in enumerate(boxes):
        alone = pred.predict(box=box)
        np.testing.assert_allclose(batch.low_res_logits[i], alone.low_res_logits[0], atol=1e-4)
        assert np.array_equal(batch.masks[i], alone.masks[0]) and abs(batch.scores[i] - alone.scores[0]) < 1e-5
    one = pred.predict_batch(boxes[:1])
    assert one.masks.shape == (1, 70, 90) and one.scores.shape == (1,)
