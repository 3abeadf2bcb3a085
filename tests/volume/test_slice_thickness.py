"""Effective slice spacing: an axis linearly interpolated from thicker slices is seen at their spacing."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.predict import PropagationConfig, VolumeSession
from medisam.predict.slice_thickness import effective_spacing, interpolation_factor
from medisam.predict.view_plan import plan_views
from medisam.prompts import Box3D


def _thick(n: int = 12, seed: int = 0) -> np.ndarray:
    """Native slices: noisy, different on every slice (a 5 mm acquisition)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    disk = ((yy - 32) ** 2 + (xx - 30) ** 2 < 20 ** 2).astype(np.float32)
    return np.stack([disk * (300 + 20 * z) + rng.normal(0, 30, disk.shape) for z in range(n)]).astype(np.float32)


def _upsampled(vol: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation onto ``factor`` times as many slices (what a resampling export does)."""
    z = np.arange((len(vol) - 1) * factor + 1) / factor
    lo = np.minimum(np.floor(z).astype(int), len(vol) - 2)
    w = (z - lo)[:, None, None]
    return ((1 - w) * vol[lo] + w * vol[lo + 1]).astype(np.float32)


@pytest.mark.parametrize("factor", [2, 3, 4, 6])
def test_interpolated_axis_is_found_with_its_factor(factor):
    vol = _upsampled(_thick(), factor)
    assert interpolation_factor(vol, 0) == factor
    assert interpolation_factor(vol, 1) == 1 and interpolation_factor(vol, 2) == 1  # in-plane axes are native
    assert effective_spacing(vol, (5.0 / factor, 0.6, 0.6)) == pytest.approx((5.0, 0.6, 0.6))


def test_native_volumes_padding_and_short_axes_keep_their_spacing():
    vol = _thick(40)
    assert effective_spacing(vol, (1.0, 1.0, 1.0)) == (1.0, 1.0, 1.0)
    padded = np.concatenate([np.zeros((30, 64, 64), np.float32), vol[:20], np.zeros((30, 64, 64), np.float32)])
    assert interpolation_factor(padded, 0) == 1  # empty slices are not "interpolated"
    assert interpolation_factor(_upsampled(_thick(3), 2), 0) == 1  # 5 slices: too few to judge


def test_the_plan_skips_views_across_interpolated_slices_before_encoding(tiny_model):
    shape, spacing = (45, 64, 64), (1.25, 0.6, 0.6)  # 5 mm slices exported at 1.25 mm
    box = Box3D(10, 10, 2, 50, 50, 42)
    native = plan_views(shape, spacing, 0, box)
    seen = plan_views(shape, spacing, 0, box, effective_spacing_zyx=(5.0, 0.6, 0.6))
    assert len(native.grids) == 3 and len(seen.grids) == 1
    assert "1.25 mm slices interpolated from 5 mm ones" in seen.describe()
    # through a session: the volume itself says it was interpolated
    from medisam.io.medical_image import MedicalImage

    image = MedicalImage.from_array(_upsampled(_thick(12), 4), spacing=(0.6, 0.6, 1.25))
    session = VolumeSession(tiny_model, image, config=PropagationConfig(min_area_px=0))
    session.add_box3d((10, 10, 2, 50, 50, 42))
    assert len(session.view_plan(1).grids) == 1 and "interpolated from 5 mm" in session.plan_lines()[0]
