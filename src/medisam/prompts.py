"""Prompt types, validated on creation, in original-image pixel coordinates.

Convention everywhere: x = column, y = row, in pixels of the original 2D image (or
slice); boxes are XYXY with ``x0 < x1`` and ``y0 < y1`` and may touch the image border
(``0 <= x <= W``). Only :mod:`medisam.models.transform` rescales them to a model grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from medisam.errors import PromptError


def _past_edges(edges: Iterable[tuple[str, float]], low: float, high: float) -> list[str]:
    """``"x1 900 > 512"`` for each named edge outside ``[low, high]``: what a prompt's error says reaches out."""
    return [f"{name} {v:g} < {low:g}" if v < low else f"{name} {v:g} > {high:g}"
            for name, v in edges if not low <= v <= high]


def _finite(values: Iterable[float], what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise PromptError(f"{what} must be numbers, got {values!r}") from None
    if not all(np.isfinite(out)):
        raise PromptError(f"{what} must be finite, got {out}")
    return out


def _label(value: object) -> int:
    """A point's label: 0 (negative) or 1 (positive), exactly; ``int()`` made 0.5 a negative click and NaN or
    1e308 a ValueError/OverflowError traceback."""
    try:
        ok = bool(value in (0, 1))
    except (TypeError, ValueError):  # an array: no one label
        ok = False
    if not ok:
        raise PromptError(f"point labels must be 0 (negative) or 1 (positive), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Box:
    """An XYXY box in pixels (x = column, y = row)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = _finite((self.x0, self.y0, self.x1, self.y1), "box coordinates")
        if x1 < x0 or y1 < y0:
            raise PromptError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is inverted: need x0 < x1 and y0 < y1")
        if x1 == x0 or y1 == y0:
            raise PromptError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is empty")

    @staticmethod
    def of(value: "Box | Sequence[float]") -> "Box":
        """Accept a Box or any 4-sequence ``(x0, y0, x1, y1)``."""
        if isinstance(value, Box):
            return value
        values = list(np.asarray(value, dtype=np.float64).ravel())
        if len(values) != 4:
            raise PromptError(f"a box needs 4 numbers x0,y0,x1,y1, got {len(values)}")
        return Box(*values)

    @staticmethod
    def from_mask(mask: np.ndarray, margin: float = 0.0) -> "Box | None":
        """Tight box around a 2D mask's foreground (pixel edges), grown by ``margin``; None if empty."""
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            return None
        h, w = mask.shape
        return Box(max(0.0, xs.min() - margin), max(0.0, ys.min() - margin),
                   min(float(w), xs.max() + 1 + margin), min(float(h), ys.max() + 1 + margin))

    def as_array(self) -> np.ndarray:
        """``(4,)`` float32 XYXY; a coordinate float32 cannot hold is a PromptError (checked before the
        cast, which would give inf with a RuntimeWarning in the log)."""
        values = (self.x0, self.y0, self.x1, self.y1)
        if max(abs(v) for v in values) > float(np.finfo(np.float32).max):
            raise PromptError(f"box ({self.x0:g},{self.y0:g},{self.x1:g},{self.y1:g}) lies far outside any image")
        return np.array(values, dtype=np.float32)

    def check_inside(self, height: int, width: int) -> "Box":
        """Raise PromptError unless the box lies within a ``height x width`` image."""
        past = _past_edges((("x0", self.x0), ("x1", self.x1)), 0, width) + \
            _past_edges((("y0", self.y0), ("y1", self.y1)), 0, height)
        if past:
            raise PromptError(f"box ({self.x0:g},{self.y0:g},{self.x1:g},{self.y1:g}) reaches outside "
                              f"the {width}x{height} (W x H) image ({', '.join(past)})")
        return self


@dataclass(frozen=True)
class Points:
    """Click prompts: ``coords`` (N, 2) XY pixels, ``labels`` (N,) with 1 = positive, 0 = negative."""

    coords: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        coords = np.asarray(self.coords, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(coords) == 0 or len(coords) != len(labels):
            raise PromptError(f"points need N >= 1 coordinates and N labels, got {len(coords)} and {len(labels)}")
        if not np.isfinite(coords).all():
            raise PromptError("point coordinates must be finite")
        if not np.isin(labels, (0, 1)).all():
            raise PromptError(f"point labels must be 0 (negative) or 1 (positive), got {sorted(set(labels.tolist()))}")
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "labels", labels)

    @staticmethod
    def of(value: "Points | Sequence[Sequence[float]]") -> "Points":
        """Accept Points or a sequence of ``(x, y)`` (positive) or ``(x, y, label)`` tuples."""
        if isinstance(value, Points):
            return value
        rows = [tuple(v) for v in value]
        if not rows or any(len(r) not in (2, 3) for r in rows):
            raise PromptError("points must be (x, y) or (x, y, label) tuples")
        coords = [_finite(r[:2], "point coordinates") for r in rows]
        labels = [_label(r[2]) if len(r) == 3 else 1 for r in rows]
        return Points(np.array(coords), np.array(labels))

    def check_inside(self, height: int, width: int) -> "Points":
        x, y = self.coords[:, 0], self.coords[:, 1]
        bad = (x < 0) | (y < 0) | (x >= width) | (y >= height)
        if bad.any():
            i = int(np.argmax(bad))
            raise PromptError(f"point ({x[i]:g},{y[i]:g}) lies outside the {width}x{height} (W x H) image")
        return self


@dataclass(frozen=True)
class MaskPrompt:
    """A previous low-res logit map ``(L, L)`` (model grid), fed back to refine a mask."""

    logits: np.ndarray

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float32)
        if logits.ndim == 3 and logits.shape[0] == 1:
            logits = logits[0]
        if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
            raise PromptError(f"mask prompt must be square low-res logits (L, L), got {logits.shape}")
        if not np.isfinite(logits).all():
            raise PromptError("mask prompt contains NaN or inf")
        object.__setattr__(self, "logits", logits)


@dataclass(frozen=True)
class Box3D:
    """A 3D box in voxel indices of the ``(Z, Y, X)`` array, inclusive on both ends.

    ``x``/``y`` index columns/rows of each slice and ``z`` the slice; as the CVPR24
    challenge's 3D box (``boxes`` = x_min, y_min, z_min, x_max, y_max, z_max).
    """

    x0: int
    y0: int
    z0: int
    x1: int
    y1: int
    z1: int

    def __post_init__(self) -> None:
        v = _finite((self.x0, self.y0, self.z0, self.x1, self.y1, self.z1), "3D box")
        if v[3] < v[0] or v[4] < v[1] or v[5] < v[2]:
            raise PromptError(f"3D box ({','.join(f'{c:g}' for c in v)}) is inverted: need x0 <= x1, y0 <= y1 and "
                              "z0 <= z1")

    def box2d(self) -> Box:
        """The x/y extent as a 2D pixel box (inclusive voxel indices -> pixel edges)."""
        return Box(self.x0, self.y0, self.x1 + 1, self.y1 + 1)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Index slices ``(z, y, x)`` of the voxels the box holds (a box inside the volume)."""
        return slice(self.z0, self.z1 + 1), slice(self.y0, self.y1 + 1), slice(self.x0, self.x1 + 1)

    def check_inside(self, shape_zyx: tuple[int, int, int]) -> "Box3D":
        z, y, x = shape_zyx
        past = (_past_edges((("i0", self.x0), ("i1", self.x1)), 0, x - 1)
                + _past_edges((("j0", self.y0), ("j1", self.y1)), 0, y - 1)
                + _past_edges((("k0", self.z0), ("k1", self.z1)), 0, z - 1))
        if past:
            raise PromptError(f"3D box ({self.x0},{self.y0},{self.z0},{self.x1},{self.y1},{self.z1}) "
                              f"reaches outside the volume of {x}x{y}x{z} (X x Y x Z) voxels ({', '.join(past)})")
        return self

    def check_drawn_on(self, k: int | None, axis: int = 0) -> int | None:
        """``k``, the slice along array ``axis`` (0 = z, 1 = y, 2 = x) a 2D box with this box's range
        along that axis was drawn on (None: a 3D box), checked to lie in the range."""
        lo, hi = ((self.z0, self.z1), (self.y0, self.y1), (self.x0, self.x1))[axis]
        if k is not None and not lo <= k <= hi:
            raise PromptError(f"the box was drawn on slice {k}, outside its slice range {lo}..{hi}")
        return k
