"""A points-only prompt answered with a box, for models trained on boxes only (LiteMedSAM, MedSAM).

LiteMedSAM was distilled and fine-tuned with box prompts only: asked with one point inside an
object it returns next to nothing (``docs/benchmark.md``, "A click without a box"). The click
still says where the object is, and the model answers boxes well. So a points-only prompt is
answered by a box search on the cached embedding:

1. candidate squares centred on the positive points' box, each side grown by half-widths from
   3 low-res pixels up to the whole image, 1.4x apart (14 boxes for LiteMedSAM, whatever the
   image size), decoded on the cached embedding (one box per decoder call on a CPU:
   :meth:`~medisam.models.promptable.PromptableModel.decode_boxes`);
2. kept where the candidate's mask holds every positive point, no negative point, and is
   enclosed by its box (it touches the box's border on under 5 % of it: a box that cuts
   through its object is too small);
3. the kept candidate with the highest predicted IoU x stability (SAM's stability score: the
   mask at logit +1 over the mask at -1) wins;
4. the answer is the box prompt of the winner's mask: its tight box grown by 5 % (+2 px), the
   box a user would draw, decoded as any box is.

Cost: the candidates' decodes plus one box decode, no new encoding. The box found
is returned with the prediction (:attr:`Prediction.box`) so a user can see and reuse it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from segment_anything.utils.amg import calculate_stability_score

from medisam.errors import PromptError
from medisam.predict.propagation import grown_box
from medisam.prompts import Box, Points

if TYPE_CHECKING:  # pragma: no cover - typing only
    from medisam.models.transform import InputTransform
    from medisam.predict.predictor import Prediction, Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoxSearch:
    """Settings of the box search (see the module docstring)."""

    #: smallest half-width of a candidate, in low-res pixels (the decoder's grid)
    first_half: float = 3.0
    #: ratio of consecutive half-widths
    growth: float = 1.4
    #: a candidate is enclosed when its mask covers less than this share of its box's border
    border: float = 0.05
    #: the answer's box: the winner's mask box grown by this share of its size, plus ``pad`` pixels
    grow: float = 0.05
    pad: float = 2.0


BOX_SEARCH = BoxSearch()


def candidate_boxes(points: Points, hw: tuple[int, int], pixel_per_low_res: float,
                    search: BoxSearch = BOX_SEARCH) -> np.ndarray:
    """``(K, 4)`` XYXY candidate boxes: the positive points' box grown by half-widths
    ``first_half * growth**k`` low-res pixels, until one covers the whole ``(H, W)`` image."""
    h, w = hw
    pos = points.coords[points.labels == 1]
    x0, y0 = pos.min(axis=0)
    x1, y1 = pos.max(axis=0) + 1
    boxes, half = [], search.first_half * pixel_per_low_res
    while True:
        box = (max(0.0, x0 - half), max(0.0, y0 - half), min(float(w), x1 + half), min(float(h), y1 + half))
        boxes.append(box)
        if box == (0.0, 0.0, float(w), float(h)):
            return np.asarray(boxes, dtype=np.float64)
        half *= search.growth


def border_share(mask: np.ndarray, box: np.ndarray) -> float:
    """Share of the pixels on the border of ``box`` (XYXY, ``mask``'s grid) that ``mask`` covers."""
    h, w = mask.shape
    x0, y0 = (int(np.clip(np.floor(v), 0, n - 1)) for v, n in ((box[0], w), (box[1], h)))
    x1, y1 = (int(np.clip(np.ceil(v) - 1, 0, n - 1)) for v, n in ((box[2], w), (box[3], h)))
    rows = np.r_[mask[y0, x0:x1 + 1], mask[y1, x0:x1 + 1]]
    cols = np.r_[mask[y0:y1 + 1, x0], mask[y0:y1 + 1, x1]]
    return float(rows.sum() + cols.sum()) / max(1, rows.size + cols.size)


def stability(logits: np.ndarray, offset: float = 1.0) -> float:
    """SAM's stability score (``calculate_stability_score``, as everything mode uses it): the mask at
    ``+offset`` over the mask at ``-offset``; 0 when empty."""
    score = calculate_stability_score(torch.from_numpy(np.ascontiguousarray(logits[None])), 0.0, offset)
    return float(np.nan_to_num(score.numpy()[0]))


def holds_points(mask: np.ndarray, yx: np.ndarray) -> np.ndarray:
    """Whether ``mask`` holds each ``(y, x)`` of ``yx`` (rounded, clipped to the grid)."""
    h, w = mask.shape
    ys = np.clip(np.round(yx[:, 0]).astype(int), 0, h - 1)
    xs = np.clip(np.round(yx[:, 1]).astype(int), 0, w - 1)
    return mask[ys, xs]


def pick_candidate(logits: np.ndarray, scores: np.ndarray, boxes_low: np.ndarray, pos_low: np.ndarray,
                   neg_low: np.ndarray, search: BoxSearch = BOX_SEARCH) -> int:
    """Index of the winning candidate: ``logits`` ``(K, L, L)``, ``scores`` ``(K,)``, candidate
    boxes and points on the low-res grid (``(K, 4)`` XYXY; ``(n, 2)`` as ``(y, x)``).

    Kept: masks holding no negative point and as many positive points as any candidate holds
    (every one, when a candidate holds them all), enclosed by their box; if none of those is
    enclosed, all of them. A point no candidate holds (a scribble crossing the object's edge,
    a click beside it) thus leaves the candidates that hold the others, where it used to leave
    every candidate, and the whole image's box won (a 36 x 50 MR slice flooded: 1131 pixels
    for an object of 275)."""
    masks = logits > 0
    held = np.array([int(holds_points(m, pos_low).sum()) for m in masks])
    clean = np.array([not holds_points(m, neg_low).any() for m in masks])
    if not clean.any():  # every candidate holds a negative point: judged on the positive points alone
        clean[:] = True
    most = clean & (held == held[clean].max())
    enclosed = most & np.array([border_share(m, b) < search.border for m, b in zip(masks, boxes_low)])
    keep = enclosed if enclosed.any() else most
    value = np.array([float(s) * stability(lg) for s, lg in zip(scores, logits)])
    return int(np.flatnonzero(keep)[np.argmax(value[keep])])


def answer_box(mask: np.ndarray, search: BoxSearch = BOX_SEARCH) -> tuple[float, float, float, float] | None:
    """The box a user would draw around ``mask`` (original grid): its tight box grown by
    ``search.grow`` of its size plus ``search.pad`` pixels, clipped; None when it is empty."""
    tight = Box.from_mask(mask)
    if tight is None:
        return None
    margin = ((tight.x1 - tight.x0) * search.grow + search.pad, (tight.y1 - tight.y0) * search.grow + search.pad)
    grown = grown_box(tight, margin, mask.shape)
    return float(grown.x0), float(grown.y0), float(grown.x1), float(grown.y1)


def low_res_boxes(transform: "InputTransform", boxes: np.ndarray, to_low: float) -> np.ndarray:
    """XYXY pixel ``boxes`` on the low-res grid, clipped to the image's part of it: beyond it the
    grid pads the model's square, and a box edge there would read the padding as "not the mask"
    (a whole-image candidate would pass as enclosed)."""
    valid_h, valid_w = (v * to_low for v in transform.resized_hw)
    return np.minimum(transform.coords_to_model(boxes) * to_low, [valid_w, valid_h, valid_w, valid_h])


@dataclass(frozen=True)
class Candidates:
    """The decoded candidates of one search: ``boxes`` ``(K, 4)`` XYXY pixels, their ``logits``
    ``(K, L, L)`` and predicted IoU ``scores`` ``(K,)``; the boxes and the points on the low-res grid
    (``boxes_low`` XYXY; ``yx_low`` ``(n, 2)`` as ``(y, x)``, in the order of the points)."""

    boxes: np.ndarray
    logits: np.ndarray
    scores: np.ndarray
    boxes_low: np.ndarray
    yx_low: np.ndarray


def decode_candidates(predictor: "Predictor", points: Points, search: BoxSearch = BOX_SEARCH) -> Candidates:
    """Step 1 of the search: the candidate boxes around ``points``, decoded on the cached embedding."""
    transform = predictor.transform
    to_low = int(predictor.model.mask_input_size) / transform.input_size  # model grid -> low-res grid
    boxes = candidate_boxes(points, predictor.image_size, 1.0 / (max(transform.scale_xy) * to_low), search)
    logits, scores = predictor.box_logits([tuple(b) for b in boxes])
    yx_low = transform.coords_to_model(points.coords)[:, ::-1] * to_low
    return Candidates(boxes, logits, scores, low_res_boxes(transform, boxes, to_low), yx_low)


def predict_from_points(predictor: "Predictor", points: Points, multimask: bool | str = False,
                        search: BoxSearch = BOX_SEARCH) -> "Prediction":
    """Answer a points-only prompt (at least one positive point) with the box search; the
    prediction is that of the box found (``multimask`` as for a box), which it carries as ``box``."""
    if not (points.labels == 1).any():
        raise PromptError("a points-only prompt needs a positive point (label 1) to search a box around")
    c = decode_candidates(predictor, points, search)
    boxes, logits = c.boxes, c.logits
    best = pick_candidate(logits, c.scores, c.boxes_low, c.yx_low[points.labels == 1], c.yx_low[points.labels != 1],
                          search)
    found = answer_box(predictor.logits_to_masks(logits[best:best + 1])[0], search)
    if found is None:  # every candidate empty: the widest one, as asked
        found = tuple(float(v) for v in boxes[-1])
    log.info("a points-only prompt answered with the box %s (XYXY pixels; candidate %d of %d)",
             ",".join(f"{v:.0f}" for v in found), best + 1, len(boxes))
    pred = predictor.predict(box=found, multimask=multimask, box_search=False)
    return replace(pred, box=found)


__all__ = ["BOX_SEARCH", "BoxSearch", "Candidates", "answer_box", "border_share", "candidate_boxes",
           "decode_candidates", "holds_points", "low_res_boxes", "pick_candidate", "predict_from_points", "stability"]
