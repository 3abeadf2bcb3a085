"""Synthetic DICOM CT series for the io, server and app tests (one writer for all)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np


def new_instance(sop_class: str):  # noqa: ANN201 - pydicom Dataset
    """An empty Explicit-VR-LE dataset of ``sop_class`` with its file meta and a fresh instance UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
    spacing: tuple[float, float, float] = (0.75, 0.8, 2.5),
    origin: tuple[float, float, float] = (-100.0, -120.0, 50.0),
    description: str = "synthetic CT",
    seed: int = 0,
) -> tuple[str, list[Path]]:
    """Write ``hu`` (Z, Y, X) as a CT series, one file per slice, with shuffled file names.

    Returns (SeriesInstanceUID, file paths ordered by slice index k).
    """
    from pydicom.uid import CTImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    stored = np.rint((hu - intercept) / slope).astype(np.int16)
    order = list(range(hu.shape[0]))
    random.Random(seed).shuffle(order)  # file names do not follow slice order
    paths: list[Path] = [None] * hu.shape[0]  # type: ignore[list-item]
    for name_idx, k in enumerate(order):
        ds = new_instance(CTImageStorage)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "P1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
            "20240101", "120000", "1", "", "")
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, k + 1
        ds.SeriesDescription = description
        ds.Manufacturer, ds.PositionReferenceIndicator = "medisam-test", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = 120
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # DICOM: row spacing (y), column spacing (x)
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        ds.PixelData = stored[k].tobytes()
        path = folder / f"IM{name_idx:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths[k] = path
    return series, paths


def anonymise(paths: list[Path], blank: tuple[str, ...] = (), delete: tuple[str, ...] = (),
              file_meta: bool = False) -> None:
    """Blank (set to "") or delete attributes in place, as anonymisers do; ``file_meta``
    also blanks the file meta header's copies of the SOP Class/Instance UIDs."""
    import pydicom

    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword in blank:
            setattr(ds, keyword, "")
        for keyword in delete:
            if keyword in ds:
                delattr(ds, keyword)
        if file_meta:
            ds.file_meta.MediaStorageSOPClassUID = ""
            ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(path)


