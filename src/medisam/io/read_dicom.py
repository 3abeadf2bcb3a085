"""DICOM reader: one series from a folder, a single file, or a multi-frame (cine) file.

Slices are sorted by SimpleITK/GDCM (by ImagePositionPatient along the slice normal) and
GDCM applies RescaleSlope/RescaleIntercept, so CT arrives in Hounsfield units. The sorted
file list is kept in ``source["dicom_files"]`` (same order as array axis 0) because the
DICOM-SEG writer needs the source instances in slice order.

Folders are searched recursively; non-image objects (SEG, RTSTRUCT, SR...) are ignored.

An enhanced multi-frame file (per-frame functional groups) gets the checks a series gets
(:func:`~medisam.io.dicom_geometry.check_positions`) and its geometry from the functional
groups, frames in spatial order, not GDCM's fallback of 1 mm spacing and identity axes; one with
several frames per position is a 4D file, refused in one line (:mod:`medisam.io.dicom_dimensions`).
A legacy multi-frame file is placed from GridFrameOffsetVector or SpacingBetweenSlices, or gets a
geometry warning that its slice spacing is assumed, and one that its position and orientation are
assumed where it has no ImagePositionPatient/ImageOrientationPatient (:mod:`medisam.io.dicom_frames`).
Pixel Padding Value voxels are set to the lowest real value (:mod:`medisam.io.dicom_padding`).
RT Dose values are doses: stored value x DoseGridScaling (3004,000E), float32 (:func:`to_dose`), which GDCM
does not apply. Pixels that GDCM decodes wrongly (Explicit VR Big Endian, RLE colour above 8 bits) or cannot decode
are decoded by pydicom on GDCM's geometry (:mod:`medisam.io.dicom_pixels`); the steps after decoding are the same.
In a series only those files are (the others stay GDCM's, read one by one); a series without them is one
SimpleITK series read. A folder GDCM's scan stops on is grouped into series from pydicom's headers.
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
from medisam.io.dicom_dimensions import four_d_problem
from medisam.io.dicom_frames import legacy_frames, place_frames
from medisam.io.dicom_dose import DOSE_TAGS, dose_rescale, to_dose
from medisam.io.dicom_geometry import (check_positions, floats, frame_headers, read_headers, skipped_files,
                                      slice_header)
from medisam.io.dicom_padding import PADDING_TAGS, frame_padding, slice_padding, unpad
from medisam.io.dicom_pixels import (PIXEL_TAGS, PixelDecodeError, gdcm_reason, gdcm_wrong, pydicom_image,
                                     series_pixels, transfer_syntax)
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
#: SOP Class of a DICOMDIR (Media Storage Directory Storage): an index of files, not an image.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


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


#: Header counts the reader turns into ints (frames, image size, samples, bits).
COUNT_TAGS = ("NumberOfFrames", "Rows", "Columns", "SamplesPerPixel", "BitsAllocated")


def _header(path: str | Path) -> pydicom.Dataset:
    """The file's header (no pixel data), with its counts checked: a malformed one is a one-line error."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises InvalidDicomError, OSError, ...
        raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from exc
    for name in COUNT_TAGS:
        try:
            value = ds.get(name)
        except Exception:  # noqa: BLE001 - pydicom converts a value on access and raises many types
            raise InputError(f"{path}: its {name} cannot be read: not a readable DICOM header") from None
        if value in (None, ""):
            continue
        try:
            ok = int(value) >= 0 and float(value) == int(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{path}: its {name} is {str(value)!r}, not a whole number: a corrupt DICOM header")
    return ds


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


def _gdcm_series(dirpath: str) -> list[tuple[str, tuple[str, ...]]]:
    """(SeriesInstanceUID, files sorted by GDCM) for each series GDCM finds in one folder."""
    return [(uid, tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, uid))) for uid in _series_ids(dirpath)]


#: Header attributes :func:`_pydicom_series` groups and sorts a folder's files by.
_SCAN_TAGS = ["SeriesInstanceUID", "Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient",
              "InstanceNumber"]


def _scan_header(path: str) -> pydicom.Dataset | None:
    """The grouping attributes of an image file (Rows, Columns and a SeriesInstanceUID), else None."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's remarks on odd values
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
            ok = bool(ds.get("SeriesInstanceUID")) and int(ds.get("Rows") or 0) > 0 and int(ds.get("Columns") or 0) > 0
    except Exception:  # noqa: BLE001 - pydicom raises many types for files that are no DICOM
        return None
    return ds if ok else None


def _slice_key(path: str, ds: pydicom.Dataset, normal: np.ndarray | None) -> tuple[float, float, str]:
    """GDCM's sort order: position along the slice normal, else InstanceNumber, else the file name."""
    position = slice_header(path, ds).position
    z = float(np.dot(position, normal)) if normal is not None and position is not None else 0.0
    number = floats([ds.get("InstanceNumber")], 1)
    return z, number[0] if number else 0.0, os.path.basename(path)


