"""``medisam propagate`` in process on small synthetic NIfTI files (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.cli import main

TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--no-progress"]


@pytest.fixture()
def nifti(tmp_path):
    zz, yy, xx = np.mgrid[:5, :24, :28]
    array = ((((yy - 12) / 6.0) ** 2 + ((xx - 14) / 6.0) ** 2 + ((zz - 2) / 2.0) ** 2 <= 1) * 200.0
             + np.random.default_rng(1).normal(0, 5, (5, 24, 28))).astype(np.float32)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-3.0, 4.0, 10.0))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / "vol.nii.gz"
    sitk.WriteImage(img, str(path))
    return path


def test_box3d_writes_labels_with_input_geometry(nifti, tmp_path):
    out, overlays = tmp_path / "mask.nii.gz", tmp_path / "png"
    rc = main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "--label", "4", "-o", str(out),
               "--overlay", str(overlays)] + TINY)
    assert rc == 0 and out.exists()
    ref, got = sitk.ReadImage(str(nifti)), sitk.ReadImage(str(out))
    assert got.GetSize() == ref.GetSize() and np.allclose(got.GetSpacing(), ref.GetSpacing())
    assert np.allclose(got.GetOrigin(), ref.GetOrigin()) and np.allclose(got.GetDirection(), ref.GetDirection())
    labels = sitk.GetArrayFromImage(got)
    assert set(np.unique(labels)) <= {0, 4}
    assert not labels[[0, 4]].any()  # slices outside k = 1..3 stay empty
    with_mask = [k for k in range(5) if labels[k].any()]
    assert sorted(p.name for p in overlays.glob("*.png")) == [f"slice_{k:04d}.png" for k in with_mask]
    # the same output again needs --force
    assert main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "-o", str(out)] + TINY) == 2
    assert main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "-o", str(tmp_path / "new.nii.gz"),
                 "--overlay", str(overlays)] + TINY) == 2  # non-empty overlay folder needs --force


def test_slice_box_points_and_axis(tmp_path):
    path, out = tmp_path / "small.mha", tmp_path / "m.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(2).normal(0, 1, (6, 3, 10)).astype(np.float32)),
                    str(path))
    rc = main(["propagate", str(path), "--slice", "1", "--box", "0,1,4,4", "--point", "2,2",
               "--axis", "j", "-o", str(out)] + TINY)
    assert rc == 0 and sitk.GetArrayFromImage(sitk.ReadImage(str(out))).shape == (6, 3, 10)


@pytest.mark.parametrize("args,message", [
    (["--box3d", "8,6,1,20,18,9"], "outside the volume"),
    (["--box3d", "8,6,3,20,18,1"], "inverted"),
    (["--box3d", "8,6,1,20,18"], "needs 6 numbers"),
    (["--box3d", "8,6,1,20,18,3", "--slice", "2"], "not both"),
    (["--slice", "2"], "needs a --box"),
    ([], "give --box3d"),
    (["--slice", "9", "--box", "1,1,5,5"], "out of range"),
    (["--slice", "2", "--box", "1,1,50,5"], "outside"),
    (["--slice", "2", "--point", "2,99"], "outside"),
    (["--box3d", "8,6,1,20,18,3", "--axis", "q"], "axis"),
    (["--box3d", "8,6,1,20,18,3", "--views", "2"], "views"),
    (["--box3d", "8,6,1,20,18,3", "--encode-stride", "0"], "--encode-stride must be >= 1"),
])
def test_bad_prompts_write_nothing(nifti, tmp_path, capsys, args, message):
    out = tmp_path / "bad.nii.gz"
    assert main(["propagate", str(nifti), "-o", str(out)] + args + TINY) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_2d_and_4d_inputs_are_refused(tmp_path, capsys):
    png = tmp_path / "img.png"
    import cv2

    cv2.imwrite(str(png), np.zeros((16, 16), np.uint8))
    out = tmp_path / "o.nii.gz"
    assert main(["propagate", str(png), "--slice", "0", "--box", "1,1,5,5", "-o", str(out)] + TINY) == 2
    assert "medisam segment" in capsys.readouterr().err and not out.exists()
    four = sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((3, 8, 8), np.float32))] * 2)
    path4 = tmp_path / "four.nii.gz"
    sitk.WriteImage(four, str(path4))
    assert main(["propagate", str(path4), "--box3d", "1,1,0,5,5,2", "-o", str(out)] + TINY) == 2
    assert "channel" in capsys.readouterr().err and not out.exists()


def test_encode_stride_option_propagates_either_way(nifti, tmp_path):
    outs = {}
    for stride in ("1", "2"):
        outs[stride] = tmp_path / f"stride{stride}.nii.gz"
        assert main(["propagate", str(nifti), "--box3d", "8,6,0,20,18,4", "--views", "1", "-o", str(outs[stride]),
                     "--encode-stride", stride] + TINY) == 0
    shapes = {k: sitk.GetArrayFromImage(sitk.ReadImage(str(v))).shape for k, v in outs.items()}
    assert shapes == {"1": (5, 24, 28), "2": (5, 24, 28)}


def test_backend_options(nifti, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx.nii.gz"
    assert main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "--views", "1", "-o", str(out),
                 "--backend", "onnx", "--threads", "1"] + TINY) == 0
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).shape == (5, 24, 28)
    bad = tmp_path / "bad.nii.gz"
    assert main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "-o", str(bad), "--backend", "trt"] + TINY) == 2
    assert not bad.exists()


def test_box3d_runs_along_the_acquisition_axis_unless_told(tmp_path, made_sessions):
    """A sagittal NIfTI (thick voxels along i) is propagated along i by default, its planes with
    square pixels; --axis still decides."""
    zz, yy, xx = np.mgrid[:20, :24, :5]
    array = ((((yy - 12) / 6.0) ** 2 + ((zz - 10) / 6.0) ** 2 + ((xx - 2) / 2.0) ** 2 <= 1) * 200.0).astype(np.float32)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((2.5, 0.8, 0.7))  # x (i) is the thick axis
    path = tmp_path / "sagittal.nii.gz"
    sitk.WriteImage(img, str(path))
    for extra, axis in (([], 2), (["--axis", "k"], 0)):
        out = tmp_path / f"mask{axis}.nii.gz"
        assert main(["propagate", str(path), "--box3d", "1,6,4,3,18,16", "-o", str(out)] + extra + TINY) == 0
        assert made_sessions.pop()["axis"] == axis and out.exists()


def _ct_in_hu(tmp_path, air: float = -1024.0, name: str = "ct"):
    """A 6 x 40 x 40 CT in HU: air, a body of soft tissue (40 HU) holding a 'nodule' of 120 HU at
    rows/columns 16..23, and bone (1000 HU) in one corner."""
    array = np.full((6, 40, 40), air, np.float32)
    array[:, 4:36, 4:36] = 40.0
    array[:, 16:24, 16:24] = 120.0
    array[:, 30:34, 30:34] = 1000.0
    path = tmp_path / f"{name}.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path, array


def test_a_ct_in_hu_is_windowed_on_its_prompt_box(tmp_path, made_sessions, capsys):
    """Without --window, a NIfTI holding air in HU gets the 0.5-99.5 percentiles of the prompt box's
    voxels (here 40..120 HU: the nodule and the tissue around it), widened to 400 HU about their centre;
    --window still decides, and an image without air keeps the volume's own rule (window None)."""
    from medisam.io.intensity import region_window

    path, array = _ct_in_hu(tmp_path)
    box = (slice(1, 5), slice(12, 28), slice(12, 28))
    width, level = region_window(array, box)
    assert 40 <= level - width / 2 < 41 and 119 < level + width / 2 <= 120  # the box's range, not air to bone
    args = ["--box3d", "12,12,1,27,27,4"] + TINY
    assert main(["propagate", str(path), "-o", str(tmp_path / "a.nii.gz")] + args) == 0
    assert made_sessions.pop()["window"] == pytest.approx((400.0, level))
    assert "window: width 400, level 80" in capsys.readouterr().err
    # a box on a k slice: that slice's box; a wide one (air to bone) keeps its own width
    assert main(["propagate", str(path), "--slice", "2", "--box", "0,0,39,39", "-o", str(tmp_path / "b.nii.gz")]
                + TINY) == 0
    assert made_sessions.pop()["window"] == pytest.approx(region_window(array, (2, slice(0, 40), slice(0, 40))))
    assert region_window(array, (2, slice(0, 40), slice(0, 40)))[0] > 2000  # air to bone: wider than 400
    capsys.readouterr()
    assert main(["propagate", str(path), "--window", "lung", "-o", str(tmp_path / "c.nii.gz")] + args) == 0
    assert made_sessions.pop()["window"] == "lung"
    assert "window:" not in capsys.readouterr().err
    no_air, _ = _ct_in_hu(tmp_path, air=0.0, name="no_air")
    assert main(["propagate", str(no_air), "-o", str(tmp_path / "d.nii.gz")] + args) == 0
    assert made_sessions.pop()["window"] is None


