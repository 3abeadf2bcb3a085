"""The part of the embedding grid whose masks the fast decoders upscale: a box prompt's reach.

A box prompt's mask lies in and around its box, yet the decoder upscaled all 64x64
embedding tokens to 256x256 logits: about a third of a prompt's decoder time on a CPU. The
upscaling is local (each token alone gives its 4x4 block of logits, see
:mod:`medisam.models.fast_decoder`), so the fast graphs take a window of the grid and
upscale only that, exactly. This module chooses the window and puts the result back:

- the window is the prompts' extent (box corners and points) grown on every side by
  :data:`MARGIN_FRACTION` of the box's longer side, at least :data:`MIN_MARGIN` tokens;
  prompts without a box (points only) get the whole grid;
- logits outside the window are :data:`FILL_LOGIT`;
- where a kept mask's logits exceed :data:`EDGE_LOGIT` on the window's edge (a side inside
  the grid), the mask may go on past it: the caller upscales the whole grid instead.

So a mask differs from the whole grid's only by parts that do not touch the window
(a separate blob far from the box). The low-res logits do differ outside the window, and
logits passed back as a mask prompt reach the next prediction's dense embedding there: code
that feeds a prediction's logits back (the bench's correction clicks, a propagation or a
tracker with mask prompts) runs inside :func:`exact_logits`. ``MEDISAM_UPSCALE_WINDOW=0``
always upscales the whole grid. ``benchmarks/upscale_window.py`` measures time and agreement
on every 2D set.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

#: margin around the prompts, as a fraction of the box's longer side (in tokens) ...
MARGIN_FRACTION = 0.1
#: ... and at least this many tokens (4 low-res logits each)
MIN_MARGIN = 4
#: logits outside the window (LiteMedSAM's background logits are about -10 to -30)
FILL_LOGIT = -32.0
#: a kept mask above this on the window's edge -> upscale the whole grid (below 0, so that
#: masks thresholded down to this level are not cut either)
EDGE_LOGIT = -2.0


_EXACT = contextvars.ContextVar("medisam_exact_logits", default=False)


@contextmanager
def exact_logits() -> Iterator[None]:
    """Inside this block every prompt is upscaled on the whole grid, so a prediction's low-res
    logits are the model's everywhere: for logits that go back in as a mask prompt."""
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


def window_enabled() -> bool:
    """False inside :func:`exact_logits` and where ``MEDISAM_UPSCALE_WINDOW=0`` (the whole grid)."""
    if _EXACT.get():
        return False
    return os.environ.get("MEDISAM_UPSCALE_WINDOW", "1").strip().lower() not in ("0", "false", "no", "off")


def whole_grid(side: int) -> np.ndarray:
    """The window of the whole ``side`` x ``side`` grid."""
    return np.array([0, side, 0, side], dtype=np.int64)


def prompt_window(coords: np.ndarray, labels: np.ndarray, side: int, input_size: int) -> np.ndarray:
    """int64 ``[row0, row1, col0, col1]`` of the grid to upscale for prompts ``coords`` ``(B, N, 2)``
    (x, y on the model input grid) with SAM labels ``labels`` ``(B, N)`` (2/3: box corners,
    1/0: points, -1: padding). The whole grid without a box or with the window disabled."""
    if not window_enabled() or not np.isin(labels, (2.0, 3.0)).any():
        return whole_grid(side)
    used = coords[labels >= 0] * (side / input_size)  # (K, 2) in tokens
    if not np.isfinite(used).all():
        return whole_grid(side)
    corners = coords[np.isin(labels, (2.0, 3.0))] * (side / input_size)
    extent = corners.max(axis=0) - corners.min(axis=0)
    margin = max(MIN_MARGIN, math.ceil(MARGIN_FRACTION * float(extent.max())))
    (x0, y0), (x1, y1) = used.min(axis=0), used.max(axis=0)
    rows = (max(0, math.floor(y0) - margin), min(side, math.ceil(y1) + margin))
    cols = (max(0, math.floor(x0) - margin), min(side, math.ceil(x1) + margin))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return whole_grid(side)
    return np.array([*rows, *cols], dtype=np.int64)


def reaches_edge(window_logits: np.ndarray, window: np.ndarray, side: int) -> bool:
    """Whether any mask of ``window_logits`` ``(B, K, h, w)`` is above :data:`EDGE_LOGIT` on a
    side of ``window`` that lies inside the grid (the mask may go on past it)."""
    r0, r1, c0, c1 = (int(v) for v in window)
    edges = [window_logits[..., 0, :] if r0 > 0 else None, window_logits[..., -1, :] if r1 < side else None,
             window_logits[..., :, 0] if c0 > 0 else None, window_logits[..., :, -1] if c1 < side else None]
    return any(e is not None and bool((e > EDGE_LOGIT).any()) for e in edges)


def place(window_logits: np.ndarray, window: np.ndarray, side: int) -> np.ndarray:
    """``(B, K, h, w)`` logits of ``window`` -> ``(B, K, L, L)`` on the whole grid, :data:`FILL_LOGIT` elsewhere."""
    b, k, h, w = window_logits.shape
    r0, c0 = int(window[0]), int(window[2])
    if (r0, int(window[1]), c0, int(window[3])) == (0, side, 0, side):
        return window_logits
    scale = h // (int(window[1]) - r0)
    full = np.full((b, k, side * scale, side * scale), FILL_LOGIT, dtype=np.float32)
    full[:, :, r0 * scale:r0 * scale + h, c0 * scale:c0 * scale + w] = window_logits
    return full
