"""Bounding boxes of a label map's values, so that per-label work (a benchmark target, a
protocol click, a score) reads each label's box instead of comparing the whole map with every
label: with 400 nuclei in one volume that comparison was most of a case's time and memory
(docs/interactive3d.md, "Hundreds of objects in one volume")."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: label values up to which :func:`label_slices` indexes boxes by value (a list of this many at most)
DIRECT_LABEL_MAX = 1 << 20


def label_slices(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """The bounding box (slices) of every positive value of a label map, in one pass over it.
    Values above :data:`DIRECT_LABEL_MAX` (32-bit instance ids) are ranked first, so that the
    boxes are never a list as long as the largest id."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    if int(labels.max(initial=0)) <= DIRECT_LABEL_MAX:
        found = ndimage.find_objects(labels)  # any integer type as it is: no copy
        return {value: box for value, box in enumerate(found, start=1) if box is not None}
    values = np.unique(labels)
    values = values[values > 0]
    ranks = np.searchsorted(values, labels) + 1  # 1..N where a value is positive
    ranks[labels <= 0] = 0
    found = ndimage.find_objects(ranks, len(values))
    return {int(v): box for v, box in zip(values.tolist(), found) if box is not None}


def class_crops(seg: np.ndarray, truth: np.ndarray, classes: list[int]) -> dict[int, tuple[slice, ...] | None]:
    """The union of each class's boxes in the label maps ``seg`` and ``truth`` (None where
    neither holds it), in one pass over each map: every per-class comparison of the two maps
    (a click, a score) needs only this crop."""
    seg_boxes, truth_boxes = label_slices(seg), label_slices(truth)
    crops: dict[int, tuple[slice, ...] | None] = {}
    for c in classes:
        boxes = [b for b in (seg_boxes.get(c), truth_boxes.get(c)) if b is not None]
        crops[c] = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
                         for a in range(seg.ndim)) if boxes else None
    return crops


def mask_bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Slices of a 2D mask's bounding box (None when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
