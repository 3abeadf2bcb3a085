"""Fixtures of the volume tests."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk


@pytest.fixture()
def lesion(tmp_path):
    """A (12, 40, 44) volume with a bright ellipsoid 'lesion'; spacing x 0.7, y 0.8, z 2.0 mm."""
    zz, yy, xx = np.mgrid[:12, :40, :44]
    array = ((((yy - 20) / 8.0) ** 2 + ((xx - 22) / 10.0) ** 2 + ((zz - 6) / 3.0) ** 2 <= 1) * 200.0
             + np.random.default_rng(3).normal(0, 5, (12, 40, 44))).astype(np.float32)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((0.7, 0.8, 2.0))
    path = tmp_path / "lesion.nii.gz"
    sitk.WriteImage(img, str(path))
    return path
