"""Checks of a DICOM series' slice geometry before it becomes one volume.

SimpleITK/GDCM reads a series whatever its slices look like: a corrupt or truncated file
is left out silently, and the volume gets one spacing (first to last position over
``n - 1``), so a missing slice shifts every slice after it. This module says what went
wrong, in one line per problem:

* :func:`skipped_files`: files in the series folder that the reader left out, and why;
* :func:`check_positions`: gaps, uneven spacing, missing ImagePositionPatient and slices
  that step in-plane (gantry tilt, a sheared stack) become warnings (the volume is usable,
  but masks written against it are misplaced); slices at the same position or with
  different orientations or pixel sizes are an :class:`InputError`.

The same checks serve one-file-per-slice series and the frames of an enhanced multi-frame
file (:func:`frame_headers`), so both follow one rule.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom

from medisam.errors import InputError

#: File name endings that make an unreadable file worth reporting (DICOM files often have none).
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ""})
_TAGS = ["SeriesInstanceUID", "SOPInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
         "Modality"]
#: Relative step difference tolerated before spacing counts as uneven, and step ratio that makes a gap.
UNEVEN_TOLERANCE = 0.01
GAP_RATIO = 1.5
#: In-plane offset of a slice from the slice normal through the first one, in pixels, tolerated before
#: the series counts as sheared: position round-off stays far below it, a 1 degree tilt passes it.
SHEAR_TOLERANCE = 0.1
#: Relative PixelSpacing difference between slices tolerated (decimal round-off in the header).
PIXEL_SPACING_TOLERANCE = 1e-4


@dataclass(frozen=True)
class SliceHeader:
    """What the geometry check needs from one slice file (or one frame of a multi-frame file)."""

    path: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None = None


def floats(value: object, n: int) -> tuple[float, ...] | None:
    """A DICOM multi-value attribute as ``n`` finite floats; None when absent, blank, of another length or not
    finite."""
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def read_headers(files: Sequence[str], extra_tags: Sequence[str] = ()) -> list[pydicom.Dataset]:
    """The header attributes the geometry check needs, and ``extra_tags``, of each file: one read per
    file, so that other checks of the series (Pixel Padding) need not read the files again."""
    return [pydicom.dcmread(f, stop_before_pixels=True, specific_tags=[*_TAGS, *extra_tags]) for f in files]


def slice_header(path: str | Path, ds: pydicom.Dataset) -> SliceHeader:
    """Position, orientation and pixel size of one slice's header (None where absent or blank)."""
    return SliceHeader(str(path), floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
                       floats(ds.get("ImageOrientationPatient"), 6),
                       floats(ds.get("PixelSpacing"), 2))  # type: ignore[arg-type]


def read_slice_headers(files: Sequence[str]) -> list[SliceHeader]:
    """Position and orientation of each file (None where absent or blank)."""
    return [slice_header(f, ds) for f, ds in zip(files, read_headers(files))]


def functional_value(frame: object, shared: object, sequence: str, keyword: str) -> object:
    """``keyword`` from the frame's functional group ``sequence``, else from the shared one (an enhanced
    multi-frame file's per-frame value; the geometry here, the rescale in :mod:`medisam.io.dicom_padding`)."""
    for group in (frame, shared):
        items = getattr(group, sequence, None) if group is not None else None
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


def frame_headers(ds: pydicom.Dataset) -> list[SliceHeader] | None:
    """One :class:`SliceHeader` per frame of an enhanced multi-frame file (named ``frame N``, 1-based),
    from its per-frame and shared functional groups; None when the file has no per-frame groups
    (a legacy multi-frame file: :func:`medisam.io.dicom_frames.legacy_frames`)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return None
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    headers = []
    for n, frame in enumerate(per_frame, start=1):
        headers.append(SliceHeader(
            f"frame {n}",
            floats(functional_value(frame, shared, "PlanePositionSequence", "ImagePositionPatient"), 3),  # type: ignore
            floats(functional_value(frame, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
            floats(functional_value(frame, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)))  # type: ignore
    return headers


def _looks_like_dicom(path: Path) -> bool:
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    from medisam.io.read_dicom import is_dicom_file  # read_dicom imports this module

    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)


def _why_skipped(path: Path, series_uid: str) -> str | None:
    """Why the reader left out ``path`` (None when it belongs to another series or is no image)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's remarks on damaged headers
            uid = str(pydicom.dcmread(str(path), stop_before_pixels=True).get("SeriesInstanceUID", "") or "")
            if uid and uid != series_uid:
                return None
            ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken files
        return f"not a readable DICOM file ({type(exc).__name__})"
    if not uid:
        return "damaged header (no SeriesInstanceUID)"
    if "PixelData" not in ds:
        return "no pixel data"
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        expected = rows * cols * int(ds.get("BitsAllocated", 16) or 16) // 8 * int(ds.get("SamplesPerPixel", 1) or 1)
        got = len(ds.PixelData)
        if got < expected:
            return f"pixel data truncated ({got} of {expected} bytes)"
    return "pixel data could not be read"


def skipped_files(folders: Sequence[str | Path], used: Sequence[str], series_uid: str) -> list[str]:
    """One line per file of ``folders`` (not recursive) that looks like DICOM, is not in
    ``used`` (any series the reader found) and belongs to ``series_uid`` or cannot be read."""
    taken = {os.path.realpath(f) for f in used}
    lines = []
    for folder in dict.fromkeys(str(f) for f in folders):
        for name in sorted(os.listdir(folder)):
            path = Path(folder) / name
            if not path.is_file() or os.path.realpath(path) in taken or not _looks_like_dicom(path):
                continue
            reason = _why_skipped(path, series_uid)
            if reason is not None:
                lines.append(f"skipped {name}: {reason}")
    return lines


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    n = np.cross(row, col)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise InputError(f"ImageOrientationPatient {orientation} has parallel row and column directions")
    return n / norm


