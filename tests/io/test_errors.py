"""Every bad input gives an InputError with a one-line message naming the file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medisam.errors import ImageTooLargeError, InputError
from medisam.io import read_image


def _raises(path, match: str, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as err:
        read_image(path, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and str(path.name) in msg
    return msg


def test_missing(tmp_path):
    _raises(tmp_path / "nope.nii.gz", "no such file")


def test_unsupported_extension(tmp_path):
    (tmp_path / "a.xyz").write_bytes(b"hello")
    msg = _raises(tmp_path / "a.xyz", "unsupported file type")
    assert ".nii.gz" in msg and ".png" in msg


@pytest.mark.parametrize("name", ["bad.png", "bad.jpg", "bad.nii.gz", "bad.nrrd", "bad.mha", "bad.npz", "bad.dcm"])
def test_corrupt(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(600))
    _raises(tmp_path / name, "cannot|not a|corrupt")


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    _raises(tmp_path / "z.png", "empty file")


@pytest.mark.parametrize("name", ["t.nii", "t.nii.gz", "t.mha", "t.nrrd"])
def test_truncated_volume(tmp_path, name):
    # ITK reads a truncated NIfTI without error (zeros); medisam must not.
    rnd = np.random.default_rng(0).random((10, 20, 30)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(rnd), str(tmp_path / name))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) * 2 // 3])
    _raises(tmp_path / name, "truncated|cannot read pixel data")


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    _raises(tmp_path / "t.png", "cannot decode")


def test_empty_image(tmp_path):
    np.savez(tmp_path / "e.npz", imgs=np.zeros((0, 5), np.uint8))
    _raises(tmp_path / "e.npz", "empty image")


def test_nan_and_inf(tmp_path):
    arr = np.ones((3, 4, 5), np.float32)
    arr[1, 2, 3] = np.nan
    for name in ("n.nii.gz", "n.nii", "n.mha", "n.nrrd"):  # ITK's NIfTI reader turns NaN into 0
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / name))
        _raises(tmp_path / name, "1 NaN/inf")
    np.savez(tmp_path / "i.npz", imgs=np.full((4, 5), np.inf, np.float32))
    _raises(tmp_path / "i.npz", "NaN/inf")


def test_max_voxels_checked_from_header(tmp_path):
    # A PNG whose header says 300x200 but whose pixel data is cut off: the size check must
    # fire from the header, before any decoding is attempted.
    Image.fromarray(np.zeros((200, 300), np.uint8)).save(tmp_path / "big.png")
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "big.png").write_bytes(data[:100])
    msg = _raises(tmp_path / "big.png", "more than the limit", max_voxels=1000)
    assert "max_voxels=None / --max-voxels 0" in msg
    # a gzip NIfTI: header read without decompressing the whole volume
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30, 40), np.int16)), str(tmp_path / "v.nii.gz"))
    _raises(tmp_path / "v.nii.gz", "24000 voxels", max_voxels=1000)
    with pytest.raises(ImageTooLargeError) as info:  # its own class, so callers need not parse text
        read_image(tmp_path / "v.nii.gz", max_voxels=1000)
    assert (info.value.voxels, info.value.limit) == (24000, 1000)
    assert read_image(tmp_path / "v.nii.gz", max_voxels=None).array.shape == (20, 30, 40)
    assert read_image(tmp_path / "v.nii.gz", max_voxels=0).array.shape == (20, 30, 40)


def test_max_voxels_dicom_series(ct_series):
    folder, _, _ = ct_series
    with pytest.raises(InputError, match="max_voxels=None"):
        read_image(folder, max_voxels=100)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    _raises(tmp_path, "no DICOM image series")


def test_gz_is_not_nifti(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(gzip.compress(b"not a nifti" * 50))
    _raises(tmp_path / "x.nii.gz", "cannot read image header")
