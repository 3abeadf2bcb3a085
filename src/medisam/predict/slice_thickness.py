"""How far apart a volume's slices really are: header spacing, or the slices it was interpolated from.

A CT reconstructed at 5 mm and resampled to 1.25 mm (linear interpolation, as
``SimpleITK.Resample`` or a viewer's export does) has thin slices in its header and 5 mm of
information along that axis: between two original slices every voxel is a straight line, so
its second difference along the axis is zero except at the original slices (the knots). Native
thin slices have second differences on every slice. Measured on the volumes here
(docs/speed.md, stop 41): the mean over slices of the squared second difference is up to 2.1x
its median on the 4 BraTS and 103 hippocampus volumes on every axis and on lung1 at its own 5 mm,
and ~10^15x on lung1 resampled to 1.25 mm, whose knots are 4 slices apart.

The tri-planar plan's anisotropy limit uses this effective spacing, so views across smeared
slices are skipped before they are encoded (stop 40 caught them only after, by their vote).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: mean / median of the per-slice squared second difference above which an axis is interpolated
INTERPOLATED_RATIO = 10.0
#: a slice is a knot where its squared second difference exceeds this share of the mean
KNOT_SHARE = 0.01
#: in-plane subsampling of the measure (bounded cost on 512 x 512 planes)
STEP = 4


def interpolation_factor(volume: np.ndarray, axis: int) -> int:
    """How many slices along ``axis`` one original slice became (1: not interpolated).

    Slices that are constant (padding) and their neighbours are left out of the measure."""
    v = np.moveaxis(np.asarray(volume), axis, 0)[:, ::STEP, ::STEP].astype(np.float32, copy=False)
    n = v.shape[0]
    if n < 8:
        return 1
    flat = v.reshape(n, -1)
    varied = flat.max(axis=1) > flat.min(axis=1)
    d2 = ((flat[:-2] - 2.0 * flat[1:-1] + flat[2:]) ** 2).mean(axis=1)
    d2 = d2[varied[:-2] & varied[1:-1] & varied[2:]]
    if len(d2) < 6 or not np.isfinite(d2).all():
        return 1
    mean, median = float(d2.mean()), float(np.median(d2))
    if mean <= 0.0 or median * INTERPOLATED_RATIO >= mean:
        return 1
    knots = np.nonzero(d2 > KNOT_SHARE * mean)[0]
    if len(knots) < 2:
        return 1
    return max(1, int(round(float(np.median(np.diff(knots))))))


def effective_spacing(volume: np.ndarray, spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    """``spacing_zyx`` with each interpolated axis at the spacing of the slices it came from."""
    return tuple(float(s) * interpolation_factor(volume, a) for a, s in enumerate(spacing_zyx))  # type: ignore[return-value]
