"""Drawn prompts -> model prompts (pure converters, pixel coordinates of one slice, x = column).

* :func:`recist_prompt`: a RECIST line (a lesion's long axis on one slice, the prompt of
  MedSAM2's lesion workflow) -> a box and positive points on that slice, and
  :func:`recist_box3d`: a 3D box whose z extent is estimated from the long axis.
  :func:`recist_to_box3d` does both for a ``(Z, Y, X)`` volume (the one path of the CLI,
  the server, the web UI and the Slicer module).
* :func:`scribble_points`: a polyline -> clicks sampled along it.
* :func:`lasso_mask`: a closed polygon -> a filled ``(H, W)`` mask prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from medisam.errors import PromptError
from medisam.prompts import Box, Box3D, Points

#: Short axis over long axis assumed when only the long axis is drawn.
SHORT_AXIS_RATIO = 0.8
#: Growth of the RECIST box on each side, as a fraction of the long axis.
BOX_MARGIN = 0.1


@dataclass(frozen=True)
class RecistPrompt:
    """The prompts derived from a RECIST line on one slice."""

    box: Box
    points: Points
    length_mm: float


def _vertices(points: Sequence[Sequence[float]], minimum: int, what: str,
              shape_hw: tuple[int, int] | None = None) -> np.ndarray:
    """``points`` as an ``(N, 2)`` float array of ``(x, y)`` vertices; with ``shape_hw`` each must lie
    on the ``(H, W)`` slice (``0 <= x <= W``, ``0 <= y <= H``: pixel edges included)."""
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < minimum:
        raise PromptError(f"a {what} needs at least {minimum} (x, y) vertices, got {np.shape(points)}")
    if not np.isfinite(arr).all():
        raise PromptError(f"{what} vertices must be finite")
    if shape_hw is not None:
        h, w = shape_hw
        out = np.flatnonzero((arr[:, 0] < 0) | (arr[:, 0] > w) | (arr[:, 1] < 0) | (arr[:, 1] > h))
        if len(out):
            x, y = arr[out[0]]
            raise PromptError(f"{what} vertex {int(out[0])} ({x:g}, {y:g}) lies outside the {w}x{h} (W x H) slice")
    return arr


def recist_prompt(p0: Sequence[float], p1: Sequence[float], shape_hw: tuple[int, int],
                  pixel_mm: tuple[float, float] = (1.0, 1.0), short_ratio: float = SHORT_AXIS_RATIO,
                  margin: float = BOX_MARGIN) -> RecistPrompt:
    """Box + points from the long axis ``p0``-``p1`` (``(x, y)`` pixels) on an ``(H, W)`` slice.

    The box bounds a rectangle along the line (its length, ``short_ratio`` of it across),
    grown by ``margin`` of the length on each side and clipped to the slice; the points are
    positive clicks at 1/4, 1/2 and 3/4 of the line (inside the lesion; the endpoints lie on
    its border). ``pixel_mm``: pixel size ``(x, y)`` for :attr:`RecistPrompt.length_mm`.
    """
    a, b = _vertices([p0, p1], 2, "RECIST line")
    d = b - a
    length = float(np.hypot(*d))
    if length < 1.0:
        raise PromptError("a RECIST line needs two distinct endpoints at least one pixel apart")
    h, w = shape_hw
    if not all(0 <= v[0] <= w and 0 <= v[1] <= h for v in (a, b)):
        raise PromptError(f"RECIST line ({a[0]:g}, {a[1]:g})-({b[0]:g}, {b[1]:g}) leaves the {w}x{h} (W x H) slice")
    normal = np.array([-d[1], d[0]]) / length * (short_ratio * length / 2)
    corners = np.array([a + normal, a - normal, b + normal, b - normal])
    grow = margin * length
    x0, y0 = np.maximum(corners.min(axis=0) - grow, 0)
    x1, y1 = np.minimum(corners.max(axis=0) + grow, (w, h))
    pts = [a + f * d for f in (0.25, 0.5, 0.75)]
    points = Points(np.array([[min(p[0], w - 1), min(p[1], h - 1)] for p in pts]), np.ones(3, dtype=int))
    length_mm = float(math.hypot(d[0] * pixel_mm[0], d[1] * pixel_mm[1]))
    return RecistPrompt(Box(float(x0), float(y0), float(x1), float(y1)), points, length_mm)


def recist_box3d(prompt: RecistPrompt, slice_index: int, num_slices: int, slice_mm: float,
                 depth_ratio: float = SHORT_AXIS_RATIO) -> Box3D:
    """A 3D box (voxel indices, inclusive) around a RECIST prompt on slice ``slice_index``.

    Its x/y extent is the prompt's box; its z extent is ``depth_ratio`` of the long axis
    (in mm, a lesion is about as deep as it is wide across), centred on the slice,
    converted with the slice spacing ``slice_mm`` and clipped to the volume.
    """
    if not 0 <= slice_index < num_slices:
        raise PromptError(f"slice {slice_index} lies outside 0..{num_slices - 1}")
    if not slice_mm > 0:
        raise PromptError(f"slice spacing must be > 0, got {slice_mm}")
    half = int(round(depth_ratio * prompt.length_mm / 2 / slice_mm))
    b = prompt.box
    return Box3D(int(b.x0), int(b.y0), max(0, slice_index - half),
                 max(int(b.x0), int(math.ceil(b.x1)) - 1), max(int(b.y0), int(math.ceil(b.y1)) - 1),
                 min(num_slices - 1, slice_index + half))


def recist_ends(line: Sequence[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(x0, y0, x1, y1)`` -> the line's two endpoints (PromptError unless 4 numbers)."""
    vals = np.asarray(line, dtype=float).ravel() if np.size(line) == 4 else None
    if vals is None:
        raise PromptError(f"a RECIST line is x0,y0,x1,y1 (its two endpoints), got {np.size(line)} numbers")
    return (float(vals[0]), float(vals[1])), (float(vals[2]), float(vals[3]))


