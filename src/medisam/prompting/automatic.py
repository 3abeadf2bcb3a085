"""Automatic ("everything") mask generation on medisam's Predictor.

Modelled on segment_anything's ``SamAutomaticMaskGenerator`` (one crop layer): a regular
grid of prompts is decoded in bounded batches on the one cached embedding, masks are
filtered by predicted IoU and stability score, and duplicates are removed by box NMS. It
reuses ``segment_anything.utils.amg``.

The grid (``AutoMaskConfig.grid``):

* ``points``: SAM's grid of single positive points (three multimask outputs per point);
* ``boxes``: a multi-scale grid of box prompts, each scale tiling the image with 50 %
  overlap, down to tiles of about ``2 / points_per_side`` of the image side;
* ``auto`` (default): boxes for models trained on box prompts only
  (``ModelSpec.box_from_points``: LiteMedSAM, MedSAM), points otherwise. LiteMedSAM's point
  masks are a few pixels with predicted IoU below 0.25 (multimask) and stability 0 or NaN
  (single mask), so its point grid keeps nothing at all; its box masks score predicted IoU
  about 0.85 and stability about 0.8.

Each grid has its own filter defaults (:data:`GRID_THRESHOLDS`): SAM's 0.88 / 0.95 for
points; 0.8 / 0.7 for boxes, which on kvasir_seg and ph2_dermoscopy keep 5-30 masks per
image where SAM's keep none.

Difference from SAM, for CPU speed: the IoU/stability filters and NMS run on the low-res
logit grid (cropped to the image area) and only the surviving masks are upsampled to the
original image, instead of upsampling every candidate first. Each mask is then kept as its bounding box and
the mask cut to it (:class:`AutoMasks`), never as an ``(N, H, W)`` array: crop layers keep hundreds of
nucleus-sized masks on tiles of millions of pixels. ``crop_layers`` re-runs the grid on
zoomed crops for small objects (:mod:`medisam.prompting.crops`, one encoding per crop); small-region
post-processing is not implemented.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from torchvision.ops import batched_nms

from medisam.errors import PromptError
from medisam.models.promptable import points_per_call
from medisam.models.spec import ModelSpec
from medisam.predict.predictor import Predictor

log = logging.getLogger(__name__)

GRIDS = ("auto", "points", "boxes")
#: (predicted IoU, stability) filter defaults of each grid: SAM's for points; for boxes, what
#: box masks of LiteMedSAM score (module docstring).
GRID_THRESHOLDS = {"points": (0.88, 0.95), "boxes": (0.8, 0.7)}


@dataclass(frozen=True)
class AutoMaskConfig:
    """Parameters of automatic mask generation (SAM's defaults except ``points_per_side``).

    ``points_per_side``: the grid's density: S x S points, or box tiles down to about
    ``2 / S`` of the image side (S=16: 1 + 9 + 49 + 225 boxes). ``pred_iou_thresh`` and
    ``stability_score_thresh``: None takes the grid's default (:data:`GRID_THRESHOLDS`).
    ``multimask=False`` decodes only the single-mask output per point (box prompts always
    give their single mask). ``box_scales`` overrides the box tiles' scales. ``crop_layers`` N > 0
    also runs the grid on N layers of zoomed crops (``4**i`` crops in layer i, overlapping by
    ``crop_overlap_ratio`` of the short side; :mod:`medisam.prompting.crops`): small objects such as
    nuclei, at 1 + 4 + ... encodings instead of one.
    """

    points_per_side: int = 16
    #: grid points per decoder call; None: ``promptable.points_per_call`` (8 on a CPU, 64 on a GPU)
    points_per_batch: int | None = None
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_area: int = 0
    multimask: bool = True
    grid: str = "auto"
    box_scales: tuple[float, ...] | None = None
    crop_layers: int = 0
    crop_overlap_ratio: float = 512 / 1500

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise PromptError(f"everything mode's grid must be auto, points or boxes, got {self.grid!r}")
        if not 1 <= self.points_per_side <= MAX_POINTS_PER_SIDE:  # 100000 was numpy's MemoryError for 74.5 GiB
            raise PromptError(f"everything mode needs 1..{MAX_POINTS_PER_SIDE} points per side (8..64 is usual, "
                              f"16 the default), got {self.points_per_side}")
        if self.points_per_batch is not None and self.points_per_batch < 1:
            raise PromptError(f"points_per_batch must be >= 1 (or None for the device's default), "
                              f"got {self.points_per_batch}")
        scores = ("pred_iou_thresh", "stability_score_thresh")  # filters on scores that are at most 1
        for name in (*scores, "stability_score_offset", "box_nms_thresh"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise PromptError(f"{name} must be a finite number, got {value}")
            if name in scores and value is not None and value >= 1:
                raise PromptError(f"{name} {value:g} keeps no mask: a mask is kept above it, and the score is "
                                  "at most 1; give a threshold below 1")
        if self.min_mask_area < 0:  # an empty mask has no box to keep it by
            raise PromptError(f"min_mask_area must be >= 0 pixels, got {self.min_mask_area}")
        if self.box_scales is not None and not all(0 < s <= 1 for s in self.box_scales):
            raise PromptError(f"box_scales must lie in (0, 1], got {self.box_scales}")
        from medisam.prompting.crops import MAX_CROP_LAYERS, encodings

        if not isinstance(self.crop_layers, int) or not 0 <= self.crop_layers <= MAX_CROP_LAYERS:
            raise PromptError(f"crop_layers must be an integer from 0 to {MAX_CROP_LAYERS} "
                              f"({encodings(MAX_CROP_LAYERS)} encodings per image), got {self.crop_layers!r}")
        if not (math.isfinite(self.crop_overlap_ratio) and 0 <= self.crop_overlap_ratio < 1):
            raise PromptError(f"crop_overlap_ratio must lie in [0, 1), got {self.crop_overlap_ratio}")

    def grid_for(self, spec: ModelSpec) -> str:
        """The grid used with a model of ``spec``: ``auto`` resolved (module docstring)."""
        if self.grid != "auto":
            return self.grid
        return "boxes" if spec.box_from_points else "points"

    def thresholds(self, grid: str) -> tuple[float, float]:
        """(predicted IoU, stability) filters on ``grid``: the given ones, else the grid's defaults."""
        iou, stability = GRID_THRESHOLDS[grid]
        return (iou if self.pred_iou_thresh is None else self.pred_iou_thresh,
                stability if self.stability_score_thresh is None else self.stability_score_thresh)

    def scales(self) -> tuple[float, ...]:
        """The box grid's tile scales: halving from the whole image down to about ``2 / points_per_side``."""
        if self.box_scales is not None:
            return tuple(self.box_scales)
        scales = [1.0]
        while scales[-1] / 2 >= 2 / self.points_per_side - 1e-9:
            scales.append(scales[-1] / 2)
        return tuple(scales)


#: the densest grid everything mode runs: 256 x 256 prompts (SAM's own default is 32 x 32)
MAX_POINTS_PER_SIDE = 256
#: bool pixels upsampled at once while masks are made compact (16 MiB, a few full-size masks of a large tile)
UPSAMPLE_PIXELS = 1 << 24


@dataclass(frozen=True)
class AutoMasks:
    """Masks found on one ``shape`` ``(H, W)`` image, sorted by decreasing predicted IoU, each kept
    compact: ``boxes`` ``(N, 4)`` int64 XYXY with exclusive max (mask ``i`` lies in rows
    ``y0:y1``, columns ``x0:x1``) and ``crops[i]`` the bool mask cut to that box. Crop layers keep
    hundreds of masks of a few hundred pixels each, so a dense ``(N, H, W)`` array would grow as masks
    x pixels; :meth:`mask` gives one dense mask. ``scores`` predicted IoU, ``stability`` stability
    scores, ``points`` ``(N, 2)`` XY pixel of the grid point (or box centre) that produced each mask;
    ``grid`` the grid used (``points`` or ``boxes``)."""

    boxes: np.ndarray
    crops: tuple[np.ndarray, ...]
    shape: tuple[int, int]
    scores: np.ndarray
    stability: np.ndarray
    points: np.ndarray
    grid: str = "points"

    def __len__(self) -> int:
        return len(self.crops)

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a dense ``(H, W)`` bool array."""
        out = np.zeros(self.shape, bool)
        x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
        out[y0:y1, x0:x1] = self.crops[i]
        return out

    @staticmethod
    def empty(shape: tuple[int, int], grid: str = "points") -> "AutoMasks":
        """No mask on a ``shape`` image."""
        return AutoMasks(np.zeros((0, 4), np.int64), (), tuple(shape), np.zeros(0, np.float32),
                         np.zeros(0, np.float32), np.zeros((0, 2), np.float32), grid)

    @staticmethod
    def from_dense(masks: np.ndarray, scores: np.ndarray, stability: np.ndarray, points: np.ndarray,
                   grid: str = "points") -> "AutoMasks":
        """AutoMasks of dense ``(N, H, W)`` bool masks (tests and callers that hold a few)."""
        masks = np.asarray(masks, dtype=bool)
        boxes, crops = zip(*map(compact, masks)) if len(masks) else ((), ())
        return AutoMasks(np.asarray(boxes, np.int64).reshape(-1, 4), tuple(crops), tuple(masks.shape[1:]),
                         np.asarray(scores), np.asarray(stability), np.asarray(points), grid)


def compact(mask: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """A dense ``(H, W)`` bool mask -> its XYXY box (exclusive max; ``(0, 0, 0, 0)`` when empty) and
    a copy of the mask cut to it."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return (0, 0, 0, 0), np.zeros((0, 0), bool)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (x0, y0, x1, y1), mask[y0:y1, x0:x1].copy()


def grid_boxes(height: int, width: int, scales: tuple[float, ...] = (1.0, 0.5, 0.25)) -> np.ndarray:
    """``(N, 4)`` XYXY boxes: per scale ``s``, boxes of ``s*W x s*H`` tiled with 50 % overlap."""
    boxes = []
    for s in scales:
        bw, bh = width * s, height * s
        n = max(1, round(2 / s) - 1)
        for y0 in np.linspace(0, height - bh, n):
            for x0 in np.linspace(0, width - bw, n):
                boxes.append((x0, y0, min(width, x0 + bw), min(height, y0 + bh)))
    return np.asarray(boxes, np.float32)


def _point_candidates(predictor: Predictor, config: AutoMaskConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                                        np.ndarray]]:
    """Batches of ``(logits (B, L, L), predicted IoU (B,), prompt XY (B, 2))`` of the point grid."""
    model = predictor.model
    h, w = predictor.image_size
    transform = predictor.transform
    points_xy = np.floor(build_point_grid(config.points_per_side) * np.array([w, h], dtype=np.float64))
    points_xy = points_xy.astype(np.float32)
    per_batch = config.points_per_batch or points_per_call(model.device)
    for start in range(0, len(points_xy), per_batch):
        pts = points_xy[start:start + per_batch]
        coords = torch.from_numpy(transform.coords_to_model(pts)[:, None, :]).to(model.device)
        labels = torch.ones(len(pts), 1, dtype=torch.int64, device=model.device)
        out = model.decode(predictor.get_image_embedding(), points=(coords, labels), multimask=config.multimask)
        yield (out.low_res_logits.flatten(0, 1).float(), out.iou.flatten(0, 1).float(),
               np.repeat(pts, out.low_res_logits.shape[1], axis=0))


