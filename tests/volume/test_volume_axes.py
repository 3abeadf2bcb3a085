"""Which array axis a volume was acquired along (the bench slices a sagittal case along it)."""

from __future__ import annotations

import pytest

from medisam.predict.volume import acquisition_axis


@pytest.mark.parametrize("spacing_zyx, axis", [
    ((2.5, 0.8, 0.8), 0),   # axial CT: slices first
    ((0.8, 0.8, 2.5), 2),   # sagittal acquisition stored with its slices last
    ((0.8, 3.0, 0.8), 1),   # coronal
    ((1.0, 1.0, 1.0), 0),   # isotropic: no acquisition axis, the default
    ((1.0, 1.1, 1.0), 0),   # below the 1.2x anisotropy
    ((2.5, 2.5, 0.8), 0),   # two thick axes: none exceeds the other
    ((0.9, 0.9, 1.08), 2),  # exactly 1.2x
])
def test_acquisition_axis_is_the_clearly_thickest_one(spacing_zyx, axis):
    assert acquisition_axis(spacing_zyx) == axis
