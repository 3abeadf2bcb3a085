"""Model-free prompt simulation from a ground-truth mask (shared by benchmark and training).

All functions take a 2D boolean mask ``(H, W)`` (row = y, column = x) and return prompts
in original-image pixel coordinates (see :mod:`medisam.prompts`): boxes are XYXY pixel
edges (a pixel ``(row r, col c)`` spans ``[c, c+1) x [r, r+1)``), points are the integer
``(column, row)`` index of the chosen pixel, as SAM's own click simulation uses.
Randomness comes only from the explicit ``rng`` so a seed reproduces every prompt.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medisam.errors import PromptError
from medisam.prompts import Box, Points


def nonempty_mask(mask: np.ndarray, ndim: int = 2, needs: str = "prompt simulation needs a 2D mask",
                  empty: str = "cannot simulate a prompt for an empty mask") -> np.ndarray:
    """``mask`` as bool with ``ndim`` dimensions and some foreground, else a PromptError
    (``needs``/``empty`` word the message for the caller)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != ndim:
        raise PromptError(f"{needs}, got shape {mask.shape}")
    if not mask.any():
        raise PromptError(empty)
    return mask


def tight_box(mask: np.ndarray) -> Box:
    """The tightest XYXY box (pixel edges) around the mask's foreground."""
    box = Box.from_mask(nonempty_mask(mask))
    assert box is not None
    return box


def jitter_box(box: Box, fraction: float, rng: np.random.Generator, height: int, width: int) -> Box:
    """Move each box edge by up to ``fraction`` of the box size (uniform, independently).

    x edges move by ``U(-f*w, f*w)``, y edges by ``U(-f*h, f*h)`` with ``w, h`` the box
    size; the result is clipped to the ``height x width`` image and kept at least one
    pixel wide, so it is always a valid prompt. ``fraction=0`` returns ``box`` unchanged.
    """
    if fraction < 0:
        raise PromptError(f"jitter fraction must be >= 0, got {fraction}")
    if fraction == 0:
        return box
    bw, bh = box.x1 - box.x0, box.y1 - box.y0
    dx = rng.uniform(-fraction * bw, fraction * bw, size=2)
    dy = rng.uniform(-fraction * bh, fraction * bh, size=2)
    x0 = float(np.clip(box.x0 + dx[0], 0, width - 1))
    x1 = float(np.clip(box.x1 + dx[1], x0 + 1, width))
    y0 = float(np.clip(box.y0 + dy[0], 0, height - 1))
    y1 = float(np.clip(box.y1 + dy[1], y0 + 1, height))
    return Box(x0, y0, x1, y1)


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the foreground pixel farthest from the mask boundary (and image border).

    Uses the Euclidean distance transform of the mask padded with background, so a
    region touching the image border is treated as ending there; ties go to the first
    pixel in row-major order. The point is always inside the mask, even for rings.
    """
    mask = nonempty_mask(mask)
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(col), int(row)


def random_points(region: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(k, 2)`` XY of ``k`` distinct pixels drawn uniformly from ``region`` (with
    replacement only when the region has fewer than ``k`` pixels)."""
    rows, cols = np.nonzero(region)
    if len(rows) == 0:
        raise PromptError("cannot sample points from an empty region")
    idx = rng.choice(len(rows), size=k, replace=len(rows) < k)
    return np.stack([cols[idx], rows[idx]], axis=1).astype(np.float32)


def negative_region(mask: np.ndarray, margin: float = 0.5) -> np.ndarray:
    """Background near the object: the tight box grown by ``margin`` of its size, minus the
    mask (the whole background when that band is empty). Negatives far from the object
    tell a promptable model nothing, so they are drawn close to it."""
    mask = nonempty_mask(mask)
    h, w = mask.shape
    b = tight_box(mask)
    mx, my = margin * (b.x1 - b.x0), margin * (b.y1 - b.y0)
    x0, x1 = int(max(0, np.floor(b.x0 - mx))), int(min(w, np.ceil(b.x1 + mx)))
    y0, y1 = int(max(0, np.floor(b.y0 - my))), int(min(h, np.ceil(b.y1 + my)))
    band = np.zeros_like(mask)
    band[y0:y1, x0:x1] = True
    band &= ~mask
    return band if band.any() else ~mask


def sample_points(mask: np.ndarray, n_pos: int, n_neg: int, rng: np.random.Generator) -> Points:
    """``n_pos`` positive points inside the mask and ``n_neg`` negatives near it (see
    :func:`negative_region`); positives first. Negatives are omitted when the mask
    covers the whole image."""
    mask = nonempty_mask(mask)
    if n_pos < 1 or n_neg < 0:
        raise PromptError(f"need n_pos >= 1 and n_neg >= 0, got {n_pos}, {n_neg}")
    coords = [random_points(mask, n_pos, rng)]
    labels = [np.ones(n_pos, dtype=np.int64)]
    background = negative_region(mask)
    if n_neg and background.any():
        coords.append(random_points(background, n_neg, rng))
        labels.append(np.zeros(n_neg, dtype=np.int64))
    return Points(np.concatenate(coords), np.concatenate(labels))


def correction_click(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int] | None:
    """The next simulated correction click ``(x, y, label)``, or None when ``pred == truth``.

    The error regions are the connected components (8-connectivity) of the false
    negatives (``truth & ~pred``) and false positives (``pred & ~truth``); the click goes
    to the interior-most pixel of the largest one (most pixels; ties: false negatives
    first), positive (1) on a missed region, negative (0) on a false-positive region.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise PromptError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    best: tuple[int, np.ndarray, int] | None = None  # (area, region, label)
    for error, label in ((truth & ~pred, 1), (pred & ~truth, 0)):
        if not error.any():
            continue
        comps, n = ndimage.label(error, structure=np.ones((3, 3), dtype=bool))
        areas = np.bincount(comps.ravel())[1:]
        i = int(np.argmax(areas))
        if best is None or areas[i] > best[0]:
            best = (int(areas[i]), comps == i + 1, label)
    if best is None:
        return None
    x, y = interior_point(best[1])
    return x, y, best[2]
