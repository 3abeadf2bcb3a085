"""DICOM reader: one series from a folder, a single file, or a multi-frame (cine) file.

Slices are sorted by SimpleITK/GDCM (by ImagePositionPatient along the slice normal) and
GDCM applies RescaleSlope/RescaleIntercept, so CT arrives in Hounsfield units. The sorted
file list is kept in ``source["dicom_files"]`` (same order as array axis 0) because the
DICOM-SEG writer needs the source instances in slice order.

Folders are searched recursively; non-image objects (SEG, RTSTRUCT, SR...) are ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk

from medisam.errors import InputError
from medisam.io.dicom_geometry import check_positions, read_slice_headers, skipped_files
from medisam.io.itk_quiet import quiet_itk
from medisam.io.limits import check_size
from medisam.io.medical_image import MedicalImage
from medisam.io.registry import ReadOptions, register_reader
from medisam.io.sitk_convert import sitk_to_image

log = logging.getLogger(__name__)

#: Modalities of DICOM objects that hold no image to segment.
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "FID"})
#: Modalities whose multi-frame files are time sequences (cine loops), not volumes.
VIDEO_MODALITIES = frozenset({"US", "XA", "RF", "ES", "IVUS", "GM", "XC", "OP"})


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM image series found in a folder; ``files`` are sorted by slice position."""

    uid: str
    description: str
    modality: str
    files: tuple[str, ...]

    @property
    def num_files(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        """``uid ("description", MOD, N slices)`` for error messages and listings."""
        return f'{self.uid} ("{self.description}", {self.modality}, {self.num_files} slices)'


def _header(path: str | Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises InvalidDicomError, OSError, ...
        raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from exc


def is_cine(ds: pydicom.Dataset, modality: str | None = None) -> bool:
    """A multi-frame header read as a video: a cine modality (US, XA, ...) or a frame time/rate."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    modality = modality or str(ds.get("Modality", "OT"))
    return frames > 1 and (modality in VIDEO_MODALITIES or bool(ds.get("FrameTime") or ds.get("CineRate")))


def is_dicom_cine(path: str | Path) -> bool:
    """True for a DICOM file :func:`read_dicom_file` reads as a video (False when unreadable:
    the reader then reports why)."""
    try:
        return is_cine(_header(path))
    except InputError:
        return False


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _series_ids(dirpath: str) -> tuple[str, ...]:
    """GDCM series UIDs in one folder, without ITK's stderr warning for folders with none."""
    with quiet_itk():
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(dirpath) or ())


def list_dicom_series(folder: str | Path) -> list[SeriesInfo]:
    """List the DICOM image series in ``folder`` and its sub-folders, files sorted by GDCM.

    Returns one :class:`SeriesInfo` per SeriesInstanceUID (SEG/RTSTRUCT/SR objects are skipped).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    found: dict[str, SeriesInfo] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        if not filenames:
            continue
        for uid in _series_ids(dirpath):
            files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, uid))
            if not files:
                continue
            ds = _header(files[0])
            modality = str(ds.get("Modality", "OT")) or "OT"
            if modality in NON_IMAGE_MODALITIES:
                log.debug("skipping non-image DICOM series %s (%s)", uid, modality)
                continue
            if uid in found:  # same series split over folders: merge, GDCM sorts again on read
                files = found[uid].files + files
            found[uid] = SeriesInfo(uid, str(ds.get("SeriesDescription", "")), modality, files)
    return list(found.values())


def _select_series(folder: Path, series: list[SeriesInfo], uid: str | None) -> SeriesInfo:
    if not series:
        raise InputError(f"{folder}: no DICOM image series found in this folder")
    listing = "; ".join(s.summary() for s in series)
    if uid is not None:
        for s in series:
            if s.uid == uid:
                return s
        raise InputError(f"{folder}: series {uid} not found; available: {listing}")
    if len(series) > 1:
        raise InputError(f"{folder}: {len(series)} DICOM series found, pick one with series_uid=...: {listing}")
    return series[0]


def _voxels_from_header(ds: pydicom.Dataset, n_files: int) -> tuple[int, ...]:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    return (n_files * frames, rows, cols) + ((spp,) if spp > 1 else ())


def _source(path: Path, ds: pydicom.Dataset, files: list[str]) -> dict[str, Any]:
    return {
        "format": "dicom",
        "dicom_files": files,
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
    }


def _syntax_note(ds: pydicom.Dataset) -> str:
    """`` in <transfer syntax> (<uid>)`` for a compressed file, else ``""``."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None or not ts.is_compressed:
        return ""
    return f" in {ts.name} ({ts}); convert it to uncompressed DICOM (gdcmconv --raw, dcmdjpeg) or to NIfTI"


def _decode_failure(info: SeriesInfo, exc: RuntimeError) -> str:
    """Name the first slice file that GDCM cannot decode, and its transfer syntax."""
    for f in info.files:
        try:
            sitk.ReadImage(f)
        except RuntimeError:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            return f"cannot decode the pixel data of {Path(f).name}{_syntax_note(ds) or ' (corrupt data)'}"
    return f"cannot read DICOM series {info.uid} ({str(exc).strip().splitlines()[-1]})"


def read_dicom_series(folder: Path, opts: ReadOptions) -> MedicalImage:
    """Read one series from a folder (``opts.series_uid`` picks it when there are several)."""
    info = _select_series(folder, list_dicom_series(folder), opts.series_uid)
    if info.num_files == 1:
        return read_dicom_file(Path(info.files[0]), opts)
    ds = _header(info.files[0])
    check_size(_voxels_from_header(ds, info.num_files), folder, opts.max_voxels)
    try:
        problems = skipped_files([os.path.dirname(f) for f in info.files], info.files, info.uid)
        problems += check_positions(read_slice_headers(info.files))
    except InputError as exc:
        raise InputError(f"{folder}: {exc}") from None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(info.files))
    try:
        with quiet_itk():  # ITK's "non uniform sampling" note: problems says more
            img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{folder}: {_decode_failure(info, exc)}") from None
    modality = opts.modality or info.modality
    image = sitk_to_image(img, modality=modality, source=_source(folder, ds, list(info.files)))
    if problems:
        image = dataclasses.replace(image, geometry_warnings=tuple(problems))
        for line in problems:
            log.info("%s: %s", folder, line)  # the CLI shows them (info) or refuses (segment, propagate)
    log.info("read DICOM series %s: %d slices, shape %s", info.uid, info.num_files, image.array.shape)
    return image


