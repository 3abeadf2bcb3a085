"""Where a tracked object moved between two frames, measured on the frames themselves.

:func:`displacement` matches the object's neighbourhood on the previous frame (its mask's box
grown by a quarter of its size) against the next frame by normalised cross-correlation
(OpenCV ``matchTemplate``), searching up to half the object's size in every direction. The
tracker (:class:`~medisam.predict.tracking.TrackingSession`, ``TrackingConfig.flow``) centres
its boxes where the object went, and compares candidate masks with the previous mask moved
there. Without it a box that stays centred where the object was cuts a fast object's mask
on the side it moves to, the cut mask pulls the next box back again, and the track falls
behind until it is lost; the mask's own centroid velocity cannot see this (it moves with
the cut mask), nor can it say anything on the first frame after a prompt.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Correlation within this much of the best counts as "not moved" (no jitter on still objects).
STILL_TOLERANCE = 0.01

#: Both frames are smoothed before matching with a Gaussian of this fraction of the object's
#: size (at least 1 px): pixel noise (fluorescence, ultrasound speckle) then cannot pull the
#: match; an object's own shape, many times that size, still can. 0 turns smoothing off.
SMOOTH_FRACTION = 1 / 8


def shift_mask(mask: np.ndarray, d: tuple[int, int]) -> np.ndarray:
    """``mask`` moved by ``d = (dx, dy)`` whole pixels (what leaves the frame is dropped)."""
    dx, dy = d
    if dx == 0 and dy == 0:
        return mask
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                    max(-dx, 0):w - max(dx, 0)]
    return out


def displacement(prev: np.ndarray, cur: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """``(dx, dy)`` pixels the object of ``mask`` on frame ``prev`` moved to on frame ``cur``.

    ``prev``/``cur``: ``(H, W)`` grey or ``(H, W, 3)`` colour frames as the encoder sees them (a colour match
    sums over the channels: a grey video stored in colour scores as its grey frames). ``(0, 0)`` when the
    neighbourhood has no texture or staying put matches within :data:`STILL_TOLERANCE`.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0, 0
    h, w = mask.shape
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    cy, cx = max(2, (y1 - y0) // 4), max(2, (x1 - x0) // 4)  # context around the object
    ry, rx = max(2, (y1 - y0 + 1) // 2), max(2, (x1 - x0 + 1) // 2)  # search radius
    ty0, ty1, tx0, tx1 = max(0, y0 - cy), min(h, y1 + cy), max(0, x0 - cx), min(w, x1 + cx)
    sy0, sy1, sx0, sx1 = max(0, ty0 - ry), min(h, ty1 + ry), max(0, tx0 - rx), min(w, tx1 + rx)
    template = np.ascontiguousarray(prev[ty0:ty1, tx0:tx1], dtype=np.float32)
    region = np.ascontiguousarray(cur[sy0:sy1, sx0:sx1], dtype=np.float32)
    if SMOOTH_FRACTION > 0:
        sigma = max(1.0, SMOOTH_FRACTION * max(y1 - y0, x1 - x0))
        template, region = (cv2.GaussianBlur(a, (0, 0), sigma) for a in (template, region))
    if template.std() < 1e-3 or region.shape[0] < template.shape[0] or region.shape[1] < template.shape[1]:
        return 0, 0
    scores = np.nan_to_num(cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED), nan=-1.0)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    zy, zx = ty0 - sy0, tx0 - sx0  # where "not moved" is in the score map
    if scores[zy, zx] >= best - STILL_TOLERANCE:
        return 0, 0
    return sx0 + bx - tx0, sy0 + by - ty0
