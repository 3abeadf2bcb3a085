"""The fast prompt-to-mask path: OpenCV upsampling equals the torch reference path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from medisam.models.transform import InputTransform
from medisam.models.upscale_window import FILL_LOGIT
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
        upscaled = a.low_res_logits != FILL_LOGIT  # the window's logits (the whole grid after a fallback)
        assert upscaled.mean() > 0.05
        assert np.abs(a.low_res_logits - b.low_res_logits)[upscaled].max() < 1e-3
        assert np.array_equal(a.masks, b.masks)
        assert np.allclose(a.scores, b.scores, atol=1e-4)
    # one graph run per prompt, two where a random mask reaches its window's edge
    assert 3 <= len(calls) <= 5
    before = len(calls)
    first = fast_pred.predict(box=(20, 20, 80, 80))
    refined = fast_pred.predict(mask=first.low_res_logits[0])  # mask prompt: the exported graph
    assert len(calls) - before in (1, 2) and refined.masks.shape == (1, 100, 100)
    batch = fast_pred.predict_batch([(20, 20, 80, 80), (0, 0, 50, 50)])
    assert np.array_equal(batch.masks, plain_pred.predict_batch([(20, 20, 80, 80), (0, 0, 50, 50)]).masks)


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
        upscaled = got.low_res_logits.numpy() != FILL_LOGIT
        assert np.abs(got.low_res_logits.numpy() - ref.low_res_logits.numpy())[upscaled].max() < 1e-4
        assert np.array_equal(got.low_res_logits.numpy() > 0, ref.low_res_logits.numpy() > 0)
        assert np.allclose(got.iou.numpy(), ref.iou.numpy(), atol=1e-5)
    # one graph run per step, two where the random mask reaches its window's edge
    assert 3 <= len(runs) <= 6 if backend == "onnx" else model._best_compiled is not None


def _blocked(full: np.ndarray, window: np.ndarray) -> np.ndarray:
    """What a fast graph returns for ``window`` of the grid whose logits are ``full`` (B, M, L, L):
    the inverse of ``unshuffle_masks``."""
    r0, r1, c0, c1 = (int(v) for v in window)
    sub = full[:, :, 4 * r0:4 * r1, 4 * c0:4 * c1]
    b, m, h, w = sub.shape[0], sub.shape[1], r1 - r0, c1 - c0
    grid = sub.reshape(b, m, h, 2, 2, w, 2, 2).transpose(0, 2, 5, 3, 6, 4, 7, 1)
    return np.ascontiguousarray(grid).reshape(b, h * w * 16, m)


def _disk_logits(side: int, center: tuple[int, int], radius: float, masks: int = 4) -> np.ndarray:
    """(1, masks, 4*side, 4*side) logits: +10 in a disk, -20 elsewhere."""
    yy, xx = np.mgrid[:4 * side, :4 * side]
    inside = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius ** 2
    return np.broadcast_to(np.where(inside, 10.0, -20.0).astype(np.float32), (1, masks, 4 * side, 4 * side)).copy()


def test_prompt_window_is_the_prompts_extent_with_a_margin(monkeypatch):
    from medisam.models.upscale_window import prompt_window

    box = np.array([[[40.0, 40.0], [80.0, 100.0]]]), np.array([[2.0, 3.0]])  # tokens x 10..20, y 10..25
    assert prompt_window(*box, 64, 256).tolist() == [6, 29, 6, 24]  # margin max(4, ceil(0.1 * 15)) = 4
    big = np.array([[[0.0, 8.0], [240.0, 248.0]]]), np.array([[2.0, 3.0]])  # 60 tokens: margin ceil(6.0) = 6
    assert prompt_window(*big, 64, 256).tolist() == [0, 64, 0, 64]
    # a point outside the box widens the window, padding points (-1) do not; clipped to the grid
    points = np.array([[[250.0, 5.0], [0.0, 0.0], [40.0, 40.0], [80.0, 100.0]]]), np.array([[1.0, -1.0, 2.0, 3.0]])
    assert prompt_window(*points, 64, 256).tolist() == [0, 29, 6, 64]
    # points alone may mean an object of any size: the whole grid
    assert prompt_window(np.array([[[40.0, 40.0], [0.0, 0.0]]]), np.array([[1.0, -1.0]]), 64, 256).tolist() == \
        [0, 64, 0, 64]
    monkeypatch.setenv("MEDISAM_UPSCALE_WINDOW", "0")
    assert prompt_window(*box, 64, 256).tolist() == [0, 64, 0, 64]


def test_decode_fast_upscales_the_window_and_the_whole_grid_where_a_mask_reaches_its_edge():
    from medisam.models.decoder_feeds import FastDecoderInputs, decode_fast

    side, inputs, embedding = 16, FastDecoderInputs(64), torch.zeros(1, 256, 16, 16)
    iou = np.array([[0.9, 0.1, 0.2, 0.3]], np.float32)
    for full, runs_expected in ((_disk_logits(side, (24, 26), 6), 1),   # inside the box's window
                                (_disk_logits(side, (24, 26), 30), 2)):  # runs past it: whole grid
        windows = []

        def run(feeds: dict) -> tuple[np.ndarray, np.ndarray]:
            windows.append(feeds["window"].copy())
            return _blocked(full, feeds["window"]), iou
        out = decode_fast(run, inputs, embedding, None, torch.tensor([[19.0, 17.0, 33.0, 31.0]]), False)
        assert len(windows) == runs_expected
        assert windows[0].tolist() == [0, 12, 0, 13]  # rows 4..7.75, cols 4.75..8.25 tokens + 4
        assert windows[-1].tolist() == ([0, 16, 0, 16] if runs_expected == 2 else [0, 12, 0, 13])
        got = out.low_res_logits.numpy()
        assert got.shape == (1, 1, 64, 64) and out.iou.tolist() == [[pytest.approx(0.9)]]
        assert np.array_equal(got > 0, full[:, :1] > 0)
        r0, r1, c0, c1 = (4 * int(v) for v in windows[-1])
        assert np.array_equal(got[..., r0:r1, c0:c1], full[:, :1, r0:r1, c0:c1])
        assert (np.delete(np.delete(got[0, 0], np.s_[r0:r1], 0), np.s_[c0:c1], 1) == FILL_LOGIT).all()


def test_decode_best_fast_defers_to_the_rule_and_upscales_the_winner_in_the_boxes_window():
    """The graph's argmax is used only where it agrees with ``first_best`` on the same scores
    (a NaN, a tie broken another way -> None: the caller decodes every box)."""
    from medisam.models.decoder_feeds import FastDecoderInputs, decode_best_fast

    inputs, embedding = FastDecoderInputs(64), torch.zeros(1, 256, 16, 16)
    full = _disk_logits(16, (24, 26), 6, masks=1)
    boxes = torch.tensor([[19.0, 17.0, 33.0, 31.0], [10.0, 10.0, 40.0, 40.0]])

    def graph(iou: np.ndarray, index: int):  # noqa: ANN202
        return lambda feeds: (_blocked(full, feeds["window"]), iou, np.array([index]))
    tie = np.array([[0.5, 0, 0, 0], [0.5, 0, 0, 0]], np.float32)
    assert decode_best_fast(graph(tie, 1), inputs, embedding, boxes) is None  # a tie broken the other way
    index, out = decode_best_fast(graph(tie, 0), inputs, embedding, boxes)
    assert index == 0 and out.low_res_logits.shape == (1, 1, 64, 64) and out.iou.tolist() == [[0.5]]
    assert np.array_equal(out.low_res_logits.numpy() > 0, full > 0)
    assert (out.low_res_logits.numpy()[0, 0, 60:, 60:] == FILL_LOGIT).all()  # outside both boxes' window
    nan_first = np.array([[np.nan, 0, 0, 0], [0.9, 0, 0, 0]], np.float32)
    assert decode_best_fast(graph(nan_first, 1), inputs, embedding, boxes) is None  # the rule keeps box 0

def test_fast_inputs_follow_the_embedding():
    from medisam.models.backends import FastDecoderInputs

    inputs = FastDecoderInputs(256)
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


def test_real_masks_upscaled_in_the_box_window_equal_the_whole_grid(real_model, monkeypatch):
    """The bundled LiteMedSAM on the default CPU backend: a box's mask upscaled only in the box's
    window is the whole grid's mask on every bundled sample, and the window was used."""
    from medisam.demo import sample_pairs
    from medisam.io import read_image

    if getattr(real_model, "backend", "torch") == "torch":
        pytest.skip("OpenVINO not installed: the torch backend upscales the whole grid")
    predictor = Predictor(real_model)
    for _, image_path, mask_path in sample_pairs():
        truth = np.asarray(read_image(mask_path).array)
        ys, xs = np.nonzero(truth[..., 0] if truth.ndim == 3 else truth)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        predictor.set_image(read_image(image_path))
        monkeypatch.setenv("MEDISAM_UPSCALE_WINDOW", "1")
        windowed = predictor.predict(box=box)
        monkeypatch.setenv("MEDISAM_UPSCALE_WINDOW", "0")
        whole = predictor.predict(box=box)
        assert (windowed.low_res_logits == FILL_LOGIT).mean() > 0.3  # most of the grid was not upscaled
        assert (whole.low_res_logits == FILL_LOGIT).sum() == 0
        assert np.array_equal(windowed.masks, whole.masks) and windowed.masks.any()
        assert np.allclose(windowed.scores, whole.scores)


