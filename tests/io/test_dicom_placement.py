"""Where DICOM voxels land: enhanced multi-frame geometry, sheared series, mixed pixel sizes,
Pixel Padding Value, and one-line answers for DICOM files that hold no image."""

from __future__ import annotations

import random

import numpy as np
import pydicom
import pytest

from medisam.errors import InputError
from medisam.io import read_image
from tests.dicom_factory import write_ct_series, write_enhanced_ct

Z0, STEP = 50.0, 2.5


def _marked(n: int = 6) -> np.ndarray:
    """(n, 8, 10) HU volume whose slice k holds 100 * k everywhere (so slice order is visible)."""
    return np.repeat((100.0 * np.arange(n))[:, None, None], 80, axis=1).reshape(n, 8, 10)


def _enhanced(tmp_path, order: list[int], jitter: float = 0.0, n: int = 6):
    """An Enhanced CT file storing slices ``order`` of :func:`_marked`, slice k at z = Z0 + k * STEP."""
    rng = np.random.default_rng(0)
    hu = _marked(n)
    positions = [(-10.0, -20.0, Z0 + k * STEP + rng.uniform(-jitter, jitter)) for k in order]
    return write_enhanced_ct(tmp_path / "enh.dcm", hu[order], positions)


@pytest.mark.parametrize("how", ["head-to-feet with 1 um jitter", "shuffled"])
def test_enhanced_frames_are_placed_from_their_functional_groups(tmp_path, how):
    order = list(range(6))[::-1] if how.startswith("head") else random.Random(1).sample(range(6), 6)
    img = read_image(_enhanced(tmp_path, order, jitter=0.001 if how.startswith("head") else 0.0))
    assert img.geometry_warnings == ()
    np.testing.assert_allclose(img.spacing, (0.75, 0.8, STEP), atol=1e-3)  # not GDCM's 1 mm fallback
    np.testing.assert_allclose(img.origin, (-10.0, -20.0, Z0), atol=1e-2)
    np.testing.assert_allclose(img.direction, np.eye(3).ravel())
    assert img.array[:, 0, 0].tolist() == [100 * k for k in range(6)]  # spatial order, whatever the file's


def test_enhanced_missing_frame_is_a_gap(tmp_path):
    img = read_image(_enhanced(tmp_path, [0, 1, 2, 4, 5]))
    assert len(img.geometry_warnings) == 1
    assert img.geometry_warnings[0].startswith("gap in slice positions: 5 mm between frame 3 and frame 4")
    assert img.spacing[2] == pytest.approx(5 * STEP / 4)  # the series rule: one spacing, first to last


def test_enhanced_frames_at_one_position_are_refused(tmp_path):
    path = write_enhanced_ct(tmp_path / "enh.dcm", _marked(3), [(0.0, 0.0, Z0)] * 3)
    with pytest.raises(InputError, match=r"frame 1 and frame 2 are at the same slice position") as err:
        read_image(path)
    assert "\n" not in str(err.value)


def _shear(files, tilt_deg: float = 0.0, shift_mm: float = 0.0) -> None:
    """Gantry tilt (orientation tilted about x, positions still stepping along z) or an in-plane x shift."""
    t = np.radians(tilt_deg)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(np.sin(t))]
        ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + shift_mm * k, *ds.ImagePositionPatient[1:]]
        ds.save_as(f)


@pytest.mark.parametrize("tilt,shift,step", [(20.0, 0.0, "0.855 mm"), (0.0, 1.0, "1 mm")])
def test_sheared_series_is_a_geometry_problem(tmp_path, tilt, shift, step):
    _, files = write_ct_series(tmp_path / "ct", _marked(), spacing=(0.75, 0.8, STEP))
    _shear(files, tilt, shift)
    img = read_image(tmp_path / "ct")
    assert len(img.geometry_warnings) == 1
    line = img.geometry_warnings[0]
    assert line.startswith(f"gantry tilt or sheared series: slice positions step {step} in-plane per slice")
    assert "NIfTI/NRRD mask written against it is misplaced by up to" in line and "resample" in line


def test_sheared_series_mask_refused_unless_allow_gaps(tmp_path, capsys):
    from medisam.cli import main

    _, files = write_ct_series(tmp_path / "ct", _marked(), spacing=(0.75, 0.8, STEP))
    _shear(files, 20.0)
    out = tmp_path / "mask.nii.gz"
    code = main(["segment", str(tmp_path / "ct"), "--slice", "1", "--box", "1,1,8,6", "-o", str(out),
                 "--model", "litemedsam-tiny", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists() and len(err) == 1
    assert err[0].startswith("error: gantry tilt or sheared series") and "--allow-gaps" in err[0]


def test_oblique_series_is_not_sheared(tmp_path):
    """Positions that step along the normal of a tilted plane are a plain oblique series."""
    _, files = write_ct_series(tmp_path / "ct", _marked(), spacing=(0.75, 0.8, STEP))
    t = np.radians(20.0)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(t)), float(np.sin(t))]
        ds.ImagePositionPatient = [0.0, -STEP * k * float(np.sin(t)), STEP * k * float(np.cos(t))]
        ds.save_as(f)
    assert read_image(tmp_path / "ct").geometry_warnings == ()


