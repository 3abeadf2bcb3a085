import numpy as np
import pytest
import torch

from medisam.errors import ModelError
from medisam.models import MODELS, get_spec, load_model
from medisam.models.transform import InputTransform


def test_registry_has_published_models_and_test_models():
    for name in ("litemedsam", "sam-vit-b", "sam-vit-l", "sam-vit-h", "medsam-vit-b",
                 "litemedsam-tiny", "sam-tiny"):
        assert name in MODELS
    assert get_spec("litemedsam").bundled and get_spec("litemedsam").input_size == 256
    assert get_spec("medsam-vit-b").resize == "square"


def test_unknown_model_lists_known_names():
    with pytest.raises(ModelError, match="known models: litemedsam"):
        get_spec("nope")


def test_sam_without_weights_explains_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDISAM_WEIGHTS", str(tmp_path))
    with pytest.raises(ModelError, match="sam_vit_b_01ec64.pth"):
        load_model("sam-vit-b", device="cpu")


def test_missing_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model("litemedsam-tiny", checkpoint=tmp_path / "missing.pth", device="cpu")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_model("litemedsam-tiny", checkpoint=bad, device="cpu")


@pytest.mark.parametrize("head, said", [(b"\x89PNG\r\n\x1a\n" + bytes(64), "the file is a PNG image"),
                                        (b"\xff\xd8\xff\xe0" + bytes(64), "the file is a JPEG image"),
                                        (b"model weights\n", "the file is a text file"),
                                        (b"\x00\x01\x02\x03", r"the file starts with b'\\x00")])
def test_a_file_that_is_no_checkpoint_says_what_it_is(tmp_path, head, said):
    """torch's own errors were "101" (a text file) or advice about Python objects in the file (a PNG)."""
    path = tmp_path / "weights.pth"
    path.write_bytes(head)
    with pytest.raises(ModelError, match=f"not a PyTorch checkpoint .neither a torch.save zip archive nor a "
                                         f"pickle.: {said}"):
        load_model("litemedsam-tiny", checkpoint=path, device="cpu")


def test_save_load_round_trip_and_mismatched_keys_are_named(tmp_path, tiny_model, tiny_sam):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_model.net.state_dict(), path)
    again = load_model("litemedsam-tiny", checkpoint=path, device="cpu")
    for a, b in zip(tiny_model.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)
    sam_path = tmp_path / "sam.pth"
    torch.save({"model": tiny_sam.net.state_dict()}, sam_path)
    with pytest.raises(ModelError, match="missing keys: .*image_encoder"):
        load_model("litemedsam-tiny", checkpoint=sam_path, device="cpu")


def test_wrong_hash_is_refused(tmp_path, monkeypatch):
    from medisam.models import litemedsam

    fake = tmp_path / "lite_medsam.pth"
    torch.save({}, fake)
    monkeypatch.setattr(litemedsam, "bundled_litemedsam_checkpoint", lambda: fake)
    with pytest.raises(ModelError, match="sha256"):
        load_model("litemedsam", device="cpu")


@pytest.mark.parametrize("name", ["litemedsam-tiny", "sam-tiny"])
def test_encode_decode_shapes_no_nans(name):
    model = load_model(name, device="cpu")
    image = np.random.default_rng(0).uniform(0, 255, (100, 150, 3)).astype(np.float32)
    tensor, t = model.preprocess(image)
    assert tensor.shape == (1, 3, model.spec.input_size, model.spec.input_size)
    assert t.resized_hw[1] == model.spec.input_size
    emb = model.encode(tensor)
    boxes = torch.tensor([[10.0, 10.0, 50.0, 60.0]])
    out = model.decode(emb, boxes=boxes, multimask=True)
    assert out.low_res_logits.shape[1] == 3 and torch.isfinite(out.low_res_logits).all()


def test_transform_longest_side_matches_published_rounding():
    t = InputTransform.for_image(300, 512, 256, "longest")
    assert t.resized_hw == (150, 256)
    assert np.allclose(t.coords_to_model([512, 300, 0, 0]), [256, 150, 0, 0])
    logits = torch.zeros(1, 1, 256, 256)
    logits[..., :150, :256] = 1.0
    up = t.logits_to_original(logits)
    assert up.shape[-2:] == (300, 512) and torch.all(up > 0)
    sq = InputTransform.for_image(300, 512, 1024, "square")
    assert np.allclose(sq.coords_to_model([512, 300]), [1024, 1024])


@pytest.mark.parametrize("shape", [(1, 4000), (4000, 1), (1, 600)])
def test_a_strip_one_pixel_wide_keeps_a_pixel_and_is_segmented(tiny_model, shape):
    """A short side that would round to no pixel at the model's size keeps one (cv2 refused a 0 size)."""
    from medisam.predict import Predictor

    t = InputTransform.for_image(*shape, 256, "longest")
    assert min(t.resized_hw) == 1 and max(t.resized_hw) == 256
    image = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    h, w = shape
    pred = Predictor(tiny_model).set_image(image).predict(box=(0, 0, min(w, 300), min(h, 300)))
    assert pred.masks.shape == (1, *shape)
