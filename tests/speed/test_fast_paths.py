"""The fast prompt-to-mask path: OpenCV upsampling equals the torch reference path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from medisam.models.transform import InputTransform
from medisam.predict import Predictor
from tests.conftest import disk_image


def _smooth_logits(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random logits (like a decoder's): blurred noise with a real zero crossing."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, size, size)).astype(np.float32)
    return np.stack([cv2.GaussianBlur(x, (0, 0), size / 40) for x in noise]) * 20


@pytest.mark.parametrize("hw", [(512, 512), (531, 570), (449, 598), (100, 37), (256, 256), (1000, 300)])
@pytest.mark.parametrize("low", [256, 64])
def test_opencv_upsampling_matches_f_interpolate(hw, low):
    t = InputTransform.for_image(*hw, 256, "longest")
    logits = _smooth_logits(3, low)
    reference = (t.logits_to_original(torch.from_numpy(logits)[:, None])[:, 0] > 0).numpy()
    fast = t.masks_to_original(logits)
    assert fast.shape == reference.shape == (3, *hw) and fast.dtype == bool
    assert reference.any() and (~reference).any()
    assert (fast != reference).mean() <= 1e-5  # float rounding only, at exact zero crossings


def test_opencv_upsampling_threshold_and_square_resize():
    t = InputTransform.for_image(300, 200, 1024, "square")  # MedSAM ViT-B style: no crop, 256 -> 1024
    logits = _smooth_logits(1, 256, seed=3)
    for threshold in (-1.0, 0.0, 2.5):
        up = t.logits_to_original(torch.from_numpy(logits)[:, None])[:, 0]
        assert (t.masks_to_original(logits, threshold) != (up > threshold).numpy()).mean() <= 1e-5


def test_predictor_outputs_are_numpy_and_unchanged(tiny_model):
    image, _ = disk_image(97, radius=25, center=(50, 45))  # odd size: crop + non-integer scale
    pred = Predictor(tiny_model).set_image(image)
    for result in (pred.predict(box=(20, 15, 80, 75)), pred.predict(points=[(50, 45, 1)], multimask=True),
                   pred.predict_batch([(20, 15, 80, 75), (0, 0, 40, 40)])):
        assert result.masks.dtype == bool and result.masks.shape[1:] == (97, 97)
        assert result.low_res_logits.dtype == np.float32 and result.low_res_logits.flags.c_contiguous
        up = pred._require_image().transform.logits_to_original(torch.from_numpy(result.low_res_logits)[:, None])
        assert (result.masks != (up[:, 0] > 0).numpy()).mean() <= 1e-5
    again = pred.predict(box=(20, 15, 80, 75))
    assert np.array_equal(again.masks, pred.predict(box=(20, 15, 80, 75)).masks)


def test_logits_to_masks_accepts_tensor_and_array(tiny_model):
    image, _ = disk_image(64, radius=15, center=(32, 32))
    pred = Predictor(tiny_model).set_image(image)
    logits = _smooth_logits(2, 256)
    a = pred.logits_to_masks(torch.from_numpy(logits))
    b = pred.logits_to_masks(logits)
    assert a.shape == (2, 64, 64) and np.array_equal(a, b)


@pytest.mark.parametrize("name", ["litemedsam-tiny", "sam-tiny"])
def test_fast_decoder_graph_equals_the_torch_decoder(name):
    from medisam.models import load_model
    from medisam.models.fast_decoder import check_equivalent

    model = load_model(name, device="cpu")
    assert check_equivalent(model.net, model.spec.input_size, atol=1e-4) <= 1e-4


def test_unshuffle_inverts_the_blocked_order():
    from medisam.models.fast_decoder import unshuffle_masks

    side, m = 3, 4
    grid = np.arange(m * (4 * side) ** 2, dtype=np.float32).reshape(1, m, 4 * side, 4 * side)
    blocked = np.empty((1, side * side * 16, m), np.float32)
    for h in range(side):
        for w in range(side):
            for a in range(2):
                for b in range(2):
                    for c in range(2):
                        for d in range(2):
                            row = ((((h * side + w) * 2 + a) * 2 + b) * 2 + c) * 2 + d
                            blocked[0, row] = grid[0, :, 4 * h + 2 * a + c, 4 * w + 2 * b + d]
    assert np.array_equal(unshuffle_masks(blocked, slice(None)), grid)
    assert np.array_equal(unshuffle_masks(blocked, slice(1, None)), grid[:, 1:])


def test_onnx_backend_runs_the_fast_decoder_and_falls_back(tiny_onnx, monkeypatch):
    """Box/point prompts go through the fast graph, mask prompts through the exported one;
    MEDISAM_FAST_DECODER=0 turns it off; both give the same logits."""
    from medisam.models import load_model

    assert tiny_onnx.fast_decoder_session is not None
    assert any(p.name.startswith("decoder.fast.v") for p in tiny_onnx.export_dir.iterdir())
    monkeypatch.setenv("MEDISAM_FAST_DECODER", "0")
    plain = load_model("litemedsam-tiny", device="cpu", backend="onnx")
    assert plain.fast_decoder_session is None and plain.best_decoder_session is None
    image, _ = disk_image(100, radius=25, center=(50, 50))
    fast_pred, plain_pred = Predictor(tiny_onnx).set_image(image), Predictor(plain).set_image(image)
    calls = []
    run = tiny_onnx.fast_decoder_session.run
    monkeypatch.setattr(tiny_onnx, "fast_decoder_session",
                        type("Spy", (), {"run": lambda self, *a: calls.append(1) or run(*a)})())
    for kwargs in ({"box": (20, 20, 80, 80)}, {"points": [(50, 50, 1), (5, 5, 0)], "multimask": True},
                   {"box": (20, 20, 80, 80), "points": [(50, 50, 1)]}):
        a, b = fast_pred.predict(**kwargs), plain_pred.predict(**kwargs)
        assert a.low_res_logits.shape == b.low_res_logits.shape
        assert np.abs(a.low_res_logits - b.low_res_logits).max() < 1e-3
        assert np.allclose(a.scores, b.scores, atol=1e-4)
    assert len(calls) == 3
    first = fast_pred.predict(box=(20, 20, 80, 80))
    refined = fast_pred.predict(mask=first.low_res_logits[0])  # mask prompt: the exported graph
    assert len(calls) == 4 and refined.masks.shape == (1, 100, 100)
    batch = fast_pred.predict_batch([(20, 20, 80, 80), (0, 0, 50, 50)])
    assert np.abs(batch.low_res_logits - plain_pred.predict_batch([(20, 20, 80, 80), (0, 0, 50, 50)]).low_res_logits
                  ).max() < 1e-3


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backends_upscale_only_the_best_box(tiny_onnx, backend):
    """``decode_best`` on ONNX Runtime / OpenVINO runs the best-of-boxes graph and gives what
    decoding every box and keeping the best gives: the same index (the first of equal scores),
    score and logits."""
    from medisam.models import load_model
    from medisam.models.promptable import PromptableModel

    if backend == "openvino":
        pytest.importorskip("openvino")
    model = tiny_onnx if backend == "onnx" else load_model("litemedsam-tiny", device="cpu", backend="openvino")
    pred = Predictor(model).set_image(disk_image(97, radius=25, center=(50, 45))[0])
    embedding = pred._require_image().embedding
    runs = []
    if backend == "onnx":
        session = model.best_decoder_session
        model._best_session = type("Spy", (), {"run": lambda self, *a: runs.append(1) or session.run(*a)})()
    for boxes in ([(20, 15, 80, 75), (10, 5, 90, 90), (30, 30, 60, 60)], [(20, 15, 80, 75)] * 3, [(0, 0, 40, 40)]):
        boxes_t = pred._boxes_on_model_grid(boxes, "test")
        index, got = model.decode_best(embedding, boxes_t)
        ref_index, ref = PromptableModel.decode_best(model, embedding, boxes_t)  # every box decoded
        assert index == ref_index and (index == 0 or len(set(boxes)) > 1)
        assert got.low_res_logits.shape == (1, 1, 256, 256) and got.iou.shape == (1, 1)
        assert np.abs(got.low_res_logits.numpy() - ref.low_res_logits.numpy()).max() < 1e-4
        assert np.allclose(got.iou.numpy(), ref.iou.numpy(), atol=1e-5)
    assert len(runs) == 3 if backend == "onnx" else model._best_compiled is not None


def test_best_outputs_defer_to_the_rule_on_nan_and_ties():
    """The graph's argmax is used only where it agrees with ``first_best`` on the same scores."""
    from medisam.models.decoder_feeds import best_outputs

    blocked = np.arange(16, dtype=np.float32).reshape(1, 16, 1)
    tie = np.array([[0.5, 0, 0, 0], [0.5, 0, 0, 0]], np.float32)
    assert best_outputs(blocked, tie, np.array([1])) is None  # a tie broken the other way
    index, out = best_outputs(blocked, tie, np.array([0]))
    assert index == 0 and out.low_res_logits.shape == (1, 1, 4, 4) and out.iou.tolist() == [[0.5]]
    nan_first = np.array([[np.nan, 0, 0, 0], [0.9, 0, 0, 0]], np.float32)
    assert best_outputs(blocked, nan_first, np.array([1])) is None  # the rule keeps box 0


