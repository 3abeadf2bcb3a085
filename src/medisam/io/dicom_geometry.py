"""Checks of a DICOM series' slice geometry before it becomes one volume.

SimpleITK/GDCM reads a series whatever its slices look like: a corrupt or truncated file
is left out silently, and the volume gets one spacing (first to last position over
``n - 1``), so a missing slice shifts every slice after it. This module says what went
wrong, in one line per problem:

* :func:`skipped_files`: files in the series folder that the reader left out, and why;
* :func:`check_positions`: gaps, uneven spacing and missing ImagePositionPatient become
  warnings (the volume is usable, but masks written against it are misplaced); slices at
  the same position or with different orientations are an :class:`InputError`.
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
_TAGS = ["SeriesInstanceUID", "SOPInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "Modality"]
#: Relative step difference tolerated before spacing counts as uneven, and step ratio that makes a gap.
UNEVEN_TOLERANCE = 0.01
GAP_RATIO = 1.5


@dataclass(frozen=True)
class SliceHeader:
    """What the geometry check needs from one slice file."""

    path: str
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def read_slice_headers(files: Sequence[str]) -> list[SliceHeader]:
    """Position and orientation of each file (None where absent or blank)."""
    headers = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_TAGS)
        headers.append(SliceHeader(str(f), _floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
                                   _floats(ds.get("ImageOrientationPatient"), 6)))
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

    Raises InputError when slices differ in orientation or share a position.
    """
    if len(headers) < 2:
        return []
    named = [Path(h.path).name for h in headers]
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
    z = np.array([float(np.dot(h.position, normal)) for h in headers])  # type: ignore[arg-type]
    order = np.argsort(z, kind="stable")
    z, names = z[order], [named[i] for i in order]
    steps = np.diff(z)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        k = int(dup[0])
        raise InputError(f"{names[k]} and {names[k + 1]} are at the same slice position ({z[k]:.4g} mm along the "
                         f"slice normal; {dup.size} such pair(s)): duplicate slices or two acquisitions in one series; "
                         "remove the duplicates or split the series")
    step = float(np.median(steps))
    itk_step = float(z[-1] - z[0]) / (len(z) - 1)  # the one spacing the volume gets
    misplaced = float(np.max(np.abs(z - (z[0] + itk_step * np.arange(len(z))))))
    effect = (f"the volume gets one spacing of {itk_step:.4g} mm, which misplaces slices by up to "
              f"{misplaced:.3g} mm")
    gaps = np.flatnonzero(steps > GAP_RATIO * step)
    if gaps.size:
        k = int(gaps[0])
        lost = int(round(steps[k] / step)) - 1
        return [f"gap in slice positions: {steps[k]:.4g} mm between {names[k]} and {names[k + 1]} (slices {k} and "
                f"{k + 1}) where the series steps {step:.4g} mm, so about {lost} slice(s) are missing"
                f"{f' ({gaps.size} gaps)' if gaps.size > 1 else ''}; {effect}"]
    if np.max(np.abs(steps - step)) > UNEVEN_TOLERANCE * step:
        k = int(np.argmax(np.abs(steps - step)))
        return [f"uneven slice spacing: {steps[k]:.4g} mm between {names[k]} and {names[k + 1]} where the series "
                f"steps {step:.4g} mm; {effect}"]
    return []