def check_positions(headers: Sequence[SliceHeader]) -> list[str]:
    """Warnings about the slice positions of one series (files in reading order).

    Raises InputError when slices differ in orientation or pixel size, or share a position.
    """
    if len(headers) < 2:
        return []
    named = [Path(h.path).name for h in headers]
    _check_pixel_spacing(headers)
    oriented = [h for h in headers if h.orientation is not None]
    if not oriented:
        return ["no slice has an ImageOrientationPatient (0020,0037): orientation and slice order are guesses"]
    first = oriented[0]
    for h in headers:
        if h.orientation is None or not np.allclose(h.orientation, first.orientation, atol=1e-4):
            raise InputError(f"{Path(h.path).name} has ImageOrientationPatient {h.orientation}, "
                             f"{Path(first.path).name} has {first.orientation}: the series mixes slice "
                             "orientations (a localiser or a second stack?); split it or pick the files of one stack")
    missing = [n for n, h in zip(named, headers) if h.position is None]
    if missing:
        return [f"{len(missing)} of {len(headers)} slices have no ImagePositionPatient (0020,0032) "
                f"(e.g. {missing[0]}): slice order and spacing are guesses"]
    normal = _normal(first.orientation)  # type: ignore[arg-type]
    positions = np.array([h.position for h in headers], dtype=float)
    z = positions @ normal
    order = np.argsort(z, kind="stable")
    z, names, positions = z[order], [named[i] for i in order], positions[order]
    steps = np.diff(z)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        k = int(dup[0])
        raise InputError(f"{names[k]} and {names[k + 1]} are at the same slice position ({z[k]:.4g} mm along the "
                         f"slice normal; {dup.size} such pair(s)): duplicate slices or two acquisitions in one series; "
                         "remove the duplicates or split the series")
    problems = _shear(positions, normal, names, first.pixel_spacing)
    step = float(np.median(steps))
    itk_step = float(z[-1] - z[0]) / (len(z) - 1)  # the one spacing the volume gets
    misplaced = float(np.max(np.abs(z - (z[0] + itk_step * np.arange(len(z))))))
    effect = (f"the volume gets one spacing of {itk_step:.4g} mm, which misplaces slices by up to "
              f"{misplaced:.3g} mm")
    gaps = np.flatnonzero(steps > GAP_RATIO * step)
    if gaps.size:
        k = int(gaps[0])
        lost = int(round(steps[k] / step)) - 1
        return problems + [
            f"gap in slice positions: {steps[k]:.4g} mm between {names[k]} and {names[k + 1]} (slices {k} and "
            f"{k + 1}) where the series steps {step:.4g} mm, so about {lost} slice(s) are missing"
            f"{f' ({gaps.size} gaps)' if gaps.size > 1 else ''}; {effect}"]
    if np.max(np.abs(steps - step)) > UNEVEN_TOLERANCE * step:
        k = int(np.argmax(np.abs(steps - step)))
        return problems + [f"uneven slice spacing: {steps[k]:.4g} mm between {names[k]} and {names[k + 1]} where "
                           f"the series steps {step:.4g} mm; {effect}"]
    return problems


def _check_pixel_spacing(headers: Sequence[SliceHeader]) -> None:
    """Refuse a series whose slices have different PixelSpacing: one grid cannot hold them
    (as GDCM refuses different Rows/Columns)."""
    spaced = [h for h in headers if h.pixel_spacing is not None]
    if not spaced:
        return
    first = spaced[0]
    for h in headers:
        if h.pixel_spacing is None or not np.allclose(h.pixel_spacing, first.pixel_spacing,  # type: ignore[arg-type]
                                                      rtol=PIXEL_SPACING_TOLERANCE, atol=0):
            raise InputError(f"{Path(h.path).name} has PixelSpacing {h.pixel_spacing}, {Path(first.path).name} "
                             f"has {first.pixel_spacing}: the series mixes pixel sizes, so its slices do not share one "
                             "grid; split it or pick the files of one stack")


def _shear(positions: np.ndarray, normal: np.ndarray, names: list[str],
           pixel_spacing: tuple[float, float] | None) -> list[str]:
    """A warning when the slices (sorted along ``normal``) step in-plane, as in a gantry-tilted CT:
    the volume is read on an orthogonal grid (the slice normal as third axis), so every slice
    but the first is placed off by its in-plane offset."""
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    pixel = min(pixel_spacing) if pixel_spacing else 1.0
    if float(drift.max()) <= SHEAR_TOLERANCE * pixel:
        return []
    k = int(np.argmax(drift))
    along = float(offsets[-1] @ normal)
    angle = float(np.degrees(np.arctan2(float(drift[-1]), along))) if along > 0 else 90.0
    # the grid the reader builds: the slice normal as third axis, first-to-last distance over n - 1 as spacing
    itk_step = float(np.linalg.norm(offsets[-1])) / (len(offsets) - 1)
    grid = np.outer(np.arange(len(offsets)) * itk_step, normal)
    misplaced = float(np.max(np.linalg.norm(offsets - grid, axis=1)))
    return [f"gantry tilt or sheared series: slice positions step {float(drift[-1]) / (len(offsets) - 1):.3g} mm "
            f"in-plane per slice ({angle:.3g} degrees off the slice normal; {names[k]} is {drift[k]:.3g} mm off "
            f"the normal through {names[0]}); the volume is read on an orthogonal grid, so a NIfTI/NRRD mask "
            f"written against it is misplaced by up to {misplaced:.3g} mm; resample the series onto an orthogonal "
            "grid first (e.g. 3D Slicer: DICOM module, acquisition geometry regularization)"]
