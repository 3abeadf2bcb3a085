"""Fixtures of the CLI tests: small input files (helpers are in cli_helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_helpers import SAMPLE


@pytest.fixture()
def png(tmp_path) -> Path:
    """A copy of the bundled 512x512 CT slice (JPEG) as an input we may try to overwrite."""
    path = tmp_path / "us.jpg"
    shutil.copy(SAMPLE, path)
    return path


@pytest.fixture()
def nifti(tmp_path) -> Path:
    """A (5, 24, 28) float volume with a bright ellipsoid."""
    zz, yy, xx = np.mgrid[:5, :24, :28]
    array = ((((yy - 12) / 6.0) ** 2 + ((xx - 14) / 6.0) ** 2 + ((zz - 2) / 2.0) ** 2 <= 1) * 200.0
             + np.random.default_rng(1).normal(0, 5, (5, 24, 28))).astype(np.float32)
    path = tmp_path / "vol.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path
