"""DICOM pixel data decoded by pydicom where GDCM (inside SimpleITK) is wrong or fails.

GDCM stays medisam's decoder; pydicom takes over where GDCM was measured wrong or failing on pydicom's
test files (benchmarks/dicom_decode_check.py):

* Explicit VR Big Endian (1.2.840.10008.1.2.2, retired but still in archives): GDCM decodes 32-bit
  pixels wrongly and without an error (pydicom's rtdose_expb.dcm reads 19 to 4800 times too high), so
  every big-endian file is decoded by pydicom (:func:`gdcm_wrong`), except PALETTE COLOR, which GDCM turns
  into RGB and pydicom would leave as indices (GDCM reads 8- and 16-bit big-endian files right);
* RLE Lossless colour with 16 or 32 bits a sample: GDCM mixes up the byte segments (a red pixel comes out
  as (0, 65280, 255)), silently too; RLE grey images and 8-bit colour are right;
* a file whose pixel data GDCM cannot decode at all (a single-frame RT Dose with a GridFrameOffsetVector:
  ``An invalid logic behavior occurred``): the caller tries :func:`pydicom_image` before giving up.

The pixels get the modality rescale GDCM applies (RescaleSlope/Intercept, in GDCM's output type), so
what follows (DoseGridScaling, Pixel Padding, frame placement) is the same for both decoders, and GDCM's
geometry where GDCM can read the header (:func:`header_geometry` otherwise).

A series (one file per slice) follows the same rule file by file (:func:`series_pixels`): the caller keeps
SimpleITK's one series read while no header names a syntax :func:`gdcm_wrong` refuses and that read works;
otherwise GDCM decodes each file on its own except those, which pydicom decodes (a file GDCM gets wrong is never
decoded by GDCM), in the series reader's pixel type and geometry (:func:`series_geometry`).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import ExplicitVRBigEndian, RLELossless

from medisam.errors import InputError
from medisam.io.dicom_geometry import floats, functional_value
from medisam.io.itk_quiet import quiet_itk

log = logging.getLogger(__name__)

#: Header attributes :func:`gdcm_wrong` reads (besides the file meta's Transfer Syntax UID).
PIXEL_TAGS = ["PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated"]
#: Integer types GDCM picks from for an integral rescale, smallest first.
_INTEGER_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)


class PixelDecodeError(Exception):
    """pydicom cannot decode the pixel data either (message: pydicom's last line)."""


#: run-specific noise in the decoders' messages: ITK's "ITK ERROR: GDCMImageIO(0x55...): " prefix, Python's
#: "<_io.BytesIO object at 0x7f...>"
_ITK_PREFIX = re.compile(r"^(ITK ERROR|ITK WARNING): \w+\(0x[0-9a-fA-F]+\): ")
_ADDRESS = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _stable(said: str) -> str:
    """A decoder's message without the addresses that change from run to run."""
    return _ADDRESS.sub(r"<\1>", _ITK_PREFIX.sub("", said))


def gdcm_reason(exc: RuntimeError) -> str:
    """GDCM's error (through SimpleITK) as one stable line: its last line, without ITK's object address."""
    lines = str(exc).strip().splitlines()
    return _stable(lines[-1].strip() if lines else type(exc).__name__)


def _pydicom_reason(exc: BaseException) -> str:
    """pydicom's error as one stable line: its lines joined (its plugins' reasons follow a colon)."""
    return _stable(" ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__)


def transfer_syntax(ds: pydicom.Dataset) -> pydicom.uid.UID | None:
    """The file's Transfer Syntax UID, or None without a file meta header."""
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def gdcm_wrong(ds: pydicom.Dataset) -> str | None:
    """Why GDCM's pixel values for ``ds`` (a header) are not to be trusted (the transfer syntax's name,
    ``Explicit VR Big Endian (1.2.840.10008.1.2.2)``), or None when GDCM decodes them right."""
    ts = transfer_syntax(ds)
    if ts == ExplicitVRBigEndian:
        palette = str(ds.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR"
        return None if palette else f"{ts.name} ({ts})"
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if ts == RLELossless and int(ds.get("SamplesPerPixel", 1) or 1) > 1 and bits > 8:
        return f"{ts.name} ({ts}), {bits}-bit colour"
    return None


def gdcm_rescale(ds: pydicom.Dataset) -> tuple[float, float]:
    """(slope, intercept) as GDCM applies them: the file's, else frame 1's functional groups; (1, 0) if none."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        per_frame, shared = ds.get("PerFrameFunctionalGroupsSequence"), ds.get("SharedFunctionalGroupsSequence")
        groups = (per_frame[0] if per_frame else None, shared[0] if shared else None)
        slope = functional_value(*groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = functional_value(*groups, "PixelValueTransformationSequence", "RescaleIntercept")
    s, i = floats([slope], 1), floats([intercept], 1)
    return (s[0] if s and s[0] != 0 else 1.0), (i[0] if i else 0.0)


def _output_type(stored: np.dtype, slope: float, intercept: float) -> np.dtype:
    """GDCM's output type: the stored type without a rescale; the smallest integer type that holds the
    rescaled range of the stored type for an integral one; float64 otherwise."""
    if slope == 1.0 and intercept == 0.0:
        return stored
    if not (float(slope).is_integer() and float(intercept).is_integer()) or stored.kind not in "iu":
        return np.dtype(np.float64)
    info = np.iinfo(stored)
    lo, hi = sorted((info.min * slope + intercept, info.max * slope + intercept))
    for t in _INTEGER_TYPES:
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.float64)


def decode(path: str | Path, dtype: np.dtype | None = None) -> np.ndarray:
    """The pixels of one file decoded by pydicom, as GDCM gives them: ``(frames, rows, cols[, 3])``,
    native byte order, RescaleSlope/Intercept applied, in ``dtype`` (default: GDCM's rule).

    Raises :class:`PixelDecodeError` when pydicom cannot decode them (no handler for a compressed syntax,
    corrupt or short data)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's remarks on odd values and padding
            ds = pydicom.dcmread(str(path))
            arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom's handlers raise many types
        raise PixelDecodeError(_pydicom_reason(exc)[:200]) from exc  # one line: the plugins' reasons follow a colon
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if arr.ndim == (2 if spp == 1 else 3):  # one frame: GDCM's image has a slice axis of 1
        arr = arr[None]
    arr = arr.astype(arr.dtype.newbyteorder("="))
    slope, intercept = gdcm_rescale(ds)
    out = np.dtype(dtype) if dtype is not None else _output_type(arr.dtype, slope, intercept)
    if spp == 1 and (slope != 1.0 or intercept != 0.0):
        arr = arr.astype(np.float64) * slope + intercept
    return arr.astype(out)


def header_geometry(ds: pydicom.Dataset) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, direction) in ITK order from the header, for a file GDCM cannot read at all:
    PixelSpacing (else 1 mm), SpacingBetweenSlices or SliceThickness (else 1 mm), ImagePositionPatient
    (else the origin), ImageOrientationPatient and its normal (else identity axes)."""
    ps = floats(ds.get("PixelSpacing"), 2) or (1.0, 1.0)
    dz = floats([ds.get("SpacingBetweenSlices")], 1) or floats([ds.get("SliceThickness")], 1)
    origin = floats(ds.get("ImagePositionPatient"), 3) or (0.0, 0.0, 0.0)
    iop = floats(ds.get("ImageOrientationPatient"), 6)
    direction = np.eye(3)
    if iop is not None:
        row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
        normal = np.cross(row, col)
        if np.linalg.norm(normal) > 1e-6:
            direction = np.column_stack([row, col, normal / np.linalg.norm(normal)])
    spacing = (float(ps[1]), float(ps[0]), abs(dz[0]) if dz and dz[0] else 1.0)
    return spacing, tuple(float(v) for v in origin), tuple(float(v) for v in direction.ravel())


def pydicom_image(path: str | Path, ds: pydicom.Dataset, like: sitk.Image | None = None) -> sitk.Image:
    """The file's pixels decoded by pydicom (:func:`decode`) as a SimpleITK image with the geometry and
    pixel type of ``like`` (GDCM's image of the same file), else of the header (:func:`header_geometry`)."""
    dtype = sitk.GetArrayViewFromImage(like).dtype if like is not None else None
    arr = decode(path, dtype)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=arr.ndim == 4)
    if like is not None:
        if img.GetSize() != like.GetSize():
            raise PixelDecodeError(f"pydicom decodes {img.GetSize()} pixels, GDCM {like.GetSize()}")
        img.CopyInformation(like)
    else:
        spacing, origin, direction = header_geometry(ds)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        img.SetDirection(direction)
    return img


def _gdcm_information(path: str | Path) -> sitk.ImageFileReader | None:
    """GDCM's reading of the file's header (size, pixel type, geometry; no pixels), or None when it fails."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def series_geometry(files: Sequence[str], headers: Sequence[pydicom.Dataset],
                    first: sitk.ImageFileReader | None) -> tuple[tuple[float, ...], ...]:
    """(spacing, origin, direction) as SimpleITK's series reader sets them (ITK's ImageSeriesReader, axes kept
    orthogonal): the first file's in-plane spacing, origin and axes as GDCM reads its header (``first``; else
    from its own header, :func:`header_geometry`), and first-to-last origin distance over ``n - 1`` between slices
    (1 mm when they coincide)."""
    spacing, origin, direction = ((first.GetSpacing(), first.GetOrigin(), first.GetDirection()) if first is not None
                                  else header_geometry(headers[0]))
    last = _gdcm_information(files[-1])
    end = last.GetOrigin() if last is not None else header_geometry(headers[-1])[1]
    distance = float(np.linalg.norm(np.subtract(end, origin)))
    step = distance / (len(files) - 1) if len(files) > 1 and distance > 1e-12 else 1.0
    return (float(spacing[0]), float(spacing[1]), step), tuple(origin), tuple(direction)


def _syntax(ds: pydicom.Dataset, wrong: str | None) -> str:
    """The file's transfer syntax in words for an error (with why GDCM is not trusted with it, when it is not)."""
    ts = transfer_syntax(ds)
    return wrong or (f"{ts.name} ({ts})" if ts is not None else "no transfer syntax (no file meta header)")


def _file_pixels(path: str, ds: pydicom.Dataset, wrong: str | None,
                 dtype: np.dtype | None) -> tuple[np.ndarray, str | None]:
    """One series file's pixels ``(frames, rows, cols[, 3])``: GDCM's unless ``wrong`` (why GDCM's values are not
    trusted) or GDCM fails, then pydicom's. Returns them and, when pydicom decoded them, why."""
    gdcm_says = "its values are not trusted for this transfer syntax"
    if not wrong:
        try:
            with quiet_itk():
                arr = sitk.GetArrayFromImage(sitk.ReadImage(path))
            return (arr if dtype is None else arr.astype(dtype, copy=False)), None
        except RuntimeError as exc:
            gdcm_says = gdcm_reason(exc)
    try:
        arr = decode(path, dtype)
    except PixelDecodeError as exc:
        raise InputError(f"cannot decode DICOM pixel data of {Path(path).name} in {_syntax(ds, wrong)} "
                         f"(GDCM: {gdcm_says}; pydicom: {exc})") from None
    return arr, f"{wrong}: GDCM's values are not trusted for it" if wrong else f"GDCM cannot decode it ({gdcm_says})"


def series_pixels(files: Sequence[str], headers: Sequence[pydicom.Dataset],
                  wrong: Sequence[str | None]) -> tuple[sitk.Image, list[str]]:
    """A series (``files`` in slice order, ``headers`` and ``wrong`` (:func:`gdcm_wrong`) one per file) read file by
    file: GDCM decodes each file but those it gets wrong or cannot decode, which pydicom decodes; pixel type and
    geometry are those SimpleITK's series read gives (the first file's type, :func:`series_geometry`).

    Returns the image and one ``name: why`` per file pydicom decoded. Raises InputError naming a file neither
    decoder reads (its transfer syntax and both reasons), or one whose size differs from the first's."""
    first = _gdcm_information(files[0])
    dtype = None if first is None else sitk.GetArrayViewFromImage(
        sitk.Image([1, 1, 1], first.GetPixelID(), first.GetNumberOfComponents())).dtype
    slices, by_pydicom = [], []
    for path, ds, why in zip(files, headers, wrong):
        arr, note = _file_pixels(str(path), ds, why, dtype)
        if dtype is None:  # GDCM cannot read the first file's header: pydicom's type (GDCM's rule)
            dtype = arr.dtype
        _check_size(path, arr, files[0], slices[0] if slices else None)
        slices.append(arr)
        if note:
            by_pydicom.append(f"{Path(path).name}: {note}")
    arr = np.concatenate(slices)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=arr.ndim == 4)
    spacing, origin, direction = series_geometry(files, headers, first)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img, by_pydicom


def _check_size(path: str, arr: np.ndarray, first_path: str, first: np.ndarray | None) -> None:
    """One frame a file, all of the first file's size and samples: else the files are no one volume."""
    name = Path(path).name
    if arr.shape[0] != 1:
        raise InputError(f"{name} has {arr.shape[0]} frames: a file of a series must hold one slice")
    if first is not None and arr.shape != first.shape:
        size = "x".join(str(v) for v in arr.shape[1:])
        raise InputError(f"{name} has {size} pixels (rows x columns[ x samples]), {Path(first_path).name} has "
                         f"{'x'.join(str(v) for v in first.shape[1:])}: the files cannot form one volume")