def test_fast_inputs_follow_the_embedding():
    from medisam.models.backends import FastDecoderInputs

    inputs = FastDecoderInputs()
    emb = torch.arange(2 * 4, dtype=torch.float32).reshape(1, 2, 2, 2)
    first = inputs.tokens(emb)
    assert first.shape == (1, 4, 2) and np.array_equal(first[0, :, 1], np.arange(4, 8))
    assert inputs.tokens(emb) is first  # same tensor: reused
    emb.add_(1)  # changed in place: recomputed
    assert np.array_equal(inputs.tokens(emb)[0, :, 0], np.arange(1, 5))
    other = emb.clone()
    assert inputs.tokens(other) is not first


def test_set_display_image_with_a_precomputed_key(tiny_model):
    from medisam.predict.cache import embedding_key

    image, _ = disk_image(64, radius=15, center=(32, 32))
    display = image.astype(np.float32)
    pred = Predictor(tiny_model)
    key = embedding_key(display, tiny_model.cache_signature)
    first = pred.set_display_image(display, key=key).predict(box=(10, 10, 54, 54))
    misses = pred.cache.misses
    again = pred.set_display_image(display).predict(box=(10, 10, 54, 54))  # same key: a cache hit
    assert pred.cache.misses == misses and np.array_equal(first.masks, again.masks)
