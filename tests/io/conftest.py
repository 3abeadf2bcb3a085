"""Shared fixtures for medisam.io tests: real-data locator and a synthetic DICOM CT series."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.dicom_factory import write_ct_series

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder (env MEDISAM_DATA or ../shared/data); skip when absent."""
    candidates = [os.environ.get("MEDISAM_DATA"), REPO_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    pytest.skip("real test data not found (set MEDISAM_DATA)")


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
