"""Simulated correction scribbles: the stroke a user draws on a mask's largest error, for benchmarks.

A user who sees a missed part (or a leak) draws a line through it. The simulation: the largest
error region (missed object: a positive scribble; leak: a negative one), then the longest straight
run inside it through its deepest pixel (the one farthest from its border), tried in
:data:`DIRECTIONS` directions. On a volume the region is the largest 26-connected error component
and the scribble is drawn on its largest cross-section along the session's slicing axis.
``benchmarks/scribbles.py`` places every scribble this way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: directions (evenly spaced over 180 degrees) a scribble through the deepest pixel may take
DIRECTIONS = 12


def longest_run(region: np.ndarray) -> list[tuple[float, float]]:
    """The two ends ``(x, y)`` (pixel coordinates, centres at ``i + 0.5``) of the longest straight run
    inside the ``(H, W)`` bool ``region`` through its deepest pixel; one end twice for a lone pixel."""
    if region.ndim != 2 or not region.any():
        raise ValueError("longest_run needs a non-empty 2D region")
    h, w = region.shape
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y0, x0 = (float(v) + 0.5 for v in np.unravel_index(int(np.argmax(depth)), depth.shape))
    best, best_len = [(x0, y0), (x0, y0)], -1.0
    for angle in np.arange(DIRECTIONS) * np.pi / DIRECTIONS:
        dx, dy = float(np.cos(angle)), float(np.sin(angle))
        ends, length = [], 0.0
        for sign in (1.0, -1.0):
            t = 0.0
            while True:
                x, y = x0 + sign * (t + 1.0) * dx, y0 + sign * (t + 1.0) * dy
                if not (0 <= x < w and 0 <= y < h and region[int(y), int(x)]):
                    break
                t += 1.0
            ends.append((x0 + sign * t * dx, y0 + sign * t * dy))
            length += t
        if length > best_len:
            best, best_len = ends, length
    return best


def _largest(parts: list[tuple[np.ndarray, bool]], structure: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """The largest connected component over ``(mask, positive)`` parts, with its part's sign."""
    best: tuple[int, np.ndarray, bool] | None = None
    for mask, positive in parts:
        labels, n = ndimage.label(mask, structure=structure)
        if not n:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        i = int(np.argmax(sizes))
        if best is None or sizes[i] > best[0]:
            best = (int(sizes[i]), labels == i + 1, positive)
    return None if best is None else (best[1], best[2])


def error_scribble_2d(pred: np.ndarray, truth: np.ndarray) -> tuple[list[tuple[float, float]], bool] | None:
    """The scribble on the largest 8-connected error region of ``pred`` against ``truth`` (both
    ``(H, W)`` bool): its ``(x, y)`` polyline and sign (True: it marks a missed part). None: no error."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    found = _largest([(truth & ~pred, True), (pred & ~truth, False)], np.ones((3, 3), bool))
    return None if found is None else (longest_run(found[0]), found[1])


def error_scribble_3d(pred: np.ndarray, truth: np.ndarray, axis: int = 0
                      ) -> tuple[int, list[tuple[float, float]], bool] | None:
    """The scribble on the largest 26-connected error component of ``pred`` against ``truth`` (both
    ``(Z, Y, X)`` bool), drawn on its largest cross-section along ``axis``: ``(slice, polyline, sign)``
    with the polyline's ``(x, y)`` in that plane's pixels (its two remaining array axes in order, as
    the session's planes). None: no error."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    found = _largest([(truth & ~pred, True), (pred & ~truth, False)], np.ones((3, 3, 3), bool))
    if found is None:
        return None
    component, positive = found
    planes = np.moveaxis(component, axis, 0)
    k = int(np.argmax(planes.sum(axis=(1, 2))))
    section, _ = _largest([(planes[k], positive)], np.ones((3, 3), bool)) or (planes[k], positive)
    return k, longest_run(section), positive
