"""A voxel layer over an object's slice results: what 3D corrective clicks set.

An :class:`EditLayer` is a crop of the ``(Z, Y, X)`` volume (``origin`` + a bool ``mask``, kept bit-packed)
that replaces the object's model result inside the crop; outside it the slice results show.
It lives in the object's prompt state, so every undo snapshot holds its own copy (a crop
around the object, not the volume) and ``session.undo()`` restores it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from medisam.errors import InputError


@dataclass(frozen=True, init=False)
class EditLayer:
    """A bool mask over ``origin + [0, shape)`` of the ``(Z, Y, X)`` volume, stored bit-packed.

    Every undo step holds its own layer (up to ``max_undo`` of them per object, each as large as
    the object's click crop: up to ``RefineParams.max_voxels``), so the mask is kept as
    ``np.packbits`` (1 bit a voxel, 8x smaller than bool); :attr:`mask` unpacks a read-only copy."""

    origin: tuple[int, int, int]
    shape: tuple[int, int, int]
    bits: np.ndarray  # np.packbits of the flattened mask

    def __init__(self, origin: tuple[int, int, int], mask: np.ndarray):
        m = np.asarray(mask, dtype=bool)
        if m.ndim != 3:
            raise InputError(f"an edit layer's mask must be 3D (Z, Y, X), got shape {m.shape}")
        object.__setattr__(self, "origin", tuple(int(v) for v in origin))
        object.__setattr__(self, "shape", tuple(int(n) for n in m.shape))
        object.__setattr__(self, "bits", np.packbits(m, axis=None))

    @property
    def mask(self) -> np.ndarray:
        """The bool mask, unpacked (a new read-only array; bind it once where it is read often)."""
        out = np.unpackbits(self.bits, count=int(np.prod(self.shape))).reshape(self.shape).view(bool)
        out.flags.writeable = False
        return out

    @property
    def nbytes(self) -> int:
        """Bytes the layer holds (its packed bits)."""
        return int(self.bits.nbytes)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(o, o + n) for o, n in zip(self.origin, self.shape))  # type: ignore[return-value]

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` (bool, the whole grid) with the crop replaced by the layer (a copy)."""
        out = volume.copy()
        out[self.slices] = self.mask
        return out

    def overlap(self, crop: tuple[slice, slice, slice]) -> tuple[slice, slice, slice] | None:
        """The part of ``crop`` (bounded slices of the volume) that the layer covers; None where they do not meet."""
        lo = [max(c.start, o) for c, o in zip(crop, self.origin)]
        hi = [min(c.stop, o + n) for c, o, n in zip(crop, self.origin, self.shape)]
        return tuple(slice(a, b) for a, b in zip(lo, hi)) if all(a < b for a, b in zip(lo, hi)) else None  # type: ignore[return-value]

    def covers(self, axis: int, t: int) -> bool:
        """Whether plane ``t`` of ``axis`` crosses the crop."""
        return self.origin[axis] <= t < self.origin[axis] + self.shape[axis]


def merged(old: EditLayer | None, new: EditLayer,
           base: Callable[[tuple[slice, slice, slice]], np.ndarray]) -> EditLayer:
    """One layer holding ``new`` over ``old``; ``base(crop)`` gives the object's mask without any
    layer on a crop of the grid (it fills the part of the union crop neither layer covers), so
    only the union crop is ever built."""
    if old is None:
        return new
    lo = np.minimum(old.origin, new.origin)
    hi = np.maximum(np.add(old.origin, old.shape), np.add(new.origin, new.shape))
    region = np.array(base(tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))), dtype=bool)  # a copy
    for layer in (old, new):  # the union crop only: no copy of the whole volume per click
        at = tuple(slice(int(o - a), int(o - a) + n) for o, a, n in zip(layer.origin, lo, layer.shape))
        region[at] = layer.mask
    return EditLayer(tuple(int(v) for v in lo), region)  # type: ignore[arg-type]