def _box_candidates(predictor: Predictor, config: AutoMaskConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                                                      np.ndarray]]:
    """The box grid's candidates, one batch (decoded a bounded number of boxes per call)."""
    h, w = predictor.image_size
    boxes = grid_boxes(h, w, config.scales())
    logits, iou = predictor.box_logits(list(boxes))
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    yield torch.from_numpy(logits).float(), torch.from_numpy(iou).float(), centres.astype(np.float32)


def generate_masks(predictor: Predictor, config: AutoMaskConfig = AutoMaskConfig(),
                   progress: bool = False) -> AutoMasks:
    """Segment everything on the predictor's current image (``set_image`` first); ``progress``: a bar
    over the crop layers' encodings, where there are crops."""
    if config.crop_layers:
        from medisam.prompting.crops import generate_with_crops

        return generate_with_crops(predictor, config, progress)
    model = predictor.model
    h, w = predictor.image_size
    grid = config.grid_for(model.spec)
    iou_thresh, stability_thresh = config.thresholds(grid)
    transform = predictor.transform
    low = model.mask_input_size
    crop_h = max(1, round(transform.resized_hw[0] * low / transform.input_size))
    crop_w = max(1, round(transform.resized_hw[1] * low / transform.input_size))

    candidates = _box_candidates if grid == "boxes" else _point_candidates
    keep_logits, keep_iou, keep_stab, keep_pts, n_prompts = [], [], [], [], 0
    for logits, iou, prompts in candidates(predictor, config):
        n_prompts += len(prompts)
        stab = calculate_stability_score(logits[:, :crop_h, :crop_w], 0.0, config.stability_score_offset)
        keep = (iou > iou_thresh) & (stab >= stability_thresh)
        idx = keep.nonzero().flatten()
        keep_logits.append(logits[idx].cpu())
        keep_iou.append(iou[idx].cpu())
        keep_stab.append(stab[idx].cpu())
        keep_pts.append(prompts[idx.cpu().numpy()])

    logits = torch.cat(keep_logits) if keep_logits else torch.zeros(0, low, low)
    if len(logits) == 0:
        log.info("automatic masks (%s grid): no candidate passed the filters", grid)
        return AutoMasks.empty((h, w), grid)
    iou = torch.cat(keep_iou)
    stab = torch.cat(keep_stab)
    pts = np.concatenate(keep_pts)
    boxes = batched_mask_to_box(logits[:, :crop_h, :crop_w] > 0).float()
    nonempty = (logits[:, :crop_h, :crop_w] > 0).flatten(1).any(1)
    order = batched_nms(boxes, iou, torch.zeros(len(boxes)), iou_threshold=config.box_nms_thresh)
    order = order[nonempty[order]]
    boxes, crops = _compact_masks(predictor, logits[order])
    areas = np.array([np.count_nonzero(c) for c in crops], np.int64)
    sel = np.flatnonzero(areas > config.min_mask_area)
    log.info("automatic masks (%s grid): %d kept from %d prompts", grid, len(sel), n_prompts)
    return AutoMasks(boxes[sel], tuple(crops[i] for i in sel), (h, w), iou[order].numpy()[sel],
                     stab[order].numpy()[sel], pts[order.numpy()][sel], grid)


