"""Where the frames of a multi-frame DICOM file lie: the geometry a volume read from it gets.

An enhanced file has a position per frame (:func:`~medisam.io.dicom_geometry.frame_headers`). A legacy
multi-frame file (NumberOfFrames > 1, no per-frame functional groups: old NM, RT Dose, converters'
CT/MR, multi-frame secondary captures) has at most the position of frame 1 and a rule for the others:
:func:`legacy_frames` turns that rule into a position per frame where the file gives one
(GridFrameOffsetVector, SpacingBetweenSlices), and otherwise says, in one geometry warning, what is
assumed: GDCM would give such a file 1 mm between slices without a word. A file without
ImagePositionPatient/ImageOrientationPatient is put at the origin on identity axes, as GDCM puts it, and
gets a geometry warning that says so even when its slice spacing is known: the volume is right in itself,
but not where it lies in the patient.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue

from medisam.io.dicom_geometry import SliceHeader, floats
from medisam.io.medical_image import MedicalImage

#: Frame Increment Pointer targets that step through slice positions (any other one that varies, such as
#: NM's DetectorVector, EnergyWindowVector or TimeSlotVector, makes the frames more than one volume's slices).
SLICE_VECTORS = frozenset({"SliceVector", "GridFrameOffsetVector", "SliceLocationVector"})
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_ORIGIN = (0.0, 0.0, 0.0)
#: The slice spacing (mm) GDCM gives a multi-frame file that says none.
GDCM_SPACING = 1.0


@dataclass(frozen=True)
class LegacyFrames:
    """A legacy multi-frame file's frames as slice headers (``frame N``), how they were placed, for
    ``source["frame_geometry"]``, and the geometry warning when part of it is assumed (else None)."""

    headers: list[SliceHeader]
    placed_by: str
    warning: str | None = None


def place_frames(image: MedicalImage, headers: Sequence[SliceHeader]) -> tuple[MedicalImage, list[int]]:
    """Give a multi-frame volume the geometry of its frame headers, frames sorted along the slice
    normal as a series' slices are (so check_positions' slice numbers hold).
    Returns the image and, per array slice, the file's frame index. GDCM's geometry stays when
    frames lack a position or orientation (check_positions has said so)."""
    order = list(range(len(headers)))
    if any(h.position is None or h.orientation is None for h in headers):
        return image, order
    row, col = np.asarray(headers[0].orientation[:3]), np.asarray(headers[0].orientation[3:])  # type: ignore[index]
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    positions = np.array([h.position for h in headers], dtype=float)
    order = [int(i) for i in np.argsort(positions @ normal, kind="stable")]
    first, last = positions[order[0]], positions[order[-1]]
    dz = float(np.linalg.norm(last - first)) / (len(order) - 1)  # one spacing, as the series reader gives
    ps = headers[0].pixel_spacing
    dx, dy = (float(ps[1]), float(ps[0])) if ps else (float(image.spacing[0]), float(image.spacing[1]))
    direction = np.column_stack([row, col, normal])
    source = dict(image.source)
    if order != list(range(len(order))):
        source["frame_order"] = order  # array slice k holds the file's frame order[k] (0-based)
    placed = dataclasses.replace(image, array=np.ascontiguousarray(image.array[order]), spacing=(dx, dy, dz),
                                 origin=tuple(float(v) for v in first),
                                 direction=tuple(float(v) for v in direction.ravel()), source=source)
    return placed, order


def _plane(ds: pydicom.Dataset) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """ImagePositionPatient (of frame 1) and ImageOrientationPatient, from the file or, as NM
    tomography keeps them, its DetectorInformationSequence."""
    position, orientation = floats(ds.get("ImagePositionPatient"), 3), floats(ds.get("ImageOrientationPatient"), 6)
    detectors = ds.get("DetectorInformationSequence")
    if detectors and (position is None or orientation is None):
        position = position or floats(detectors[0].get("ImagePositionPatient"), 3)
        orientation = orientation or floats(detectors[0].get("ImageOrientationPatient"), 6)
    return position, orientation


def _other_dimensions(ds: pydicom.Dataset) -> list[str]:
    """Frame Increment Pointer targets that vary and are no slice position (``DetectorVector (2 values)``)."""
    pointer = ds.get("FrameIncrementPointer")
    tags = list(pointer) if isinstance(pointer, (list, MultiValue)) else [] if pointer is None else [pointer]
    found = []
    for tag in tags:
        keyword = keyword_for_tag(tag)
        values = ds.get(keyword) if keyword and keyword not in SLICE_VECTORS else None
        if isinstance(values, (list, MultiValue)) and len(set(values)) > 1:
            found.append(f"{keyword} ({len(set(values))} values)")
    return found


def _offsets(ds: pydicom.Dataset, frames: int) -> tuple[np.ndarray | None, str]:
    """Each frame's distance from frame 1 along the slice normal, and the attribute that gave it; None when the
    file gives none (the second item then says why, for the warning)."""
    grid = ds.get("GridFrameOffsetVector")
    if grid is not None:
        values = floats(grid, frames)
        if values is not None:  # relative (first 0) or absolute (first = z of frame 1): differences serve both
            return np.asarray(values) - values[0], "GridFrameOffsetVector (3004,000C)"
        count = len(grid) if isinstance(grid, (list, MultiValue)) else 1
        return None, f"whose GridFrameOffsetVector has {count} values"
    between = floats([ds.get("SpacingBetweenSlices")], 1)
    if between is not None and between[0] != 0:  # negative in some NM files: frames step against the normal
        return np.arange(frames) * between[0], "SpacingBetweenSlices (0018,0088)"
    return None, "without per-frame positions, GridFrameOffsetVector or SpacingBetweenSlices"


def _headers(position: Sequence[float], orientation: Sequence[float], pixel_spacing: tuple[float, ...] | None,
             offsets: np.ndarray) -> list[SliceHeader]:
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal) or 1.0
    return [SliceHeader(f"frame {n}", tuple(float(v) for v in np.asarray(position) + d * normal),  # type: ignore
                        tuple(orientation), pixel_spacing)  # type: ignore[arg-type]
            for n, d in enumerate(offsets, start=1)]


def legacy_frames(ds: pydicom.Dataset, frames: int, default_spacing: float = GDCM_SPACING) -> LegacyFrames:
    """Slice headers for the ``frames`` frames of a legacy multi-frame file (``ds``, its header): placed
    from frame 1's position along the slice normal by GridFrameOffsetVector or SpacingBetweenSlices; else
    ``SliceThickness`` (or ``default_spacing``, GDCM's) apart, with a warning that this spacing is assumed.
    Without position or orientation the volume sits at the origin on identity axes (as GDCM puts it), with a
    warning that says so whether or not the spacing is known."""
    position, orientation = _plane(ds)
    pixel_spacing = floats(ds.get("PixelSpacing"), 2)
    if orientation is not None and np.linalg.norm(np.cross(orientation[:3], orientation[3:])) < 1e-6:
        orientation = None  # parallel row and column: no slice normal (check_positions would refuse it)
    offsets, source = _offsets(ds, frames)
    others = _other_dimensions(ds)
    plane = position is not None and orientation is not None
    if offsets is not None and not others:
        headers = _headers(position or _ORIGIN, orientation or _IDENTITY, pixel_spacing, offsets)
        if plane:
            return LegacyFrames(headers, f"frame 1's ImagePositionPatient, then {source} along the slice normal")
        step = float(np.median(np.abs(np.diff(offsets))))  # the step check_positions also takes
        missing, assumed = _unplaced(position, orientation)
        warning = (f"legacy multi-frame file ({frames} frames) with {missing}: its slice spacing ({step:g} mm, "
                   f"{source}) is known, but its position and orientation in the patient are not ({assumed} "
                   "assumed); a mask or dose grid placed in patient space from it, or a distance to another series, "
                   "would be wrong")
        return LegacyFrames(headers, f"{source}; {missing}: {assumed} assumed", warning)
    thickness = floats([ds.get("SliceThickness")], 1)
    spacing, what = (thickness[0], "its SliceThickness") if thickness and thickness[0] > 0 else \
        (default_spacing, "GDCM's default")
    why = f"whose frames step through {', '.join(others)}, not only through slice positions" if others else source
    assumed = f"the slice spacing ({spacing:g} mm, {what})"
    if not plane:
        assumed += f" and its position and orientation ({_unplaced(position, orientation)[0]})"
    warning = (f"legacy multi-frame file ({frames} frames) {why}: {assumed} {'are' if not plane else 'is'} "
               "assumed, not known; distances and volumes across slices may be wrong")
    return LegacyFrames(_headers(position or _ORIGIN, orientation or _IDENTITY, pixel_spacing,
                                 np.arange(frames) * spacing), f"assumed: {spacing:g} mm apart ({what})", warning)


def _unplaced(position: object, orientation: object) -> tuple[str, str]:
    """What a file without a full plane lacks (``no ImagePositionPatient/ImageOrientationPatient``) and what
    stands in for it (``the origin and identity axes``), for the warning."""
    lacks = [name for name, value in (("ImagePositionPatient", position), ("ImageOrientationPatient", orientation))
             if value is None]
    assumed = [what for what, value in (("the origin", position), ("identity axes", orientation)) if value is None]
    return f"no {'/'.join(lacks)}", " and ".join(assumed)
