"""DICOM Pixel Padding Value: voxels that mark "no data" (e.g. -3024 HU outside a CT's field of view).

Padding is compared in stored values, before rescale, as the standard says, and padding voxels are
set to the lowest real value of the image, so that padding sets neither the automatic window nor the
value range; ``source["pixel_padding"]`` says how many voxels were padding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pydicom

from medisam.io.dicom_geometry import functional_value
from medisam.io.medical_image import MedicalImage

log = logging.getLogger(__name__)

#: Header attributes the padding check reads from each slice file.
PADDING_TAGS = ["RescaleSlope", "RescaleIntercept", "PixelPaddingValue", "PixelPaddingRangeLimit",
                "PixelRepresentation", "BitsAllocated"]
#: One slice's padding: (slope, intercept, lowest, highest stored padding value), or None without padding.
Padding = Optional[tuple[float, float, int, int]]


def _stored(value: Any, ds: pydicom.Dataset) -> int:
    """A stored pixel value attribute (US or SS by Pixel Representation) as a signed int."""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if isinstance(value, (bytes, bytearray)):  # an ambiguous VR left raw
        return int.from_bytes(bytes(value)[: max(bits // 8, 1)], "little", signed=signed)
    v = int(value)
    return v - (1 << bits) if signed and v >= 1 << (bits - 1) else v


def slice_padding(ds: pydicom.Dataset, rescale: tuple[float, float] | None = None) -> Padding:
    """(slope, intercept, lowest, highest stored padding value) of one slice, or None without
    Pixel Padding Value; Pixel Padding Range Limit, when present, makes the padding a range."""
    pad = ds.get("PixelPaddingValue")
    if pad is None:
        return None
    lo = hi = _stored(pad, ds)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is not None:
        lo, hi = sorted((lo, _stored(limit, ds)))
    if rescale is None:
        rescale = (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
    return rescale[0], rescale[1], lo, hi


def frame_padding(ds: pydicom.Dataset, k: int) -> Padding:
    """:func:`slice_padding` of frame ``k`` of a multi-frame file, its rescale from the functional
    groups (per-frame, then shared), else the file's own."""
    if "PixelPaddingValue" not in ds:
        return None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = (per_frame[k] if per_frame else None, shared[0] if shared else None)
    slope = functional_value(*groups, "PixelValueTransformationSequence", "RescaleSlope")
    if slope is None:
        return slice_padding(ds)
    intercept = functional_value(*groups, "PixelValueTransformationSequence", "RescaleIntercept")
    return slice_padding(ds, (float(slope or 1), float(intercept or 0)))


def unpad(image: MedicalImage, slices: list[Padding], where: Path) -> MedicalImage:
    """Set Pixel Padding voxels to the lowest real value of the image, and count them in
    ``source["pixel_padding"]``. ``slices``: what :func:`slice_padding` gives for each array
    slice (one entry for a 2D image)."""
    if all(s is None for s in slices):
        return image
    arr = image.array[None] if image.array.ndim == 2 else image.array
    pad = np.zeros(arr.shape, dtype=bool)
    ranges = [s[2:] for s in slices if s is not None]
    for k, s in enumerate(slices):
        if s is not None:
            slope, intercept, lo, hi = s
            stored = np.rint((arr[k].astype(np.float64) - intercept) / (slope or 1.0))
            pad[k] = (stored >= lo) & (stored <= hi)
    count = int(pad.sum())
    if count == 0 or count == pad.size:  # no padding, or nothing real to take the lowest value from
        return image
    lowest = arr[~pad].min()
    out = arr.copy()
    out[pad] = lowest
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    source = {**image.source, "pixel_padding": {"stored": [lo, hi], "voxels": count, "set_to": float(lowest)}}
    log.info("%s: %d voxels are Pixel Padding (stored %s): set to %g, the lowest real value", where, count,
             lo if lo == hi else f"{lo}..{hi}", float(lowest))
    return image.with_array(out.reshape(image.array.shape), source=source)