def recist_to_box3d(line: Sequence[float], slice_index: int, shape_zyx: Sequence[int],
                    spacing_zyx: Sequence[float]) -> Box3D:
    """A RECIST line ``(x0, y0, x1, y1)`` (pixels) on slice ``slice_index`` (axis 0) of a
    ``(Z, Y, X)`` volume with voxel size ``spacing_zyx`` (mm) -> the lesion's 3D box."""
    nz, h, w = (int(v) for v in shape_zyx[:3])
    sz, sy, sx = (float(v) for v in spacing_zyx[:3])
    r = recist_prompt(*recist_ends(line), (h, w), pixel_mm=(sx, sy))
    return recist_box3d(r, int(slice_index), nz, sz)


def scribble_points(polyline: Sequence[Sequence[float]], shape_hw: tuple[int, int], positive: bool = True,
                    spacing_px: float = 8.0, max_points: int = 16) -> Points:
    """Clicks every ``spacing_px`` along a polyline (both ends included, at most ``max_points``,
    evenly spread; one pixel gets one click), labelled positive or negative. Every vertex must
    lie on the ``(H, W)`` slice (PromptError otherwise: a click is never moved to fit)."""
    v = _vertices(polyline, 1, "scribble", shape_hw)
    h, w = shape_hw
    seg = np.hypot(*np.diff(v, axis=0).T) if len(v) > 1 else np.zeros(0)
    total = float(seg.sum())
    n = int(min(max_points, max(1, math.floor(total / spacing_px) + 1)))
    along = np.linspace(0.0, total, n) if n > 1 else np.zeros(1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    xs = np.interp(along, cum, v[:, 0]) if len(v) > 1 else v[:1, 0]
    ys = np.interp(along, cum, v[:, 1]) if len(v) > 1 else v[:1, 1]
    pix = np.stack([np.clip(np.floor(xs), 0, w - 1), np.clip(np.floor(ys), 0, h - 1)], axis=1)
    _, first = np.unique(pix, axis=0, return_index=True)
    pix = pix[np.sort(first)]
    return Points(pix, np.full(len(pix), 1 if positive else 0))


def lasso_mask(polygon: Sequence[Sequence[float]], shape_hw: tuple[int, int]) -> np.ndarray:
    """The ``(H, W)`` bool mask of the pixels inside a closed polygon (its outline included);
    every vertex must lie on the slice (PromptError otherwise)."""
    v = _vertices(polygon, 3, "lasso", shape_hw)
    h, w = shape_hw
    x, y = v[:, 0], v[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))  # the shoelace formula
    if area < 1.0:  # its outline alone was taken as the mask: a line, or one pixel
        raise PromptError(f"the lasso encloses {area:g} square pixels: its {len(v)} vertices lie on a line or "
                          "a point; draw around the object")
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(v).astype(np.int32).reshape(-1, 1, 2)], 1)
    if not mask.any():
        raise PromptError(f"the lasso encloses no pixel of the {w}x{h} slice")
    return mask.astype(bool)