def test_segment_windows_a_ct_slice_on_its_boxes(tmp_path, monkeypatch, capsys):
    """`medisam segment` on a slice of a CT in HU: the window spans the union of its boxes' pixels on
    that slice; with --window, that window."""
    import medisam.predict.segment as segment_module
    from medisam.io.intensity import region_window

    windows = []
    real = segment_module.segment_image

    def recording(*args, **kwargs):
        windows.append(kwargs.get("window"))
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_module, "segment_image", recording)
    path, array = _ct_in_hu(tmp_path)
    boxes = ["--box", "12,12,20,20", "--box", "18,18,27,27"]
    tiny = TINY[:-1]  # segment has no progress bar to turn off
    assert main(["segment", str(path), "--slice", "3", *boxes, "-o", str(tmp_path / "a.nii.gz")] + tiny) == 0
    assert windows.pop() == pytest.approx(region_window(array, (3, slice(12, 28), slice(12, 28)), 400.0))
    assert "window: width 400, level 80" in capsys.readouterr().err
    assert main(["segment", str(path), "--slice", "3", *boxes, "--window", "bone", "-o", str(tmp_path / "b.nii.gz")]
                + tiny) == 0
    assert windows.pop() == "bone"


def test_info_says_the_default_window_and_the_box3d_axis(tmp_path, capsys):
    """`medisam info` tells what segment/propagate do without --window and which axis --box3d slices."""
    path, _ = _ct_in_hu(tmp_path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "CT in HU: a box prompt's voxels" in out and "else 0.5-99.5 percentiles" in out
    assert "--box3d slices along  k (no axis is 1.2x thicker" in out
    mr = np.random.default_rng(0).uniform(10, 500, (4, 12, 10)).astype(np.float32)
    img = sitk.GetImageFromArray(mr)
    img.SetSpacing((0.8, 0.8, 0.5))  # x and y tie for the thickest: no thick axis
    sitk.WriteImage(img, str(tmp_path / "mr.nii.gz"))
    img.SetSpacing((3.0, 0.8, 0.8))  # x (i) is the thick axis: a sagittal scan
    sitk.WriteImage(img, str(tmp_path / "sag.nii.gz"))
    assert main(["info", str(tmp_path / "mr.nii.gz")]) == 0
    out = capsys.readouterr().out
    lo, hi = np.percentile(mr, [0.5, 99.5])
    assert f"0.5-99.5 percentiles: {lo:.6g} .. {hi:.6g}" in out and "no axis is 1.2x" in out
    assert main(["info", str(tmp_path / "sag.nii.gz")]) == 0
    assert "--box3d slices along  i (the thick axis, 3 mm)" in capsys.readouterr().out
