"""A voxel layer over an object's slice results: what 3D corrective clicks set.

An :class:`EditLayer` is a crop of the ``(Z, Y, X)`` volume (``origin`` + a bool ``mask``)
that replaces the object's model result inside the crop; outside it the slice results show.
It lives in the object's prompt state, so every undo snapshot holds its own copy (a crop
around the object, not the volume) and ``session.undo()`` restores it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class EditLayer:
    """``mask`` (bool) covers ``origin + [0, mask.shape)`` of the ``(Z, Y, X)`` volume."""

    origin: tuple[int, int, int]
    mask: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(o, o + n) for o, n in zip(self.origin, self.mask.shape))  # type: ignore[return-value]

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` (bool, the whole grid) with the crop replaced by the layer (a copy)."""
        out = volume.copy()
        out[self.slices] = self.mask
        return out

    def overlap(self, crop: tuple[slice, slice, slice]) -> tuple[slice, slice, slice] | None:
        """The part of ``crop`` (bounded slices of the volume) that the layer covers; None where they do not meet."""
        lo = [max(c.start, o) for c, o in zip(crop, self.origin)]
        hi = [min(c.stop, o + n) for c, o, n in zip(crop, self.origin, self.mask.shape)]
        return tuple(slice(a, b) for a, b in zip(lo, hi)) if all(a < b for a, b in zip(lo, hi)) else None  # type: ignore[return-value]

    def covers(self, axis: int, t: int) -> bool:
        """Whether plane ``t`` of ``axis`` crosses the crop."""
        return self.origin[axis] <= t < self.origin[axis] + self.mask.shape[axis]


def merged(old: EditLayer | None, new: EditLayer,
           base: Callable[[tuple[slice, slice, slice]], np.ndarray]) -> EditLayer:
    """One layer holding ``new`` over ``old``; ``base(crop)`` gives the object's mask without any
    layer on a crop of the grid (it fills the part of the union crop neither layer covers), so
    only the union crop is ever built."""
    if old is None:
        return new
    lo = np.minimum(old.origin, new.origin)
    hi = np.maximum(np.add(old.origin, old.mask.shape), np.add(new.origin, new.mask.shape))
    region = np.array(base(tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))), dtype=bool)  # a copy
    for layer in (old, new):  # the union crop only: no copy of the whole volume per click
        at = tuple(slice(int(o - a), int(o - a) + n) for o, a, n in zip(layer.origin, lo, layer.mask.shape))
        region[at] = layer.mask
    return EditLayer(tuple(int(v) for v in lo), region)  # type: ignore[arg-type]
