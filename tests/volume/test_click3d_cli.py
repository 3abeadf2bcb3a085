"""``medisam propagate --click3d/--guide``: corrective 3D clicks after the propagation, as the API does them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.cli import main

TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--no-progress"]


def _write(array: np.ndarray, path, spacing=(0.7, 0.8, 2.0)):
    img = sitk.GetImageFromArray(array.astype(np.float32))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture()
def lesion(tmp_path):
    """A (12, 40, 44) volume with a bright ellipsoid and a second 'channel' of the same grid."""
    zz, yy, xx = np.mgrid[:12, :40, :44]
    blob = (((yy - 20) / 8.0) ** 2 + ((xx - 22) / 10.0) ** 2 + ((zz - 6) / 3.0) ** 2 <= 1)
    noise = np.random.default_rng(3).normal(0, 5, blob.shape)
    flair = _write(blob * 200.0 + noise, tmp_path / "flair.nii.gz")
    t1c = _write(np.where(xx < 22, blob * 150.0, 0.0) + noise, tmp_path / "t1c.nii.gz")
    return flair, t1c


def test_clicks_and_guides_match_the_api(lesion, tmp_path, tiny_model, capsys):
    from medisam.io import read_image
    from medisam.predict import VolumeSession

    flair, t1c = lesion
    out = tmp_path / "clicked.nii.gz"
    assert main(["propagate", str(flair), "--box3d", "10,10,3,34,30,9", "--click3d", "30,20,6,0",
                 "--click3d", "14,22,5", "--guide", str(t1c), "-o", str(out)] + TINY) == 0
    err = capsys.readouterr().err
    assert "--click3d 30,20,6 (negative)" in err and "--click3d 14,22,5 (positive)" in err
    session = VolumeSession(tiny_model, read_image(flair), guides=[read_image(t1c)])
    session.add_box3d((10, 10, 3, 34, 30, 9))
    session.propagate(progress=False)
    before = session.label_map().array.copy()
    session.add_click((6, 20, 30), positive=False)
    session.add_click((5, 22, 14), positive=True)
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.array_equal(got, session.label_map().array)
    assert not np.array_equal(before, got)  # the clicks changed the propagated result


@pytest.mark.parametrize("args,message", [
    (["--guide", "{t1c}"], "--guide helps --click3d clicks"),
    (["--click3d", "10,10,12"], "--click3d 10,10,12 lies outside"),
    (["--click3d", "20,20,1"], "outside the object's slice range 3..9"),
    (["--click3d", "10,10,4,2"], "optional label 1 (positive) or 0 (negative)"),
    (["--click3d", "10.5,10,4"], "integer voxel indices"),
    (["--click3d", "10,10"], "needs 3 or 4 numbers"),
    (["--click3d", "20,20,5", "--guide", "{small}"], "guide 0 has shape"),
    (["--click3d", "20,20,5", "--guide", "{missing}"], "missing"),
    # the image's shape and spacing, another grid: it was read voxel by voxel, flipped or shifted (stop 69)
    (["--click3d", "20,20,5", "--guide", "{flipped}"], "guide 0 has orientation RPS; the image has LPS"),
    (["--click3d", "20,20,5", "--guide", "{moved}"], "guide 0 has origin (0.0, 0.0, 4.0) mm"),
])
def test_bad_clicks_and_guides_are_one_line_and_write_nothing(lesion, tmp_path, capsys, args, message):
    flair, t1c = lesion
    small = _write(np.zeros((12, 40, 40)), tmp_path / "small.nii.gz")
    flipped, moved = sitk.ReadImage(str(t1c)), sitk.ReadImage(str(t1c))
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    moved.SetOrigin((0, 0, 4))
    sitk.WriteImage(flipped, str(tmp_path / "flipped.nii.gz"))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    names = {"t1c": t1c, "small": small, "missing": tmp_path / "missing.nii.gz",
             "flipped": tmp_path / "flipped.nii.gz", "moved": tmp_path / "moved.nii.gz"}
    out = tmp_path / "bad.nii.gz"
    code = main(["propagate", str(flair), "--box3d", "10,10,3,34,30,9", "-o", str(out)]
                + [a.format(**names) for a in args] + TINY)
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("prompt,click", [
    (["--box3d", "10,10,3,34,30,9"], "20,20,10"),
    (["--slice", "6", "--box", "10,10,34,30", "--slices", "4:8"], "20,20,9"),
    (["--slice", "6", "--recist", "12,20,32,20"], "20,20,0"),
])
def test_a_click_off_the_objects_slices_fails_before_the_model_loads(lesion, tmp_path, capsys, monkeypatch,
                                                                    prompt, click):
    from medisam.cli import common

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(common, "load", no_model)
    out = tmp_path / "bad.nii.gz"
    code = main(["propagate", str(lesion[0]), *prompt, "--click3d", click, "-o", str(out)] + TINY)
    err = capsys.readouterr().err
    assert code != 0 and "outside the object's slice range" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
