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
    """Masks of one crop: ``masks`` (compact, :class:`~medisam.prompting.automatic.AutoMasks`) on the
    crop's grid, ``crop`` its XYXY box on the image."""

    masks: AutoMasks
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
    if not len(found) or crop == (0, 0, full[1], full[0]):
        return CropMasks(found, crop)
    # on the crop: is_box_near_crop_edge moves them by the crop's corner
    keep = ~is_box_near_crop_edge(torch.from_numpy(_inclusive(found.boxes)), list(crop), [0, 0, full[1], full[0]],
                                  atol=_edge_tolerance(*full)).numpy()
    return CropMasks(_subset(found, np.flatnonzero(keep)), crop)


def _inclusive(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float32 XYXY boxes with inclusive max (as ``batched_mask_to_box``) of AutoMasks' boxes."""
    return (boxes - np.array([0, 0, 1, 1])).astype(np.float32)


def _subset(found: AutoMasks, rows: np.ndarray) -> AutoMasks:
    """Masks ``rows`` of ``found``, in that order."""
    return replace(found, boxes=found.boxes[rows], crops=tuple(found.crops[i] for i in rows),
                   scores=found.scores[rows], stability=found.stability[rows], points=found.points[rows])


def place(parts: list[CropMasks], height: int, width: int, nms_thresh: float, grid: str) -> AutoMasks:
    """Masks of every crop on the ``(height, width)`` image, merged by box NMS (smaller crop first),
    then sorted by decreasing predicted IoU. The masks stay compact: only their boxes move by the
    crop's corner."""
    from medisam.prompting.automatic import AutoMasks

    parts = [p for p in parts if len(p.masks)]
    if not parts:
        return AutoMasks.empty((height, width), grid)
    shift = np.concatenate([np.tile(p.crop[:2] * 2, (len(p.masks), 1)) for p in parts])  # XYXY + (x0, y0) twice
    boxes = np.concatenate([p.masks.boxes for p in parts]) + shift
    area = np.concatenate([np.full(len(p.masks), (p.crop[2] - p.crop[0]) * (p.crop[3] - p.crop[1]), np.float64)
                           for p in parts])
    scores = np.concatenate([p.masks.scores for p in parts])
    rank = np.empty(len(boxes), np.float32)  # NMS keeps the smaller crop's mask, then the higher predicted IoU
    rank[np.lexsort((-scores, area))] = np.arange(len(boxes), 0, -1)
    order = batched_nms(torch.from_numpy(_inclusive(boxes)), torch.from_numpy(rank), torch.zeros(len(boxes)),
                        iou_threshold=nms_thresh).numpy()
    order = order[np.argsort(-scores[order], kind="stable")]
    crops = [c for p in parts for c in p.masks.crops]
    points = np.concatenate([p.masks.points + np.array(p.crop[:2], np.float32) for p in parts])
    return AutoMasks(boxes[order], tuple(crops[k] for k in order), (height, width), scores[order],
                     np.concatenate([p.masks.stability for p in parts])[order], points[order], grid)


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
    log.info("automatic masks with %d crop layer(s): %d kept, %d encodings", config.crop_layers, len(merged),
             len(boxes))
    return merged
