"""A volume seen as a stack of 2D slices along one array axis, ready for a 2D encoder.

Axis convention: the volume array is ``(Z, Y, X)`` = ``[k, j, i]``. Slicing along
``axis`` gives 2D planes whose rows/columns are the two remaining array axes in order:

====  ==========  ==================  ===========================
axis  slice index  plane (rows, cols)  plane x (col) / y (row) is
====  ==========  ==================  ===========================
0     k            (Y, X)              i / j
1     j            (Z, X)              i / k
2     i            (Z, Y)              j / k
====  ==========  ==================  ===========================

Intensities are mapped to the encoder's [0, 255] range once for the whole volume
(a CT window, or the MR/other 0.5-99.5 percentile window computed over all voxels),
not slice by slice, so neighbouring slices look alike to the encoder -- propagation
relies on that.

:func:`resample_axis` stretches a view of a 3D box to square pixels (linear) and shrinks
masks back (area average -> fraction of each voxel); the views themselves and their cost
are planned in :mod:`medisam.predict.view_plan`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

import torch
import torch.nn.functional as F

from medisam.errors import InputError, PromptError
from medisam.io.intensity import display_mapping
from medisam.io.medical_image import AXIS_NAMES, MedicalImage
from medisam.prompts import Box, Box3D

def parse_axis(axis: int | str) -> int:
    """``0/1/2`` or ``k/j/i`` (also ``z/y/x``) -> array axis of the ``(Z, Y, X)`` volume."""
    key = str(axis).strip().lower()
    if key not in AXIS_NAMES:
        raise InputError(f"axis must be 0, 1, 2 or k, j, i; got {axis!r}")
    return AXIS_NAMES[key]


#: how much larger than every other axis's spacing an axis's must be to count as the volume's
#: acquisition axis (:func:`acquisition_axis`)
ACQUISITION_ANISOTROPY = 1.2


def thick_axis(spacing_zyx: Sequence[float]) -> int | None:
    """The array axis whose spacing exceeds every other axis's by :data:`ACQUISITION_ANISOTROPY`;
    None when no axis does (an isotropic or nearly isotropic volume)."""
    spacing = [float(s) for s in spacing_zyx]
    widest = int(np.argmax(spacing))
    others = [s for i, s in enumerate(spacing) if i != widest]
    return widest if all(spacing[widest] >= ACQUISITION_ANISOTROPY * s for s in others) else None


def acquisition_axis(spacing_zyx: Sequence[float]) -> int:
    """The array axis a volume was acquired along: its :func:`thick_axis` (a sagittal MR or CT
    stored with its slices last: axis 2); else 0. Its planes have square pixels, as the 2D model was
    trained on; the planes of another axis of such a volume are squashed (stop 49: a sagittal
    14-organ CT's protocol starts at 0.857 along axis 0 and 0.907 along its acquisition axis)."""
    axis = thick_axis(spacing_zyx)
    return 0 if axis is None else axis


def volume_to_display(array: np.ndarray, modality: str = "OT",
                      window: str | tuple[float, float] | None = None) -> np.ndarray:
    """Map a ``(Z, Y, X)`` volume to float32 [0, 255] with ONE window for all slices.

    Same rules as :func:`medisam.io.intensity.to_display` (explicit window > uint8 as is >
    CT in HU gets the soft-tissue window > other CT min-max > percentile 0.5-99.5), but the
    statistics come from the whole volume (:func:`~medisam.io.intensity.display_mapping`;
    a session maps only the planes and crops it reads: :class:`~medisam.predict.display_volume.DisplayVolume`).
    """
    return display_mapping(array, modality, window)(np.asarray(array))


@dataclass(frozen=True)
class SliceGeometry:
    """How 2D planes map to the 3D volume for one slicing ``axis``."""

    shape_zyx: tuple[int, int, int]
    axis: int
    spacing_zyx: tuple[float, float, float]

    @property
    def num_slices(self) -> int:
        return self.shape_zyx[self.axis]

    @property
    def plane_axes(self) -> tuple[int, int]:
        """Array axes of the plane's rows and columns."""
        rows, cols = (a for a in range(3) if a != self.axis)
        return rows, cols

    @property
    def plane_hw(self) -> tuple[int, int]:
        r, c = self.plane_axes
        return self.shape_zyx[r], self.shape_zyx[c]

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """In-plane pixel size ``(x = column, y = row)`` in mm."""
        r, c = self.plane_axes
        return self.spacing_zyx[c], self.spacing_zyx[r]

    def check_slice(self, index: int) -> int:
        n = self.num_slices
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
            raise PromptError(f"slice {index} out of range: axis {self.axis} has {n} slices (0..{n - 1})")
        return int(index)

    def check_range(self, slices: Sequence[int]) -> tuple[int, int]:
        """A slice range ``(k0, k1)`` (inclusive) inside the volume."""
        if len(slices) != 2:
            raise PromptError(f"slice range takes two slice indices (k0, k1), got {slices!r}")
        lo, hi = (self.check_slice(int(k)) for k in slices)
        if hi < lo:
            raise PromptError(f"slice range {lo}..{hi} is inverted")
        return lo, hi

    def take(self, volume: np.ndarray, index: int) -> np.ndarray:
        """The 2D plane ``index`` of a ``(Z, Y, X)`` array (a view)."""
        sl: list = [slice(None)] * 3
        sl[self.axis] = index
        return volume[tuple(sl)]

    def put(self, volume: np.ndarray, index: int, plane: np.ndarray, value: int) -> None:
        """Set ``volume`` to ``value`` where ``plane`` (bool, plane grid) is true, in plane ``index``."""
        self.take(volume, index)[plane] = value

    def box3d_to_plane(self, box3d: Box3D) -> tuple[Box, int, int]:
        """A voxel-index 3D box -> (plane box in pixel edges, first slice, last slice inclusive)."""
        box3d.check_inside(self.shape_zyx)
        lo = (box3d.z0, box3d.y0, box3d.x0)  # per array axis (Z, Y, X)
        hi = (box3d.z1, box3d.y1, box3d.x1)
        r, c = self.plane_axes
        box = Box(lo[c], lo[r], hi[c] + 1, hi[r] + 1)
        return box, int(lo[self.axis]), int(hi[self.axis])

    def voxel(self, index: int, x: float, y: float) -> tuple[int, int, int]:
        """The ``(z, y, x)`` voxel of pixel ``(x = column, y = row)`` of plane ``index``."""
        r, c = self.plane_axes
        zyx = [0, 0, 0]
        zyx[self.axis], zyx[r], zyx[c] = int(index), int(y), int(x)
        return zyx[0], zyx[1], zyx[2]

    def plane_box3d(self, x0: int, y0: int, k0: int, x1: int, y1: int, k1: int) -> Box3D:
        """A 3D box in a plane's pixels (inclusive ``x = column``, ``y = row``) and slices ``k0..k1`` along
        the axis -> the same voxels as a :class:`Box3D` of the ``(Z, Y, X)`` array (the converse of
        :meth:`box3d_to_plane`, but inclusive)."""
        (z0, y_0, x_0), (z1, y_1, x_1) = self.voxel(k0, x0, y0), self.voxel(k1, x1, y1)
        return Box3D(x_0, y_0, z0, x_1, y_1, z1)

    def labelled_slices(self, labels: np.ndarray, value: int | None = None) -> np.ndarray:
        """Per slice along the axis: whether ``labels`` (``(Z, Y, X)``) holds ``value`` there (any label: None)."""
        held = labels > 0 if value is None else labels == value
        return np.moveaxis(held, self.axis, 0).reshape(self.num_slices, -1).any(axis=1)


def as_box3d(value: Box3D | Sequence[float]) -> Box3D:
    """A :class:`Box3D` or 6 numbers ``(x0, y0, z0, x1, y1, z1)`` (voxel indices, inclusive)."""
    if isinstance(value, Box3D):
        return value
    values = list(np.asarray(value, dtype=np.float64).ravel())
    if len(values) != 6:
        raise PromptError(f"a 3D box needs 6 numbers x0,y0,z0,x1,y1,z1 (i,j,k inclusive), got {len(values)}")
    if not all(float(v).is_integer() for v in values):
        raise PromptError("3D box values are voxel indices and must be integers, got "
                          f"{', '.join(f'{float(v):g}' for v in values)}")
    return Box3D(*(int(v) for v in values))


def volume_of(image: MedicalImage | np.ndarray) -> MedicalImage:
    """Accept a MedicalImage or a bare ``(Z, Y, X)`` array; refuse 2D, RGB and 4D input."""
    if not isinstance(image, MedicalImage):
        array = np.asarray(image)
        if array.ndim == 4:
            raise InputError(f"a 4D array {array.shape} needs a channel choice: pass one (Z, Y, X) channel")
        if array.ndim != 3:
            raise InputError(f"3D propagation needs a (Z, Y, X) volume, got shape {array.shape}; "
                             "use `medisam segment` for 2D images")
        image = MedicalImage.from_array(array, is_rgb=False)
    if not image.is_volume:
        raise InputError(f"3D propagation needs a volume, got a 2D image of shape {image.array.shape}; "
                         "use `medisam segment` for 2D images")
    if image.is_rgb:
        raise InputError(f"colour volumes {image.array.shape} are not supported: pass one channel")
    if image.array.size == 0 or min(image.array.shape) == 0:
        raise InputError(f"volume is empty (shape {image.array.shape})")
    if image.array.dtype.kind == "f" and not np.isfinite(image.array).all():
        raise InputError("volume contains NaN or infinite values")
    return image


def resample_axis(volume: np.ndarray, axis: int, size: int, mode: str = "linear") -> np.ndarray:
    """Resample one axis of a 3D array to ``size`` samples: ``"linear"`` (images, pixel
    centres aligned as cv2/SAM resizing) or ``"area"`` (averaging, for shrinking masks)."""
    moved = np.moveaxis(np.asarray(volume, dtype=np.float32), axis, -1)
    shape = moved.shape
    with warnings.catch_warnings():  # a read-only view (the last axis of a read-only volume) is only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(np.ascontiguousarray(moved)).reshape(1, -1, shape[-1])
    if mode == "area":
        out = F.adaptive_avg_pool1d(t, size)
    else:
        out = F.interpolate(t, size=size, mode="linear", align_corners=False)
    return np.moveaxis(out.reshape(*shape[:-1], size).numpy(), -1, axis)