def test_series_with_another_pixel_spacing_is_refused(tmp_path):
    _, files = write_ct_series(tmp_path / "ct", _marked(), spacing=(1.0, 1.0, STEP))
    ds = pydicom.dcmread(files[3])
    ds.PixelSpacing = [0.9, 0.9]
    ds.save_as(files[3])
    with pytest.raises(InputError, match=rf"{files[3].name} has PixelSpacing \(0.9, 0.9\), .* mixes pixel sizes"):
        read_image(tmp_path / "ct")


def _pad(files, stored: int, limit: int | None = None) -> int:
    """Store ``stored`` (``stored..limit`` when given) outside the central 4 x 4 of every slice, as
    the Pixel Padding Value; returns the number of padding voxels."""
    count = 0
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        a = ds.pixel_array.copy()
        mask = np.ones(a.shape, bool)
        mask[2:6, 3:7] = False
        a[mask] = stored if limit is None else np.linspace(stored, limit, mask.sum()).astype(a.dtype)
        count += int(mask.sum())
        ds.PixelData = a.astype(np.int16).tobytes()
        ds.add_new(0x00280120, "SS", stored)  # Pixel Padding Value, signed as the pixels are
        if limit is not None:
            ds.add_new(0x00280121, "SS", limit)  # Pixel Padding Range Limit
        ds.save_as(f)
    return count


@pytest.mark.parametrize("slope,limit", [(1.0, None), (0.5, None), (1.0, -1900)])
def test_pixel_padding_takes_the_lowest_real_value(tmp_path, slope, limit):
    hu = np.full((4, 8, 10), -1000.0)
    hu[:, 3:5, 4:6] = 300.0
    _, files = write_ct_series(tmp_path / "ct", hu, slope=slope)
    count = _pad(files, -2000, limit)
    img = read_image(tmp_path / "ct")
    assert float(img.array.min()) == -1000.0 and float(img.array.max()) == 300.0
    assert img.source["pixel_padding"]["voxels"] == count
    assert img.source["pixel_padding"]["set_to"] == -1000.0


def test_info_says_how_many_voxels_were_padding(tmp_path, capsys):
    from medisam.cli import main

    hu = np.full((3, 8, 10), -1000.0)
    hu[:, 3:5, 4:6] = 300.0
    _, files = write_ct_series(tmp_path / "ct", hu)
    count = _pad(files, -2000, None)
    assert main(["info", str(tmp_path / "ct")]) == 0
    out = capsys.readouterr().out
    assert "-1000 .. 300" in out  # the value range without the padding's -3024
    assert f"{count} voxels (stored -2000) set to -1000, the lowest real value" in out


def test_pixel_padding_of_a_single_slice(tmp_path):
    hu = np.full((1, 8, 10), -500.0)
    _, files = write_ct_series(tmp_path / "ct", hu)
    count = _pad(files, -2000)
    img = read_image(files[0])
    assert img.array.ndim == 2 and float(img.array.min()) == -500.0
    assert img.source["pixel_padding"]["voxels"] == count


@pytest.fixture()
def one_file(tmp_path):
    _, files = write_ct_series(tmp_path / "ct", _marked(1))
    return files[0]


def _message(path) -> str:
    with pytest.raises(InputError) as err:
        read_image(path)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_file_without_pixel_data(one_file):
    ds = pydicom.dcmread(one_file)
    del ds.PixelData
    ds.save_as(one_file)
    assert _message(one_file).endswith(f"{one_file.name}: has no pixel data")


def test_truncated_file(one_file):
    one_file.write_bytes(one_file.read_bytes()[:-64])
    assert _message(one_file).endswith(": is truncated (96 of 160 bytes of pixel data)")


def test_stub_file(one_file):
    one_file.write_bytes(one_file.read_bytes()[:400])
    assert "not a readable DICOM image" in _message(one_file)


def test_dicomdir_file(tmp_path, one_file):
    from pydicom.fileset import FileSet

    fs = FileSet()
    fs.add(one_file)
    fs.write(tmp_path / "media")
    message = _message(tmp_path / "media" / "DICOMDIR")
    assert message.endswith("this is a DICOMDIR index: give the folder that holds it (or the series folder)")
