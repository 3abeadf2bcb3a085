"""Crop layers of everything mode: the grid re-run on zoomed crops, so small objects are found.

A model with a 256 px input sees a 10 px nucleus of a 1000 px tile as 2-3 px, and the box grid's
finest tile (``2 / points_per_side`` of the side) is still many nuclei wide. As in segment_anything's
``SamAutomaticMaskGenerator`` (``crop_n_layers``), layer ``i`` (1..N) cuts the image into
``2**i x 2**i`` overlapping crops (``segment_anything.utils.amg.generate_crop_boxes``); each crop is
encoded on its own at the model's input size (one encoding per crop), the same grid runs on it
(:func:`medisam.prompting.automatic.generate_masks`), masks touching a crop edge that is not an image
edge are dropped (the neighbouring crop holds the whole object), the rest are placed back on the
full image, and all layers are merged by box NMS preferring the smaller crop's mask (it saw the
object at a higher zoom), as SAM does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from segment_anything.utils.amg import generate_crop_boxes, is_box_near_crop_edge
from torchvision.ops import batched_nms

from medisam.predict.cache import EmbeddingCache
from medisam.predict.predictor import Predictor

if TYPE_CHECKING:
    from medisam.prompting.automatic import AutoMaskConfig, AutoMasks

log = logging.getLogger(__name__)

#: most crop layers: layer 3 is 64 crops, 85 encodings in all with the full image
MAX_CROP_LAYERS = 3
#: a mask whose box lies within this many pixels of an inner crop edge is dropped (SAM's 20 px at 1024+ px,
#: scaled to the image's short side, at least 2 px)
EDGE_FRACTION = 20 / 1024


@dataclass(frozen=True)
class CropMasks:
    """Masks of one crop: ``masks`` ``(N, h, w)`` on the crop, ``crop`` its XYXY box on the image."""

    masks: np.ndarray
    scores: np.ndarray
    stability: np.ndarray
    points: np.ndarray
    crop: tuple[int, int, int, int]


def crop_boxes(height: int, width: int, layers: int, overlap_ratio: float) -> list[tuple[int, int, int, int]]:
    """XYXY boxes of the whole image (first) and of ``layers`` crop layers (``(2**i)**2`` crops each)."""
    boxes, _ = generate_crop_boxes((height, width), layers, overlap_ratio)
    return [tuple(int(v) for v in b) for b in boxes]


def encodings(layers: int) -> int:
    """Image encodings everything mode makes with ``layers`` crop layers (1 + 4 + 16 + ...)."""
    return sum(4 ** i for i in range(layers + 1))


def _edge_tolerance(height: int, width: int) -> float:
    return max(2.0, EDGE_FRACTION * min(height, width))


def _kept_on_crop(found: AutoMasks, crop: tuple[int, int, int, int], full: tuple[int, int]) -> CropMasks:
    """``found`` (masks on the crop) without those touching an inner crop edge."""
    x0, y0 = crop[0], crop[1]
    keep = np.ones(len(found.masks), bool)
    if len(found.masks) and crop != (0, 0, full[1], full[0]):
        boxes = _mask_boxes(found.masks)  # on the crop: is_box_near_crop_edge moves them by the crop's corner
        keep = ~is_box_near_crop_edge(torch.from_numpy(boxes), list(crop), [0, 0, full[1], full[0]],
                                      atol=_edge_tolerance(*full)).numpy()
    points = found.points[keep] + np.array([x0, y0], np.float32)
    return CropMasks(found.masks[keep], found.scores[keep], found.stability[keep], points, crop)


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float32 XYXY boxes (inclusive max, as ``batched_mask_to_box``) of non-empty ``(N, h, w)`` masks."""
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[1:]
    y0 = rows.argmax(1)
    y1 = h - 1 - rows[:, ::-1].argmax(1)
    x0 = cols.argmax(1)
    x1 = w - 1 - cols[:, ::-1].argmax(1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


def place(parts: list[CropMasks], height: int, width: int, nms_thresh: float, grid: str) -> AutoMasks:
    """Masks of every crop on the ``(height, width)`` image, merged by box NMS (smaller crop first),
    then sorted by decreasing predicted IoU."""
    from medisam.prompting.automatic import AutoMasks

    parts = [p for p in parts if len(p.masks)]
    if not parts:
        return AutoMasks(np.zeros((0, height, width), bool), np.zeros(0, np.float32), np.zeros(0, np.float32),
                         np.zeros((0, 2), np.float32), grid)
    boxes = np.concatenate([_mask_boxes(p.masks) + np.array(p.crop[:2] * 2, np.float32) for p in parts])
    area = np.concatenate([np.full(len(p.masks), (p.crop[2] - p.crop[0]) * (p.crop[3] - p.crop[1]), np.float64)
                           for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    rank = np.empty(len(boxes), np.float32)  # NMS keeps the smaller crop's mask, then the higher predicted IoU
    rank[np.lexsort((-scores, area))] = np.arange(len(boxes), 0, -1)
    order = batched_nms(torch.from_numpy(boxes), torch.from_numpy(rank), torch.zeros(len(boxes)),
                        iou_threshold=nms_thresh).numpy()
    owner = np.concatenate([np.full(len(p.masks), i) for i, p in enumerate(parts)])
    index = np.concatenate([np.arange(len(p.masks)) for p in parts])
    order = order[np.argsort(-scores[order], kind="stable")]
    masks = np.zeros((len(order), height, width), bool)
    for row, k in enumerate(order):
        part = parts[owner[k]]
        x0, y0, x1, y1 = part.crop
        masks[row, y0:y1, x0:x1] = part.masks[index[k]]
    return AutoMasks(masks, scores[order], np.concatenate([p.stability for p in parts])[order],
                     np.concatenate([p.points for p in parts])[order], grid)


def generate_with_crops(predictor: Predictor, config: AutoMaskConfig, progress: bool = False) -> AutoMasks:
    """Everything mode on the predictor's image and on ``config.crop_layers`` layers of crops of it
    (``progress``: a bar over the crops on a terminal; 21 encodings at two layers take about 25 s on 2 cores)."""
    from tqdm.auto import tqdm

    from medisam.prompting.automatic import generate_masks

    h, w = predictor.image_size
    display = predictor.display_image
    one_crop = replace(config, crop_layers=0)
    boxes = crop_boxes(h, w, config.crop_layers, config.crop_overlap_ratio)
    sub = Predictor(predictor.model, cache=EmbeddingCache(max_bytes=0), max_pixels=None, box_search=False)
    parts = []
    for crop in tqdm(boxes, desc="everything mode", unit="crop", disable=None if progress else True):
        x0, y0, x1, y1 = crop
        on = predictor if crop == (0, 0, w, h) else sub.set_display_image(np.ascontiguousarray(display[y0:y1, x0:x1]))
        parts.append(_kept_on_crop(generate_masks(on, one_crop), crop, (h, w)))
    merged = place(parts, h, w, config.box_nms_thresh, config.grid_for(predictor.model.spec))
    log.info("automatic masks with %d crop layer(s): %d kept, %d encodings", config.crop_layers, len(merged.masks),
             len(boxes))
    return merged
