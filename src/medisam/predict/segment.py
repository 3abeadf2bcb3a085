"""One-shot 2D segmentation of an image or of one slice of a volume into a label map.

This is the library function behind ``medisam segment``, the server's 2D endpoint and
the benchmark's box strategy, so all of them produce identical masks.
"""

from __future__ import annotations

import builtins
from typing import Sequence

import numpy as np

from medisam.errors import PromptError
from medisam.io.medical_image import MedicalImage
from medisam.predict.predictor import Prediction, Predictor
from medisam.prompts import Box, Points


def segment_image(predictor: Predictor, image: MedicalImage,
                  boxes: Sequence[Box | Sequence[float]] = (),
                  points: Points | Sequence[Sequence[float]] | None = None,
                  slice: int | None = None, window: str | tuple[float, float] | None = None,
                  axis: int = 0, mask: np.ndarray | None = None) -> MedicalImage:
    """Segment objects on a 2D image or one slice; return a label map on the input's grid.

    Box ``i`` (XYXY pixels) becomes label ``i + 1``; later boxes overwrite earlier ones
    where they overlap. Points (``(x, y[, label])``) and ``mask`` (an ``(H, W)`` bool mask
    prompt on the slice, e.g. a lasso's inside: :func:`predict_with_mask`) refine the single
    box, or alone form one object with label 1. For a volume the result is a full 3D label
    map that is zero outside slice ``slice`` (so it keeps the volume's geometry for
    NIfTI/DICOM-SEG).
    """
    boxes = list(boxes)
    if not boxes and points is None and mask is None:
        raise PromptError("give at least one box, point or mask (boxes=, points=, mask=)")
    if (points is not None or mask is not None) and len(boxes) > 1:
        raise PromptError("points and a mask refine one box only; give a single box with them")
    predictor.set_image(image, slice=slice, window=window, axis=axis)
    h, w = predictor.image_size
    labels2d = np.zeros((h, w), dtype=np.uint16 if len(boxes) > 255 else np.uint8)
    if mask is not None:
        masks = predict_with_mask(predictor, mask, boxes[0] if boxes else None, points).masks
    elif points is not None:
        masks = predictor.predict(box=boxes[0] if boxes else None, points=points).masks
    else:
        masks = predictor.predict_batch(boxes).masks
    for i, mask in enumerate(masks, start=1):
        labels2d[mask] = i
    if not image.is_volume:
        return image.as_labels(labels2d)
    labels = np.zeros(image.spatial_shape, dtype=labels2d.dtype)
    index: list = [builtins.slice(None)] * 3  # the parameter ``slice`` shadows the builtin
    index[axis] = slice
    labels[tuple(index)] = labels2d
    return image.as_labels(labels)


def predict_with_mask(predictor: Predictor, mask: np.ndarray, box: Box | Sequence[float] | None = None,
                      points: Points | Sequence[Sequence[float]] | None = None) -> Prediction:
    """One object from an ``(H, W)`` bool mask prompt drawn on the predictor's image (a lasso's
    inside, an earlier mask), with an optional box (default: the mask's bounding box, the prompt
    LiteMedSAM is trained on) and points; the mask reaches the decoder as low-res logits."""
    h, w = predictor.image_size
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (h, w):
        raise PromptError(f"mask prompt shape {mask.shape} does not match the image ({h}, {w})")
    if box is None:
        box = Box.from_mask(mask)
        if box is None:
            raise PromptError("the mask prompt is empty")
    return predictor.predict(box=box, points=points, mask=predictor.mask_logits(mask))
