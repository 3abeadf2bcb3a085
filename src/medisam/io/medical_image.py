"""The one image type every consumer shares.

Axis order (the single convention of medisam, converted from/to each file format
only inside ``medisam.io``):

* ``array`` is indexed like NumPy/SimpleITK arrays: 2D images are ``(Y, X)`` or
  ``(Y, X, C)`` for colour (C = 3), 3D volumes are ``(Z, Y, X)`` (``[k, j, i]``),
  videos are ``(T, Y, X)`` or ``(T, Y, X, C)``.
* ``spacing``, ``origin`` and ``direction`` are physical (ITK/LPS) quantities in
  ITK order, i.e. ``(x, y[, z])`` in millimetres; ``direction`` is the row-major
  ``ndim x ndim`` cosine matrix flattened, as SimpleITK returns it. ``ndim`` is the
  number of spatial axes (2 or 3), never counting the colour axis.
* Masks are ``MedicalImage`` objects too: an integer label array on the same grid,
  with ``kind == "labels"``; 0 is background and label ``i`` is object ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medisam.errors import InputError

#: Names of the array axes of a ``(Z, Y, X)`` volume: ITK/NIfTI voxel index letters k/j/i,
#: world letters z/y/x, or the numbers (used by the CLI's ``--axis`` and ``predict.volume.parse_axis``).
AXIS_NAMES = {"k": 0, "j": 1, "i": 2, "z": 0, "y": 1, "x": 2, "0": 0, "1": 1, "2": 2}

#: Modalities that medisam distinguishes for intensity handling (DICOM codes).
KNOWN_MODALITIES = ("CT", "MR", "US", "XR", "ES", "DM", "OP", "SM", "PT", "OT")


@dataclass(frozen=True, eq=False)
class MedicalImage:
    """An image or volume with its physical geometry.

    Attributes:
        array: pixel data, axis order as in the module docstring.
        spacing: voxel size in mm, ITK order ``(x, y[, z])``.
        origin: position of the first voxel in mm (LPS), ITK order.
        direction: flattened ``ndim x ndim`` direction cosines, ITK order.
        modality: DICOM modality code ("CT", "MR", "US", "XR", "OT"...).
        is_rgb: True when the last axis holds colour channels.
        is_video: True when the first axis is time (frames), not space.
        kind: "image" or "labels".
        source: free metadata about where the image came from (path, format,
            DICOM file list for DICOM-SEG output, frame rate for videos...).
        geometry_warnings: one line per problem the reader found with the geometry (a
            skipped slice file, a gap or uneven steps in slice positions, missing
            positions). The array is usable, but masks written against it are misplaced;
            the CLI refuses to write them unless ``--allow-gaps``.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    modality: str = "OT"
    is_rgb: bool = False
    is_video: bool = False
    kind: str = "image"
    source: dict[str, Any] = field(default_factory=dict)
    geometry_warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        nd = self.spatial_ndim
        if nd not in (2, 3):
            raise InputError(
                f"image must have 2 or 3 spatial axes, got array shape {self.array.shape}"
            )
        if len(self.spacing) != nd or len(self.origin) != nd or len(self.direction) != nd * nd:
            raise InputError(
                f"geometry does not match a {nd}D image: spacing={self.spacing}, "
                f"origin={self.origin}, direction has {len(self.direction)} values"
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise InputError(f"spacing must be positive and finite, got {self.spacing}")

    # ------------------------------------------------------------------ shape
    @property
    def spatial_ndim(self) -> int:
        """Number of spatial (or time + space) axes: 2 for an image, 3 for a volume/video."""
        return self.array.ndim - (1 if self.is_rgb else 0)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Array shape without the colour axis, e.g. ``(Z, Y, X)``."""
        return tuple(self.array.shape[: self.spatial_ndim])

    @property
    def is_volume(self) -> bool:
        return self.spatial_ndim == 3

    @property
    def num_slices(self) -> int:
        """Slices (3D) or frames (video) along the first axis; 1 for a 2D image."""
        return self.array.shape[0] if self.is_volume else 1

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        """Spacing in array axis order (reverse of ITK order)."""
        return tuple(reversed(self.spacing))

    # --------------------------------------------------------------- helpers
    def slice2d(self, index: int, axis: int = 0) -> np.ndarray:
        """Return one 2D slice (``(Y, X)`` or ``(Y, X, C)``) of a volume along array ``axis``.

        A 2D image returns itself (``index`` must be 0).
        """
        if not self.is_volume:
            if index != 0:
                raise InputError(f"slice {index} requested from a 2D image")
            return self.array
        n = self.array.shape[axis]
        if not 0 <= index < n:
            raise InputError(f"slice {index} out of range: axis {axis} has {n} slices (0..{n - 1})")
        return np.take(self.array, index, axis=axis)

    def with_array(self, array: np.ndarray, **changes: Any) -> "MedicalImage":
        """A copy with another array on the same grid (e.g. a label map)."""
        return replace(self, array=array, **changes)

    def as_labels(self, labels: np.ndarray, copy: bool = True) -> "MedicalImage":
        """Wrap an integer label array with this image's geometry (a copy of it; ``copy=False``:
        the array itself where its type fits, for a caller that made it for this and keeps no
        reference: a 512 x 512 x 900 label map is 225 MiB)."""
        if tuple(labels.shape) != self.spatial_shape:
            raise InputError(
                f"label map shape {labels.shape} does not match image grid {self.spatial_shape}"
            )
        dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
        return replace(self, array=labels.astype(dtype, copy=copy), is_rgb=False, kind="labels")

    @staticmethod
    def from_array(
        array: np.ndarray,
        spacing: tuple[float, ...] | None = None,
        modality: str = "OT",
        is_rgb: bool | None = None,
    ) -> "MedicalImage":
        """Wrap a bare array (2D ``(Y,X)``/``(Y,X,3)`` or 3D ``(Z,Y,X)``) with identity geometry."""
        array = np.asarray(array)
        if is_rgb is None:
            is_rgb = array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] > 4
        if is_rgb and array.shape[-1] == 4:
            array = array[..., :3]
        nd = array.ndim - (1 if is_rgb else 0)
        if nd not in (2, 3):
            raise InputError(f"expected a 2D or 3D array, got shape {array.shape}")
        spacing = tuple(float(s) for s in (spacing or (1.0,) * nd))
        direction = tuple(float(v) for v in np.eye(nd).ravel())
        return MedicalImage(array, spacing, (0.0,) * nd, direction, modality, is_rgb)


def orientation_code(direction: tuple[float, ...], ndim: int) -> str:
    """Three-letter (or two-letter) LPS orientation code of the array axes, ITK style ("LPS" = RAI)."""
    if ndim != 3:
        return "2D"
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    code = ""
    for column in range(3):  # ITK axis i, j, k -> physical direction of increasing index
        vec = matrix[:, column]
        axis = int(np.argmax(np.abs(vec)))
        code += letters[axis][1 if vec[axis] > 0 else 0]
    return code


def grid_difference(image: MedicalImage, reference: MedicalImage,
                    geometry: bool = True) -> tuple[str, str, str] | None:
    """How ``image``'s voxel grid differs from ``reference``'s, as ``(what, image's, reference's)``
    in words: the first of shape, spacing (to 0.1 %), orientation (direction cosines to 1e-3) and
    origin (to a hundredth of a voxel) that differs; None on the same grid. ``geometry`` False: the
    shape alone (an array has no geometry of its own). Two volumes of one shape flipped or moved
    are two grids: read voxel by voxel, one lies misaligned on the other."""
    if image.spatial_shape != reference.spatial_shape:
        return "shape", str(image.spatial_shape), str(reference.spatial_shape)
    if not geometry:
        return None
    if not np.allclose(image.spacing, reference.spacing, rtol=1e-3):
        return "spacing", str(tuple(image.spacing)), str(tuple(reference.spacing))
    if not np.allclose(image.direction, reference.direction, atol=1e-3):
        return ("orientation", orientation_code(image.direction, image.spatial_ndim),
                orientation_code(reference.direction, reference.spatial_ndim))
    if not np.allclose(image.origin, reference.origin, atol=0.01 * float(min(reference.spacing))):
        return ("origin", f"{tuple(round(v, 3) for v in image.origin)} mm",
                str(tuple(round(v, 3) for v in reference.origin)))
    return None
