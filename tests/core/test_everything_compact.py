"""Everything mode keeps each mask as its box and the mask cut to it, never an (N, H, W) array: the
label map, the best match and the crop layers' placement equal those of the dense masks, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from medisam.predict import Predictor
from medisam.prompting.automatic import AutoMaskConfig, AutoMasks, best_match, compact, generate_masks, label_map
from medisam.prompting.crops import CropMasks, place


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """``(n, h, w)`` masks of random blobs, some touching the image's edges, some in a corner pixel."""
    masks = np.zeros((n, h, w), bool)
    for m in masks:
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = min(h, y0 + rng.integers(1, h // 2)), min(w, x0 + rng.integers(1, w // 2))
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
        m[y0, x0] = True  # never empty
    masks[0, 0, 0] = masks[1, -1, -1] = True  # boxes reaching both corners
    masks[2] = False
    masks[2, h - 1, w // 2] = True  # one pixel on the last row
    return masks


def _dense_label_map(masks: np.ndarray) -> np.ndarray:
    """The reference: largest painted first, label i + 1."""
    labels = np.zeros(masks.shape[1:], np.uint8 if len(masks) <= 255 else np.uint16)
    for i in np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable"):
        labels[masks[i]] = i + 1
    return labels


def _dense_best(masks: np.ndarray, truth: np.ndarray) -> int:
    """The reference: the first mask of the highest IoU against ``truth``."""
    inter = (masks & truth).reshape(len(masks), -1).sum(1)
    union = (masks | truth).reshape(len(masks), -1).sum(1)
    return int(np.argmax(np.where(union > 0, inter / np.maximum(union, 1), 0.0)))


@pytest.mark.parametrize("seed", range(4))
def test_label_map_and_best_match_equal_the_dense_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = 37, 53
    masks = _random_masks(rng, 40, h, w)
    scores = rng.random(40).astype(np.float32)
    auto = AutoMasks.from_dense(masks, scores, scores, np.zeros((40, 2), np.float32), "boxes")
    assert len(auto) == 40 and auto.shape == (h, w)
    assert all(np.array_equal(auto.mask(i), masks[i]) for i in range(40))
    np.testing.assert_array_equal(label_map(auto), _dense_label_map(masks))
    for k in range(40):  # each mask itself, shifted by one pixel, and a random object
        for truth in (masks[k], np.roll(masks[k], 1, axis=1), rng.random((h, w)) < 0.05):
            mask, score = best_match(auto, truth)
            i = _dense_best(masks, truth)
            assert np.array_equal(mask, masks[i]) and score == scores[i]
    mask, score = best_match(auto, np.zeros((h, w), bool))  # an empty object: the first mask, as before
    assert np.array_equal(mask, masks[0]) and score == scores[0]


def test_compact_cuts_a_mask_to_its_box():
    mask = np.zeros((6, 8), bool)
    mask[2, 3] = mask[4, 6] = True
    box, crop = compact(mask)
    assert box == (3, 2, 7, 5) and crop.shape == (3, 4) and crop.sum() == 2
    assert compact(np.zeros((6, 8), bool))[0] == (0, 0, 0, 0)


def _dense_place(parts: list[tuple[np.ndarray, np.ndarray, tuple]], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference merge (dense masks placed on the full image, box NMS smaller crop first)."""
    full, scores, area = [], [], []
    for masks, s, crop in parts:
        for m, score in zip(masks, s):
            one = np.zeros((h, w), bool)
            one[crop[1]:crop[3], crop[0]:crop[2]] = m
            full.append(one)
            scores.append(score)
            area.append((crop[2] - crop[0]) * (crop[3] - crop[1]))
    full, scores = np.array(full), np.array(scores, np.float32)
    ys, xs = full.any(2), full.any(1)
    boxes = np.stack([xs.argmax(1), ys.argmax(1), w - 1 - xs[:, ::-1].argmax(1), h - 1 - ys[:, ::-1].argmax(1)], 1)
    rank = np.empty(len(full), np.float32)
    rank[np.lexsort((-scores, np.array(area)))] = np.arange(len(full), 0, -1)
    order = batched_nms(torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(rank),
                        torch.zeros(len(full)), iou_threshold=0.7).numpy()
    order = order[np.argsort(-scores[order], kind="stable")]
    return full[order], scores[order]


@pytest.mark.parametrize("seed", range(3))
def test_crop_masks_land_where_the_dense_placement_puts_them(seed):
    rng = np.random.default_rng(seed)
    h, w = 60, 90
    crops = [(0, 0, w, h), (0, 0, 50, 35), (40, 0, w, 35), (0, 25, 50, h), (40, 25, w, h)]
    dense_parts, parts = [], []
    for crop in crops:
        n = 12
        masks = _random_masks(rng, n, crop[3] - crop[1], crop[2] - crop[0])
        scores = rng.random(n).astype(np.float32)
        dense_parts.append((masks, scores, crop))
        parts.append(CropMasks(AutoMasks.from_dense(masks, scores, scores, np.zeros((n, 2), np.float32)), crop))
    merged = place(parts, h, w, 0.7, "points")
    want, want_scores = _dense_place(dense_parts, h, w)
    assert len(merged) == len(want) and merged.shape == (h, w)
    np.testing.assert_array_equal(merged.scores, want_scores)
    for i in range(len(want)):
        np.testing.assert_array_equal(merged.mask(i), want[i])
    np.testing.assert_array_equal(label_map(merged), _dense_label_map(want))


def _small_discs(self: Predictor, boxes: list) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in for the tiny model's box logits (its masks fill the image): a disc in each box's middle,
    a sixth of its short side, on the low-res grid."""
    low, transform = self.model.mask_input_size, self.transform
    b = transform.coords_to_model(np.asarray(boxes, np.float32)) * (low / transform.input_size)
    yy, xx = (np.mgrid[:low, :low] + 0.5).astype(np.float32)
    logits = np.empty((len(b), low, low), np.float32)
    for out, (x0, y0, x1, y1) in zip(logits, b):
        r = min(x1 - x0, y1 - y0) / 6
        np.subtract(r ** 2, (xx - (x0 + x1) / 2) ** 2 + (yy - (y0 + y1) / 2) ** 2, out=out)
    return logits, np.full(len(b), 0.9, np.float32)


def test_crop_layers_on_the_tiny_model_keep_masks_compact(tiny_model, monkeypatch):
    """A crop-layer run (tiny model's encodings, small masks): every mask stays cut to its tight box,
    together far smaller than N x H x W, and no (N, H, W) array is built on the way (numpy's peak)."""
    import tracemalloc

    h, w = 480, 800
    image = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    pred = Predictor(tiny_model).set_image(image)
    monkeypatch.setattr(Predictor, "box_logits", _small_discs)
    config = AutoMaskConfig(points_per_side=8, grid="boxes", crop_layers=1, pred_iou_thresh=-1e9,
                            stability_score_thresh=-1e9)
    tracemalloc.start()
    found = generate_masks(pred, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dense = len(found) * h * w
    assert len(found) > 100 and found.shape == (h, w)
    assert peak < dense / 2, (peak, dense)  # the dense masks alone would be `dense` bytes
    assert sum(c.size for c in found.crops) < dense / 50
    for (x0, y0, x1, y1), crop in zip(found.boxes, found.crops):
        assert crop.shape == (y1 - y0, x1 - x0)
        assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()  # the tight box
    masks = np.array([found.mask(i) for i in range(len(found))])
    np.testing.assert_array_equal(label_map(found), _dense_label_map(masks))
