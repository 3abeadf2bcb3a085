"""Checks shared by every reader: size limit, empty axes, non-finite pixels.

Kept in one module so every format reports the same one-line ``InputError`` and the
size limit is checked from the header, before pixel data is decoded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from medisam.errors import ImageTooLargeError, InputError

#: Largest image (voxels x channels) read by default: 2**28 voxels, about 1 GiB as float32.
DEFAULT_MAX_VOXELS: int = 2**28


def check_size(shape: Sequence[int], path: str | Path, max_voxels: int | None) -> None:
    """Raise ``InputError`` for a zero-size axis, ``ImageTooLargeError`` above ``max_voxels`` elements.

    ``max_voxels`` of ``None`` or ``0`` disables the limit.
    """
    shape = tuple(int(s) for s in shape)
    if any(s == 0 for s in shape):
        raise InputError(f"{path}: empty image (shape {shape})")
    n = math.prod(shape)
    if max_voxels and n > max_voxels:
        raise ImageTooLargeError(
            f"{path}: image has {n} voxels (shape {shape}), more than the limit of {max_voxels}; "
            "pass max_voxels=None / --max-voxels 0 to read it anyway",
            voxels=n, limit=int(max_voxels),
        )


def check_pixels(array: np.ndarray, path: str | Path) -> None:
    """Raise ``InputError`` for an empty array or one with NaN/inf values."""
    if array.size == 0:
        raise InputError(f"{path}: empty image (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        if not np.isfinite(array).all():
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise InputError(f"{path}: image has {bad} NaN/inf pixel values")