def _frame_rate(ds: pydicom.Dataset) -> float | None:
    if ds.get("CineRate"):
        return float(ds.CineRate)
    if ds.get("RecommendedDisplayFrameRate"):
        return float(ds.RecommendedDisplayFrameRate)
    if ds.get("FrameTime"):
        return 1000.0 / float(ds.FrameTime)
    return None


def read_dicom_file(path: Path, opts: ReadOptions) -> MedicalImage:
    """Read a single DICOM file: a 2D image, or a multi-frame file (video for cine modalities)."""
    ds = _header(path)
    modality = str(ds.get("Modality", "OT")) or "OT"
    if modality in NON_IMAGE_MODALITIES:
        raise InputError(f"{path}: is a DICOM {modality} object, not an image")
    check_size(_voxels_from_header(ds, 1), path, opts.max_voxels)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot decode DICOM pixel data{_syntax_note(ds)} "
                         f"({str(exc).strip().splitlines()[-1]})") from exc
    source = _source(path, ds, [str(path)])
    modality = opts.modality or modality
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        if is_cine(ds, modality):
            arr = sitk.GetArrayFromImage(img)
            sp = img.GetSpacing()
            source["fps"] = _frame_rate(ds)
            image = MedicalImage(
                arr, (float(sp[0]), float(sp[1]), 1.0), (0.0, 0.0, 0.0),
                tuple(float(v) for v in np.eye(3).ravel()), modality,
                is_rgb=img.GetNumberOfComponentsPerPixel() > 1, is_video=True, source=source,
            )
        else:
            image = sitk_to_image(img, modality=modality, source=source)
        log.info("read multi-frame DICOM %s: %d frames, video=%s", path, frames, image.is_video)
        return image
    # single frame: a 2D image; the full 3D placement stays in source for reference
    arr = sitk.GetArrayFromImage(img)[0]
    d2 = np.asarray(img.GetDirection()).reshape(3, 3)[:2, :2]
    if not np.isclose(abs(np.linalg.det(d2)), 1.0, atol=1e-3):  # oblique/sagittal slice: no 2D frame
        d2 = np.eye(2)
    source["geometry3d"] = {"spacing": img.GetSpacing(), "origin": img.GetOrigin(), "direction": img.GetDirection()}
    return MedicalImage(
        arr, tuple(float(v) for v in img.GetSpacing()[:2]), tuple(float(v) for v in img.GetOrigin()[:2]),
        tuple(float(v) for v in d2.ravel()), modality,
        is_rgb=img.GetNumberOfComponentsPerPixel() > 1, source=source,
    )


register_reader((".dcm", ".dicom", ".ima"), read_dicom_file)
