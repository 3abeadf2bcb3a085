"""Automatic ("everything") mask generation on medisam's Predictor.

Modelled on segment_anything's ``SamAutomaticMaskGenerator`` (one crop layer): a regular
grid of single positive points is decoded in batches on the one cached embedding
(three multimask outputs per point), masks are filtered by predicted IoU and stability
score, and duplicates are removed by box NMS. It reuses ``segment_anything.utils.amg``.

Difference from SAM, for CPU speed: the IoU/stability filters and NMS run on the low-res
logit grid (cropped to the image area) and only the surviving masks are upsampled to the
original image, instead of upsampling every candidate first. Multi-crop layers and
small-region post-processing are not implemented.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from torchvision.ops import batched_nms

from medisam.models.promptable import points_per_call
from medisam.models.transform import InputTransform
from medisam.predict.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoMaskConfig:
    """Parameters of automatic mask generation (SAM's defaults except ``points_per_side``).

    ``multimask=False`` decodes only the single-mask output per point: LiteMedSAM was trained
    with box prompts and its three multimask outputs are untrained (near-empty masks with
    predicted IoU below 0.25), so SAM's multimask grid keeps nothing with it.
    """

    points_per_side: int = 16
    #: grid points per decoder call; None: ``promptable.points_per_call`` (8 on a CPU, 64 on a GPU)
    points_per_batch: int | None = None
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_area: int = 0
    multimask: bool = True


@dataclass(frozen=True)
class AutoMasks:
    """Masks found on one image: ``masks`` ``(N, H, W)`` bool on the original grid, sorted by
    decreasing predicted IoU; ``scores`` predicted IoU, ``stability`` stability scores,
    ``points`` ``(N, 2)`` XY pixel of the grid point that produced each mask."""

    masks: np.ndarray
    scores: np.ndarray
    stability: np.ndarray
    points: np.ndarray


def generate_masks(predictor: Predictor, config: AutoMaskConfig = AutoMaskConfig()) -> AutoMasks:
    """Segment everything on the predictor's current image (``set_image`` first)."""
    model = predictor.model
    embedding = predictor.get_image_embedding()
    h, w = predictor.image_size
    # Same transform the predictor used for this image (deterministic from the spec).
    transform = InputTransform.for_image(h, w, model.spec.input_size, model.spec.resize)
    points_xy = build_point_grid(config.points_per_side) * np.array([w, h], dtype=np.float64)
    points_xy = np.floor(points_xy).astype(np.float32)
    low = model.mask_input_size
    crop_h = max(1, round(transform.resized_hw[0] * low / transform.input_size))
    crop_w = max(1, round(transform.resized_hw[1] * low / transform.input_size))

    per_batch = config.points_per_batch or points_per_call(model.device)
    keep_logits, keep_iou, keep_stab, keep_pts = [], [], [], []
    for start in range(0, len(points_xy), per_batch):
        pts = points_xy[start:start + per_batch]
        coords = torch.from_numpy(transform.coords_to_model(pts)[:, None, :]).to(model.device)
        labels = torch.ones(len(pts), 1, dtype=torch.int64, device=model.device)
        out = model.decode(embedding, points=(coords, labels), multimask=config.multimask)
        logits = out.low_res_logits.flatten(0, 1).float()  # (B*3, L, L)
        iou = out.iou.flatten(0, 1).float()
        pts_rep = np.repeat(pts, out.low_res_logits.shape[1], axis=0)
        keep = iou > config.pred_iou_thresh
        stab = calculate_stability_score(logits[:, :crop_h, :crop_w], 0.0, config.stability_score_offset)
        keep &= stab >= config.stability_score_thresh
        idx = keep.nonzero().flatten()
        keep_logits.append(logits[idx].cpu())
        keep_iou.append(iou[idx].cpu())
        keep_stab.append(stab[idx].cpu())
        keep_pts.append(pts_rep[idx.cpu().numpy()])

    logits = torch.cat(keep_logits) if keep_logits else torch.zeros(0, low, low)
    if len(logits) == 0:
        log.info("automatic masks: no candidate passed the filters")
        return AutoMasks(np.zeros((0, h, w), bool), np.zeros(0, np.float32), np.zeros(0, np.float32),
                         np.zeros((0, 2), np.float32))
    iou = torch.cat(keep_iou)
    stab = torch.cat(keep_stab)
    pts = np.concatenate(keep_pts)
    boxes = batched_mask_to_box(logits[:, :crop_h, :crop_w] > 0).float()
    nonempty = (logits[:, :crop_h, :crop_w] > 0).flatten(1).any(1)
    order = batched_nms(boxes, iou, torch.zeros(len(boxes)), iou_threshold=config.box_nms_thresh)
    order = order[nonempty[order]]
    masks = predictor.logits_to_masks(logits[order].to(model.device))
    areas = masks.reshape(len(masks), -1).sum(1)
    sel = areas > config.min_mask_area
    log.info("automatic masks: %d kept from %d grid points", int(sel.sum()), len(points_xy))
    return AutoMasks(masks[sel], iou[order].numpy()[sel], stab[order].numpy()[sel], pts[order.numpy()][sel])


def best_match(auto: AutoMasks, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """The automatic mask with the highest IoU against ``truth`` (COSMOS SAM protocol) and its
    predicted IoU; an empty mask and NaN when nothing was generated."""
    truth = np.asarray(truth, dtype=bool)
    if len(auto.masks) == 0:
        return np.zeros_like(truth), float("nan")
    flat = auto.masks.reshape(len(auto.masks), -1)
    t = truth.ravel()
    inter = (flat & t).sum(1)
    union = (flat | t).sum(1)
    ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    i = int(np.argmax(ious))
    return auto.masks[i], float(auto.scores[i])
