"""Segmentation metrics of the benchmark: Dice, IoU, NSD and HD95 in millimetres.

* **NSD** (normalised surface Dice at tolerance ``tau`` mm) uses the surface definition of
  DeepMind's ``surface-distance`` package, which the MedSAM papers and the CVPR24 challenge
  use: surfaces are contour elements on the pixel-corner grid, weighted by their length
  (2D) or area (3D). MONAI's ``compute_surface_dice`` matches it only with
  ``use_subvoxels=True``, which is what is called here. Masks are cropped to the union of
  both foregrounds plus a one-pixel background border before the call (exact, and it makes
  a mask that touches the image edge have a surface there, as DeepMind's padding does).
* **HD95**: 95th percentile symmetric Hausdorff distance of the boundary pixels (MONAI).
* Spacing comes in ITK order ``(x, y[, z])`` (as :class:`medisam.io.MedicalImage` keeps it)
  and is reversed to the array's axis order here.

Empty-mask policy (both masks are booleans on the same grid):

==================  ======  ======  ======  =====================================
case                Dice    IoU     NSD     HD95
==================  ======  ======  ======  =====================================
both empty          1       1       1       0 (perfect agreement)
one empty           0       0       0       NaN: undefined (no surface to measure
                                            to); summaries skip NaN and count it
==================  ======  ======  ======  =====================================
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from medisam.errors import InputError, require
from medisam.metrics_basic import dice, iou

DEFAULT_NSD_TOLERANCE_MM = 2.0


@dataclass(frozen=True)
class Scores:
    dsc: float
    iou: float
    nsd: float
    hd95: float


def _check(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray,
                                                                                            tuple[float, ...]]:
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise InputError(f"prediction shape {pred.shape} does not match the truth {truth.shape}")
    if pred.ndim not in (2, 3):
        raise InputError(f"metrics need 2D or 3D masks, got shape {pred.shape}")
    sp = tuple(float(s) for s in (spacing if spacing is not None else (1.0,) * pred.ndim))
    if len(sp) != pred.ndim or not all(s > 0 and math.isfinite(s) for s in sp):
        raise InputError(f"spacing {sp} does not fit {pred.ndim}D masks")
    return pred, truth, tuple(reversed(sp))  # ITK (x, y, z) -> array (z, y, x)


def _crop(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the union's bounding box and pad one background pixel around."""
    union = pred | truth
    idx = np.nonzero(union)
    sl = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    return np.pad(pred[sl], 1), np.pad(truth[sl], 1)


def _tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask))[None, None]


def nsd(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None,
        tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (DeepMind definition, see module doc)."""
    pred, truth, sp = _check(pred, truth, spacing)
    has_p, has_t = bool(pred.any()), bool(truth.any())
    if not has_p and not has_t:
        return 1.0
    if not has_p or not has_t:
        return 0.0
    metrics = require("monai.metrics", "bench")
    p, t = _crop(pred, truth)
    with warnings.catch_warnings():  # MONAI deprecation notices inside its own helpers
        warnings.simplefilter("ignore", FutureWarning)
        value = metrics.compute_surface_dice(_tensor(p), _tensor(t), [float(tolerance_mm)], include_background=True,
                                             spacing=list(sp), use_subvoxels=True)
    return float(value.reshape(-1)[0])


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile Hausdorff distance in mm; 0 when both are empty, NaN when one is."""
    pred, truth, sp = _check(pred, truth, spacing)
    has_p, has_t = bool(pred.any()), bool(truth.any())
    if not has_p and not has_t:
        return 0.0
    if not has_p or not has_t:
        return float("nan")
    metrics = require("monai.metrics", "bench")
    p, t = _crop(pred, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        value = metrics.compute_hausdorff_distance(_tensor(p), _tensor(t), include_background=True, percentile=95,
                                                   spacing=list(sp))
    return float(value.reshape(-1)[0])


def score(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None,
          tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, surface: bool = True) -> Scores:
    """All four metrics; ``surface=False`` skips NSD/HD95 (NaN) for speed."""
    pred, truth, _ = _check(pred, truth, spacing)
    if not surface:
        return Scores(dice(pred, truth), iou(pred, truth), float("nan"), float("nan"))
    return Scores(dice(pred, truth), iou(pred, truth), nsd(pred, truth, spacing, tolerance_mm),
                  hd95(pred, truth, spacing))
