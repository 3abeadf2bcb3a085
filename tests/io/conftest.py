"""Shared fixtures for medisam.io tests: real-data locator and a synthetic DICOM CT series."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder (env MEDISAM_DATA or ../shared/data); skip when absent."""
    candidates = [os.environ.get("MEDISAM_DATA"), REPO_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    pytest.skip("real test data not found (set MEDISAM_DATA)")


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
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    stored = np.rint((hu - intercept) / slope).astype(np.int16)
    order = list(range(hu.shape[0]))
    random.Random(seed).shuffle(order)  # file names do not follow slice order
    paths: list[Path] = [None] * hu.shape[0]  # type: ignore[list-item]
    for name_idx, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
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


@pytest.fixture()
def make_series():
    """The :func:`write_ct_series` helper, as a fixture (tests/io is not a package)."""
    return write_ct_series


@pytest.fixture()
def ct_hu() -> np.ndarray:
    """A small (4, 6, 8) int HU volume with distinct values per slice."""
    z, y, x = np.meshgrid(np.arange(4), np.arange(6), np.arange(8), indexing="ij")
    return (-1000 + 300 * z + 10 * y + x).astype(np.int16)


@pytest.fixture()
def ct_series(tmp_path: Path, ct_hu: np.ndarray) -> tuple[Path, str, list[Path]]:
    """A synthetic 4-slice CT series: (folder, SeriesInstanceUID, files by slice)."""
    folder = tmp_path / "ct"
    uid, files = write_ct_series(folder, ct_hu)
    return folder, uid, files