def _compact_masks(predictor: Predictor, logits: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(N, L, L)`` low-res logits -> ``(N, 4)`` boxes and N cropped masks (:func:`compact`) on the
    original grid, upsampled a few at a time (at most :data:`UPSAMPLE_PIXELS` pixels), never N x H x W."""
    h, w = predictor.image_size
    step = max(1, UPSAMPLE_PIXELS // (h * w))
    boxes, crops = [], []
    for start in range(0, len(logits), step):
        for mask in predictor.logits_to_masks(logits[start:start + step].to(predictor.model.device)):
            box, crop = compact(mask)
            boxes.append(box)
            crops.append(crop)
    return np.asarray(boxes, np.int64).reshape(-1, 4), crops


def mask_areas(auto: AutoMasks) -> np.ndarray:
    """Pixels of each mask (``(N,)``), computed once per image for :func:`best_match`."""
    return np.array([np.count_nonzero(c) for c in auto.crops], np.int64)


def best_match(auto: AutoMasks, truth: np.ndarray, areas: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The automatic mask with the highest IoU against ``truth`` (COSMOS SAM protocol) and its
    predicted IoU; an empty mask and NaN when nothing was generated. ``areas``: :func:`mask_areas`,
    when the caller matches many objects; intersections are counted only for masks whose box meets
    the object's box, inside the two boxes' overlap (crop layers give hundreds of masks, and a
    nucleus is a few hundred pixels)."""
    truth = np.asarray(truth, dtype=bool)
    if len(auto) == 0:
        return np.zeros_like(truth), float("nan")
    areas = mask_areas(auto) if areas is None else areas
    inter = np.zeros(len(auto), np.int64)
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    if len(rows):
        ty0, ty1, tx0, tx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        x0, y0 = np.maximum(auto.boxes[:, 0], tx0), np.maximum(auto.boxes[:, 1], ty0)
        x1, y1 = np.minimum(auto.boxes[:, 2], tx1), np.minimum(auto.boxes[:, 3], ty1)
        for i in np.flatnonzero((x0 < x1) & (y0 < y1)):
            bx, by = auto.boxes[i, 0], auto.boxes[i, 1]
            sub = auto.crops[i][y0[i] - by:y1[i] - by, x0[i] - bx:x1[i] - bx]
            inter[i] = np.count_nonzero(sub & truth[y0[i]:y1[i], x0[i]:x1[i]])
    union = areas + int(truth.sum()) - inter
    ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    i = int(np.argmax(ious))
    return auto.mask(i), float(auto.scores[i])


def label_map(auto: AutoMasks) -> np.ndarray:
    """``(H, W)`` label map of everything-mode masks (``medisam segment --everything``): mask ``i``
    (decreasing predicted IoU) is label ``i + 1``, painted largest first so that small objects lying
    on a larger mask stay visible. More than 65535 masks do not fit a label map: a one-line error."""
    n = len(auto)
    if n > 65535:
        raise PromptError(f"everything mode kept {n} masks, more than a label map holds (65535): "
                          "use fewer crop layers or fewer points per side")
    labels = np.zeros(auto.shape, np.uint8 if n <= 255 else np.uint16)
    for i in np.argsort(-mask_areas(auto), kind="stable"):
        x0, y0, x1, y1 = (int(v) for v in auto.boxes[i])
        labels[y0:y1, x0:x1][auto.crops[i]] = i + 1
    return labels