def test_a_mask_threshold_the_window_could_cut_is_refused():
    """Propagated masks thresholded below the window's edge test (EDGE_LOGIT) could end at the
    window's edge, so the configuration refuses them with a one-line reason."""
    from medisam.errors import InputError
    from medisam.models.upscale_window import EDGE_LOGIT
    from medisam.predict import PropagationConfig

    assert PropagationConfig(mask_threshold=EDGE_LOGIT).mask_threshold == EDGE_LOGIT
    with pytest.raises(InputError, match="mask_threshold must be a logit in"):
        PropagationConfig(mask_threshold=EDGE_LOGIT - 1.0)
    with pytest.raises(InputError, match="mask_threshold"):
        PropagationConfig(mask_threshold=float("nan"))


def test_correction_clicks_feed_back_the_whole_grids_logits(real_model, monkeypatch):
    """The bench's box-clicks strategy passes each prediction's low-res logits back as the mask
    prompt, so it runs inside ``exact_logits()``: the same masks at every step as with the window
    switched off, on a real image and the bundled model."""
    from medisam.demo import sample_pairs
    from medisam.io import read_image
    from medisam.prompting.strategies import ClicksStrategy

    _, image_path, mask_path = next(iter(sample_pairs()))
    truth = np.asarray(read_image(mask_path).array)
    truth = (truth[..., 0] if truth.ndim == 3 else truth) > 0
    predictor = Predictor(real_model).set_image(read_image(image_path))
    runs = []
    for window in ("1", "0"):
        monkeypatch.setenv("MEDISAM_UPSCALE_WINDOW", window)
        runs.append(ClicksStrategy(3, start="box").run(predictor, truth, np.random.default_rng(0)))
    assert len(runs[0]) == 4
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(*runs))
