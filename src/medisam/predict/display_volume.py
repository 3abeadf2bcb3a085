"""A volume's display (what the encoder sees), mapped where it is read instead of held whole.

A session maps its volume's intensities to the encoder's [0, 255] scale with ONE window for all
slices (:func:`~medisam.io.intensity.display_mapping`: a CT window, min-max, or the 0.5-99.5
percentiles, the statistics taken once over the whole volume), so neighbouring slices look alike to
the encoder. Held whole, that map is a float32 copy of the volume, 4 bytes a voxel whatever the
prompt: a 30-slice 3D box in a 512 x 512 x 900 CT added 2.7 GiB at its peak (stop 54,
``docs/speed.md``). :class:`DisplayVolume` keeps the image and the map, and maps only what is read:
a plane for the encoder, a crop for the click walker, a 3D box's views. The numbers are the same,
as the map works voxel by voxel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medisam.io.intensity import DisplayMap, display_mapping


class DisplayVolume:
    """The display of a ``(Z, Y, X)`` volume, computed on each read (``display[index]``: a new
    float32 array, as ``mapping(array)[index]``). Read-only; ``np.asarray`` gives the whole volume."""

    __slots__ = ("_array", "_map")

    def __init__(self, array: np.ndarray, mapping: DisplayMap):
        self._array = np.asarray(array)
        self._map = mapping

    @classmethod
    def of(cls, array: np.ndarray, modality: str = "OT", window: str | tuple[float, float] | None = None
           ) -> "DisplayVolume":
        """``array``'s display with :func:`display_mapping`'s rules."""
        return cls(array, display_mapping(array, modality, window))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape

    @property
    def ndim(self) -> int:
        return self._array.ndim

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self._map(self._array[index])

    def __setitem__(self, index: Any, value: Any) -> None:
        raise ValueError("the display volume is read-only: it is computed from the image")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:  # numpy 2's contract: the whole display is always computed anew
            raise ValueError("a DisplayVolume has no array to share: it is computed from the image")
        whole = self._map(self._array)
        return whole if dtype is None else whole.astype(dtype)