def copy_series(src: Path, dest: Path) -> list[Path]:
    """Copy the ``*.dcm`` files of ``src`` (recursively) into ``dest``; returns them sorted."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in sorted(src.rglob("*.dcm")):
        out.append(Path(shutil.copy(f, dest / f.name)))
    return out


def damage_slice(paths: list[Path], k: int, how: str) -> None:
    """Break slice ``k`` of a series (``paths`` ordered by slice) the ways real folders break.

    ``how``: "garbage" (the file is random bytes), "truncate" (pixel data cut short),
    "delete" (the file is gone), "duplicate" (a second file at the same position, new UID),
    "no-position" (ImagePositionPatient deleted), "tilt" (another orientation),
    "shift" (the position moved by 40% of a step: uneven spacing).
    """
    import os
    import shutil

    import pydicom
    from pydicom.uid import generate_uid

    path = paths[k]
    if how == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[:-64])
    elif how == "delete":
        path.unlink()
    elif how == "duplicate":
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(path.with_name("zz_duplicate.dcm"))
    elif how == "copy":
        shutil.copy(path, path.with_name("zz_copy.dcm"))
    else:
        ds = pydicom.dcmread(path)
        if how == "no-position":
            del ds.ImagePositionPatient
        elif how == "tilt":
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9950042, 0.0998334]
        elif how == "shift":
            step = float(pydicom.dcmread(paths[1]).ImagePositionPatient[2]) - float(
                pydicom.dcmread(paths[0]).ImagePositionPatient[2])
            ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.4 * step
        else:
            raise ValueError(f"unknown damage {how!r}")
        ds.save_as(path)


def compress_series(paths: list[Path], syntax: str) -> None:
    """Re-encode each file in place with a compressed transfer syntax, as PACS exports do.

    ``syntax``: "rle" (pydicom's own encoder), "jpegls" (pyjpegls), "j2k" (JPEG 2000
    lossless, encoded by Pillow), or "htj2k" (the same JPEG 2000 code stream labelled with
    the High-Throughput JPEG 2000 lossless syntax, which GDCM does not know).
    """
    import io

    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, UID

    for path in paths:
        ds = pydicom.dcmread(path)
        if syntax in ("rle", "jpegls"):
            ds.compress(RLELossless if syntax == "rle" else JPEGLSLossless)
        elif syntax in ("j2k", "htj2k"):
            from PIL import Image

            arr = ds.pixel_array
            if ds.PixelRepresentation:  # Pillow writes unsigned 16-bit: shift to unsigned storage
                arr = (arr.astype(np.int32) + 32768).astype(np.uint16)
                ds.PixelRepresentation = 0
                ds.RescaleIntercept = float(ds.RescaleIntercept) - 32768 * float(ds.RescaleSlope)
            buf = io.BytesIO()
            Image.fromarray(arr.astype(np.uint16), mode="I;16").save(buf, format="JPEG2000", irreversible=False,
                                                                     no_jp2=True)
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEG2000Lossless if syntax == "j2k" else UID("1.2.840.10008.1.2.4.201")
        else:
            raise ValueError(f"unknown transfer syntax {syntax!r}")
        ds.save_as(path)


def write_enhanced_ct(
    path: Path,
    hu: np.ndarray,
    positions: list[tuple[float, float, float]],
    *,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: tuple[float, float] = (0.8, 0.75),
    intercept: float = -1024.0,
    frame_groups: list[dict[str, dict]] | None = None,
    dimension_index: tuple[str, ...] = (),
) -> Path:
    """Write ``hu`` (frames, Y, X) as an Enhanced CT file, frame ``f`` at ``positions[f]``
    (PlanePositionSequence per frame; orientation, pixel size and rescale shared), as scanners do.
    ``frame_groups[f]``: more functional groups of frame ``f``, ``{sequence: {attribute: value}}`` (e.g.
    ``{"FrameContentSequence": {"TemporalPositionIndex": 2}}``); ``dimension_index``: the attributes the
    DimensionIndexSequence points to."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    ds = new_instance("1.2.840.10008.5.1.4.1.1.2.1")  # Enhanced CT Image Storage
    ds.PatientName, ds.PatientID, ds.Modality = "Test^Patient", "P1", "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = hu.shape[1], hu.shape[2], hu.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    measures, plane, rescale, shared = Dataset(), Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = list(pixel_spacing), 2.5
    plane.ImageOrientationPatient = list(orientation)
    rescale.RescaleIntercept, rescale.RescaleSlope, rescale.RescaleType = intercept, 1, "HU"
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([plane])
    shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for f, p in enumerate(positions):
        group, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [f"{v:.6f}" for v in p]
        group.PlanePositionSequence = Sequence([pos])
        for sequence, attributes in (frame_groups[f] if frame_groups else {}).items():
            item = Dataset()
            for keyword, value in attributes.items():
                setattr(item, keyword, value)
            setattr(group, sequence, Sequence([item]))
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    if dimension_index:
        index = []
        for keyword in dimension_index:
            item = Dataset()
            item.DimensionIndexPointer = tag_for_keyword(keyword)
            index.append(item)
        ds.DimensionIndexSequence = Sequence(index)
    ds.PixelData = np.rint(hu - intercept).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_legacy_multiframe(
    path: Path,
    hu: np.ndarray,
    *,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.2",
    modality: str = "CT",
    intercept: float = -1024.0,
    **attributes: object,
) -> Path:
    """Write ``hu`` (frames, Y, X) as one legacy multi-frame file: NumberOfFrames and no per-frame
    functional groups, as converters, NM cameras and RT Dose exports write them. ``attributes``
    (ImagePositionPatient, SpacingBetweenSlices, GridFrameOffsetVector, ...) go into the header as given."""
    from pydicom.uid import generate_uid

    ds = new_instance(sop_class)
    ds.PatientName, ds.PatientID, ds.Modality = "Test^Patient", "P1", modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = hu.shape[1], hu.shape[2], hu.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.rint(hu - intercept).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def big_endian(path: Path, bits: int = 32) -> None:
    """Rewrite one file as Explicit VR Big Endian with ``bits`` per stored value (GDCM reads 32 bits wrong)."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian

    ds = pydicom.dcmread(path)
    stored = ds.pixel_array.astype(np.int32 if bits == 32 else np.int16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
