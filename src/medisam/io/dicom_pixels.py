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
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.uid import ExplicitVRBigEndian, RLELossless

from medisam.io.dicom_geometry import floats, functional_value

log = logging.getLogger(__name__)

#: Header attributes :func:`gdcm_wrong` reads (besides the file meta's Transfer Syntax UID).
PIXEL_TAGS = ["PhotometricInterpretation", "SamplesPerPixel", "BitsAllocated"]
#: Integer types GDCM picks from for an integral rescale, smallest first.
_INTEGER_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)


class PixelDecodeError(Exception):
    """pydicom cannot decode the pixel data either (message: pydicom's last line)."""


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
        said = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        raise PixelDecodeError(said[:200]) from exc  # one line: the plugins' reasons follow a colon
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


def replace_series_pixels(img: sitk.Image, files: list[str] | tuple[str, ...]) -> sitk.Image:
    """GDCM's series image ``img`` (file k in array slice k) with each file's pixels decoded by pydicom."""
    dtype = sitk.GetArrayViewFromImage(img).dtype
    arr = np.concatenate([decode(f, dtype) for f in files])
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=arr.ndim == 4)
    if out.GetSize() != img.GetSize():
        raise PixelDecodeError(f"pydicom decodes {out.GetSize()} pixels, GDCM {img.GetSize()}")
    out.CopyInformation(img)
    return out