def _pydicom_series(dirpath: str) -> list[tuple[str, tuple[str, ...]]]:
    """The series of one folder from pydicom's headers, for a folder GDCM's scan stops on (an RT Dose slice with a
    GridFrameOffsetVector: 'An invalid logic behavior occurred'): image files grouped by SeriesInstanceUID and
    sorted as GDCM sorts them (:func:`_slice_key`)."""
    groups: dict[str, list[tuple[str, pydicom.Dataset]]] = {}
    for name in sorted(os.listdir(dirpath)):
        path = os.path.join(dirpath, name)
        ds = _scan_header(path) if os.path.isfile(path) else None
        if ds is not None:
            groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    found = []
    for uid, members in groups.items():
        orientation = floats(members[0][1].get("ImageOrientationPatient"), 6)
        normal = np.cross(orientation[:3], orientation[3:]) if orientation is not None else None
        members.sort(key=lambda m: _slice_key(m[0], m[1], normal))
        found.append((uid, tuple(path for path, _ in members)))
    return found


def _folder_series(dirpath: str) -> list[tuple[str, tuple[str, ...]]]:
    """(SeriesInstanceUID, sorted files) for each series in one folder: GDCM's scan, or pydicom's where GDCM's stops."""
    try:
        return _gdcm_series(dirpath)
    except RuntimeError as exc:
        log.info("%s: GDCM cannot scan this folder (%s): its series are found from pydicom's headers", dirpath,
                 gdcm_reason(exc))
        return _pydicom_series(dirpath)


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
        for uid, files in _folder_series(dirpath):
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


def _series_image(folder: Path, info: SeriesInfo, headers: list[pydicom.Dataset]) -> sitk.Image:
    """The series' pixels: one SimpleITK/GDCM series read unless a file's header (``headers``, one per file) names
    a transfer syntax GDCM gets wrong (:func:`~medisam.io.dicom_pixels.gdcm_wrong`) or that read fails; then file by
    file, pydicom decoding only the files GDCM gets wrong or cannot decode
    (:func:`~medisam.io.dicom_pixels.series_pixels`)."""
    wrong = [gdcm_wrong(h) for h in headers]
    gdcm_says = None
    if not any(wrong):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(list(info.files))
        try:
            with quiet_itk():  # ITK's "non uniform sampling" note: problems says more
                return reader.Execute()
        except RuntimeError as exc:
            gdcm_says = gdcm_reason(exc)
    try:
        img, by_pydicom = series_pixels(info.files, headers, wrong)
    except InputError as exc:
        raise InputError(f"{folder}: {exc}") from None
    if not by_pydicom:  # every file decodes on its own: the series read failed for another reason
        raise InputError(f"{folder}: cannot read DICOM series {info.uid} ({gdcm_says})")
    for line in by_pydicom:
        log.info("%s: %s, decoded by pydicom", folder, line)
    return img


def read_dicom_series(folder: Path, opts: ReadOptions) -> MedicalImage:
    """Read one series from a folder (``opts.series_uid`` picks it when there are several)."""
    info = _select_series(folder, list_dicom_series(folder), opts.series_uid)
    if info.num_files == 1:
        return read_dicom_file(Path(info.files[0]), opts)
    ds = _header(info.files[0])
    check_size(_voxels_from_header(ds, info.num_files), folder, opts.max_voxels)
    headers = read_headers(info.files, [*PADDING_TAGS, *DOSE_TAGS, *PIXEL_TAGS])  # one read per file
    try:
        problems = skipped_files([os.path.dirname(f) for f in info.files], info.files, info.uid)
        problems += check_positions([slice_header(f, h) for f, h in zip(info.files, headers)])
    except InputError as exc:
        raise InputError(f"{folder}: {exc}") from None
    img = _series_image(folder, info, headers)
    modality = opts.modality or info.modality
    image = sitk_to_image(img, modality=modality, source=_source(folder, ds, list(info.files)))
    image = to_dose(image, headers, folder)  # each file's own DoseGridScaling, where it has one
    image = unpad(image, [slice_padding(h, dose_rescale(h)) for h in headers], folder)  # each file's own padding
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


