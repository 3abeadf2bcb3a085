"""Intensity windows and the conversion of any slice to a displayable/encodable RGB image.

``to_display`` produces what SAM-family encoders expect as input: float32 ``(H, W, 3)`` in
[0, 255]. Its rules follow the published MedSAM/LiteMedSAM preprocessing: CT is windowed
(MedSAM uses W400/L40 for abdominal CT), other single-channel modalities are clipped to
their 0.5-99.5 percentiles, and uint8 images pass through untouched so PNG/JPEG inputs are
bit-identical to the LiteMedSAM pipeline.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from medisam.errors import InputError

#: CT window presets, name -> (width, level) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (400.0, 40.0),
    "soft_tissue": (400.0, 40.0),
    "liver": (150.0, 30.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
    "mediastinum": (350.0, 50.0),
}

#: Values below this minimum mark an array as Hounsfield units (air is -1000 HU).
HU_MIN_THRESHOLD = -100.0

#: An image of no named modality (a NIfTI, an NRRD) whose minimum is below this holds air in HU: a CT.
AIR_HU = -900.0

#: The narrowest window chosen from a CT's own voxels: the soft-tissue window's width. A box holding
#: only soft tissue spans ~100 HU, and stretching that to 0..255 magnifies its noise (stop 50).
MIN_CT_WINDOW_WIDTH = WINDOW_PRESETS["soft_tissue"][0]

#: Percentiles a window spans when the data choose it (the volume's, or a prompt box's voxels).
WINDOW_PERCENTILES = (0.5, 99.5)

#: a map from intensities (any shape) to the display's float32 [0, 255]
DisplayMap = Callable[[np.ndarray], np.ndarray]


def resolve_window(window: str | tuple[float, float]) -> tuple[float, float]:
    """Return ``(width, level)`` for a preset name or a ``(width, level)`` pair."""
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in WINDOW_PRESETS:
            raise InputError(f"unknown window '{window}'; presets: {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[key]
    try:
        width, level = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise InputError(f"window must be a preset name or (width, level), got {window!r}") from exc
    return check_window(width, level, f"window {window!r}")


#: Smallest WIDTH and largest |LEVEL| + WIDTH/2 of a window: the display is computed in float32, where a width
#: of 1e-300 is 0 (every pixel NaN) and a level of 1e308 is inf; the model then gave a NaN score and an empty mask.
WINDOW_MIN_WIDTH = 1e-30
WINDOW_MAX_ABS = 1e30


def check_window(width: float, level: float, shown: str) -> tuple[float, float]:
    """``(width, level)`` when the float32 display can compute it, else an InputError naming ``shown``."""
    if not (np.isfinite(width) and np.isfinite(level)) or width <= 0:
        raise InputError(f"{shown} needs a finite WIDTH > 0 and a finite LEVEL")
    if width < WINDOW_MIN_WIDTH or abs(level) + width / 2 > WINDOW_MAX_ABS:
        raise InputError(f"{shown} is outside what the display can compute: give WIDTH >= {WINDOW_MIN_WIDTH:g} "
                         f"and |LEVEL| + WIDTH/2 <= {WINDOW_MAX_ABS:g}")
    return width, level


def apply_window(array: np.ndarray, window: str | tuple[float, float]) -> np.ndarray:
    """Clip ``array`` to ``level +- width/2`` and scale linearly to float32 [0, 255]."""
    width, level = resolve_window(window)
    lower, upper = level - width / 2.0, level + width / 2.0
    return _clip_scaled(array, lower, upper)


def _clip_scaled(array: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """``(clip(array, lower, upper) - lower) / (upper - lower) * 255`` in float32, in one new array
    (in place after the clip: a whole CT's display had three float32 copies at once)."""
    out = np.clip(np.asarray(array, dtype=np.float32), lower, upper)  # a new array, never the input
    out -= lower
    out /= upper - lower
    out *= 255.0
    return out


def in_hounsfield(array: np.ndarray, modality: str = "OT") -> bool:
    """Whether ``array`` looks like a CT in Hounsfield units: a CT whose minimum is below
    :data:`HU_MIN_THRESHOLD`, or an image of no named modality (``"OT"``) holding air (below
    :data:`AIR_HU`). An MR, a PET or an 8-bit image never does."""
    a = np.asarray(array)
    if a.size == 0 or a.dtype == np.uint8 or a.dtype.kind not in "iuf":
        return False
    lowest = float(np.min(a))
    kind = modality.upper()
    return (kind == "CT" and lowest < HU_MIN_THRESHOLD) or (kind == "OT" and lowest < AIR_HU)


def region_window(array: np.ndarray, region: tuple[slice, ...], min_width: float = 0.0) -> tuple[float, float] | None:
    """``(width, level)`` spanning the 0.5-99.5 percentiles of ``array[region]``, widened about its
    centre to ``min_width``; None for an empty or constant region."""
    values = np.asarray(array)[region]
    if values.size == 0:
        return None
    if values.size > 8_000_000 and values.ndim > 1:  # a large box: every n-th plane, so that flattening
        values = values[:: -(-values.size // 8_000_000)]  # the sample never copies the whole box
    lo, hi = percentile_range(values)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        return None
    return max(hi - lo, min_width), (hi + lo) / 2.0


def ct_box_window(array: np.ndarray, modality: str, region: tuple[slice, ...] | None) -> tuple[float, float] | None:
    """The window for a prompt on a CT in Hounsfield units: :func:`region_window` of the prompt box's
    voxels (``region``), at least :data:`MIN_CT_WINDOW_WIDTH` wide; None for an image that is not in HU
    (:func:`in_hounsfield`), no region (a point prompt) or a constant box: the image's own rule then.

    Why: one fixed CT window does not serve every target (the soft-tissue window blanks a lung nodule's
    surroundings, air to bone flattens an abdominal organ); the box holds the target and what borders
    it. Box-3D Dice against the volume's percentiles / the soft-tissue window: a lung nodule 0.848
    (0.863 / 0.688), the dcmqi liver, spine and heart 0.885 (0.863 / 0.832), a synthetic 14-organ abdomen
    0.904 (0.750 / 0.890) (stop 50, ``docs/interactive3d.md``, "The window of a CT in HU").
    """
    if region is None or not in_hounsfield(array, modality):
        return None
    return region_window(array, region, MIN_CT_WINDOW_WIDTH)


def default_window(array: np.ndarray, modality: str = "OT", rgb: bool = False) -> str:
    """In words, the window ``segment`` and ``propagate`` give ``array`` (colour when ``rgb``) without
    ``--window`` (for ``medisam info``): the rules of :func:`to_display` and :func:`ct_box_window`."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return "none: 8-bit values as stored"
    if rgb or a.dtype.kind not in "iuf":
        return "min .. max"
    if in_hounsfield(a, modality):
        rest = "soft tissue (W400/L40)" if modality.upper() == "CT" else "0.5-99.5 percentiles"
        return f"CT in HU: a box prompt's voxels (0.5-99.5 percentiles, >= 400 HU wide); else {rest}"
    if modality.upper() == "CT":
        return "min .. max (a CT not in HU)"
    lo, hi = percentile_range(a)
    return f"0.5-99.5 percentiles: {lo:.6g} .. {hi:.6g}"


def percentile_range(values: np.ndarray, sample: bool = True) -> tuple[float, float]:
    """The :data:`WINDOW_PERCENTILES` of ``values``; with ``sample``, of a strided sample past 4 M
    values (the same window, much faster on a whole CT)."""
    flat = np.asarray(values).ravel()
    if sample and flat.size > 4_000_000:
        flat = flat[:: flat.size // 2_000_000]
    lo, hi = np.percentile(flat.astype(np.float64), WINDOW_PERCENTILES)
    return float(lo), float(hi)


def scale_range(array: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Clip to [lower, upper] and scale to [0, 255]; a constant image becomes 0."""
    if not upper > lower:
        return np.zeros(np.shape(array), dtype=np.float32)
    return _clip_scaled(array, lower, upper)


def display_mapping(array: np.ndarray, modality: str = "OT", window: str | tuple[float, float] | None = None,
                    sample: bool = True) -> DisplayMap:
    """The map of a grey ``array``'s intensities to float32 [0, 255], one for all of it: the rule of
    every image the encoder sees (a slice by :func:`to_display`, a volume's planes by
    :class:`~medisam.predict.display_volume.DisplayVolume`).

    Rules, first match wins: an explicit window > uint8 as is > a CT in HU gets the soft-tissue window >
    another CT its min-max > the 0.5-99.5 percentiles (``sample``: of a sample of a large volume,
    :func:`percentile_range`)."""
    a = np.asarray(array)
    if window is not None:
        return partial(apply_window, window=resolve_window(window))
    if a.dtype == np.uint8:
        return partial(np.asarray, dtype=np.float32)
    if modality.upper() == "CT":
        lowest = float(a.min())
        if lowest < HU_MIN_THRESHOLD:
            return partial(apply_window, window="soft_tissue")
        return partial(scale_range, lower=lowest, upper=float(a.max()))
    lower, upper = percentile_range(a, sample)
    return partial(scale_range, lower=lower, upper=upper)


def to_display(
    array2d: np.ndarray, modality: str = "OT", window: str | tuple[float, float] | None = None
) -> np.ndarray:
    """Map a 2D slice ``(H, W)`` or ``(H, W, 3|4)`` to float32 ``(H, W, 3)`` in [0, 255].

    Grey slices follow :func:`display_mapping` (the percentiles of every pixel); colour images are
    windowed when asked, else uint8 passes through unchanged and other types are min-max scaled.
    Grey results are repeated to 3 channels.
    """
    a = np.asarray(array2d)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3))):
        raise InputError(f"to_display expects a 2D slice (H, W) or (H, W, 3), got shape {a.shape}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.size == 0:
        raise InputError(f"to_display got an empty slice of shape {a.shape}")
    if a.ndim == 3 and window is None and a.dtype != np.uint8:
        out = scale_range(a, float(a.min()), float(a.max()))
    else:
        out = display_mapping(a, modality, window, sample=False)(a)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)
