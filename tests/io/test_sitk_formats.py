"""NIfTI / NRRD / MetaImage geometry round trips and multi-channel handling."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.errors import InputError
from medisam.io import MedicalImage, read_image, write_mask


def _rotation() -> np.ndarray:
    a, b = 0.3, 0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.fixture()
def labels3d() -> MedicalImage:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4, size=(5, 6, 7)).astype(np.uint8)
    return MedicalImage(arr, (0.7, 1.3, 2.9), (-12.345678901, 7.1, 100.33), tuple(_rotation().ravel()),
                        kind="labels")


# MetaImage stores the values as text with full precision: bit-exact. NRRD stores
# direction x spacing, so values come back to 1e-15. NIfTI headers are float32.
TOLERANCE = {".mha": 0.0, ".mhd": 0.0, ".nrrd": 1e-12, ".nhdr": 1e-12, ".nii": 2e-6, ".nii.gz": 2e-6}


@pytest.mark.parametrize("ext", list(TOLERANCE))
def test_geometry_roundtrip(tmp_path, labels3d, ext):
    out = write_mask(labels3d, tmp_path / f"m{ext}")
    back = read_image(out)
    tol = TOLERANCE[ext]
    np.testing.assert_array_equal(back.array, labels3d.array)
    np.testing.assert_allclose(back.spacing, labels3d.spacing, rtol=0, atol=tol)
    np.testing.assert_allclose(back.origin, labels3d.origin, rtol=0, atol=tol * 10)
    np.testing.assert_allclose(back.direction, labels3d.direction, rtol=0, atol=tol)
    # a mask written on the grid of an image read from the same format keeps its geometry
    again = read_image(write_mask(back.array * 0 + 1, tmp_path / f"again{ext}", reference=back))
    np.testing.assert_allclose(again.spacing, back.spacing, rtol=0, atol=1e-9)
    np.testing.assert_allclose(again.origin, back.origin, rtol=0, atol=1e-9)
    np.testing.assert_allclose(again.direction, back.direction, rtol=0, atol=1e-9)


def test_mha_bit_exact(tmp_path, labels3d):
    back = read_image(write_mask(labels3d, tmp_path / "m.mha"))
    assert back.spacing == labels3d.spacing and back.origin == labels3d.origin
    assert back.direction == labels3d.direction


def test_mhd_companion_file(tmp_path, labels3d):
    write_mask(labels3d, tmp_path / "m.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mhd", "m.zraw"]


def test_float_volume_values(tmp_path):
    arr = np.linspace(-1000, 1000, 60, dtype=np.float32).reshape(3, 4, 5)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.5, 3.0))
    sitk.WriteImage(img, str(tmp_path / "v.nii.gz"))
    back = read_image(tmp_path / "v.nii.gz", modality="CT")
    np.testing.assert_array_equal(back.array, arr)
    assert back.modality == "CT" and back.source["format"] == "nifti"
    assert back.spacing == (0.5, 0.5, 3.0)


def test_4d_nifti_needs_channel(tmp_path):
    nib = pytest.importorskip("nibabel")
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)  # (T, Z, Y, X)
    nib.save(nib.Nifti1Image(arr.transpose(3, 2, 1, 0), np.diag([0.5, 0.6, 2.0, 1.0])), tmp_path / "four.nii.gz")
    with pytest.raises(InputError, match="channel=0..1"):
        read_image(tmp_path / "four.nii.gz")
    one = read_image(tmp_path / "four.nii.gz", channel=1)
    np.testing.assert_array_equal(one.array, arr[1])
    np.testing.assert_allclose(one.spacing, (0.5, 0.6, 2.0))
    with pytest.raises(InputError, match="out of range"):
        read_image(tmp_path / "four.nii.gz", channel=2)


def test_vector_volume_needs_channel(tmp_path):
    arr = np.random.default_rng(1).random((3, 4, 5, 2)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(tmp_path / "vec.mha"))
    with pytest.raises(InputError, match="components"):
        read_image(tmp_path / "vec.mha")
    np.testing.assert_array_equal(read_image(tmp_path / "vec.mha", channel=1).array, arr[..., 1])


def test_real_nifti(data_dir):
    img = read_image(data_dir / "msd_task04_hippocampus" / "imagesTr" / sorted(
        p.name for p in (data_dir / "msd_task04_hippocampus" / "imagesTr").iterdir())[0])
    assert img.is_volume and img.array.ndim == 3 and np.isfinite(img.array).all()