def _not_an_image(path: Path, ds: pydicom.Dataset) -> str | None:
    """Why ``ds`` (a header) is no image to read, in words for the user, or None."""
    sop_class = str(ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return "this is a DICOMDIR index: give the folder that holds it (or the series folder)"
    modality = str(ds.get("Modality", "OT")) or "OT"
    if modality in NON_IMAGE_MODALITIES:
        return f"is a DICOM {modality} object, not an image"
    if not int(ds.get("Rows", 0) or 0) or not int(ds.get("Columns", 0) or 0):
        return "not a readable DICOM image (no Rows/Columns: a cut-short header, or no image at all)"
    return None


def _pixel_data_problem(path: Path) -> str | None:
    """``has no pixel data`` or ``is truncated (N of M bytes)`` when that is why a file cannot be decoded."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's remarks on a short value
            ds = pydicom.dcmread(str(path))
    except Exception:  # noqa: BLE001 - pydicom raises many types for broken files
        return None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return "has no pixel data"
    if "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = (int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
                    * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("SamplesPerPixel", 1) or 1)
                    * int(ds.get("BitsAllocated", 16) or 16) // 8)
        got = len(ds.PixelData)
        if got < expected:
            return f"is truncated ({got} of {expected} bytes of pixel data)"
    return None


def _read_pixels(path: Path, ds: pydicom.Dataset) -> sitk.Image:
    """The file as a SimpleITK image: GDCM's, with pydicom's pixels (:mod:`medisam.io.dicom_pixels`) where
    GDCM's values are known to be wrong (:func:`~medisam.io.dicom_pixels.gdcm_wrong`) or GDCM cannot
    decode a file pydicom can."""
    try:
        with quiet_itk():
            img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        why = _pixel_data_problem(path)
        if why:
            raise InputError(f"{path}: {why}") from None
        gdcm_says = gdcm_reason(exc)
        try:
            img = pydicom_image(path, ds)
        except PixelDecodeError as again:
            ts = transfer_syntax(ds)
            note = _syntax_note(ds) or ("" if ts is None else f" in {ts.name} ({ts})")
            raise InputError(f"{path}: cannot decode DICOM pixel data{note} ({gdcm_says}; pydicom: {again})") from None
        log.info("%s: GDCM cannot decode the pixel data (%s): decoded by pydicom", path, gdcm_says)
        return img
    wrong = gdcm_wrong(ds)
    if wrong:
        try:
            img = pydicom_image(path, ds, like=img)
        except PixelDecodeError as exc:
            raise InputError(f"{path}: cannot decode DICOM pixel data in {wrong}: GDCM's values are not trusted for "
                             f"it and pydicom cannot decode it ({exc})") from None
        log.info("%s: %s, decoded by pydicom (GDCM's values are not trusted for it)", path, wrong)
    return img


def read_dicom_file(path: Path, opts: ReadOptions) -> MedicalImage:
    """Read a single DICOM file: a 2D image, or a multi-frame file (video for cine modalities,
    else a volume whose frames are checked and placed like the slices of a series)."""
    ds = _header(path)
    problem = _not_an_image(path, ds)
    if problem:
        raise InputError(f"{path}: {problem}")
    modality = str(ds.get("Modality", "OT")) or "OT"
    check_size(_voxels_from_header(ds, 1), path, opts.max_voxels)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    volume = frames > 1 and not is_cine(ds, opts.modality or modality)
    headers = frame_headers(ds) if volume else None
    problems: list[str] = []
    placed_by = None
    if headers is not None:
        if len(headers) != frames:
            raise InputError(f"{path}: has {frames} frames but {len(headers)} per-frame functional groups; "
                             "the frames cannot be placed")
        four_d = four_d_problem(ds, headers)
        if four_d:
            raise InputError(f"{path}: {four_d}")
    elif volume:  # legacy multi-frame: frame 1's position and a rule for the others, or an assumed spacing
        legacy = legacy_frames(ds, frames)
        headers, placed_by, problems = legacy.headers, legacy.placed_by, [legacy.warning] if legacy.warning else []
        log.info("%s: legacy multi-frame file, frames placed by %s", path, placed_by)
    if headers is not None:
        try:
            problems += check_positions(headers)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    img = _read_pixels(path, ds)
    source = _source(path, ds, [str(path)])
    if placed_by:
        source["frame_geometry"] = placed_by  # how a legacy multi-frame file's frames were placed
    modality = opts.modality or modality
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
            order = list(range(frames))
            if headers is not None:
                image, order = place_frames(image, headers)
            if not image.is_rgb:
                image = to_dose(image, [ds], path)
                dose = dose_rescale(ds)
                image = unpad(image, [slice_padding(ds, dose) if dose else frame_padding(ds, k) for k in order], path)
            if problems:
                image = dataclasses.replace(image, geometry_warnings=tuple(problems))
                for line in problems:
                    log.info("%s: %s", path, line)  # the CLI shows them (info) or refuses (segment, propagate)
        log.info("read multi-frame DICOM %s: %d frames, video=%s", path, frames, image.is_video)
        return image
    # single frame: a 2D image; the full 3D placement stays in source for reference
    arr = sitk.GetArrayFromImage(img)[0]
    if arr.size == 0:
        raise InputError(f"{path}: not a readable DICOM image (no pixels decoded)")
    d2 = np.asarray(img.GetDirection()).reshape(3, 3)[:2, :2]
    if not np.isclose(abs(np.linalg.det(d2)), 1.0, atol=1e-3):  # oblique/sagittal slice: no 2D frame
        d2 = np.eye(2)
    source["geometry3d"] = {"spacing": img.GetSpacing(), "origin": img.GetOrigin(), "direction": img.GetDirection()}
    image = MedicalImage(
        arr, tuple(float(v) for v in img.GetSpacing()[:2]), tuple(float(v) for v in img.GetOrigin()[:2]),
        tuple(float(v) for v in d2.ravel()), modality,
        is_rgb=img.GetNumberOfComponentsPerPixel() > 1, source=source,
    )
    return image if image.is_rgb else unpad(to_dose(image, [ds], path), [slice_padding(ds, dose_rescale(ds))], path)


register_reader((".dcm", ".dicom", ".ima"), read_dicom_file)
