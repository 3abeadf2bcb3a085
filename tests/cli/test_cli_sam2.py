"""``medisam propagate`` / ``segment`` with SAM 2 models (the tiny random-weight sam2-tiny), and
the propagate outputs and messages that do not depend on the model: overlay kinds, 2D inputs,
the plan lines before the work."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from cli_helpers import TINY

from medisam.cli import main

SAM2 = ["--model", "sam2-tiny", "--device", "cpu"]


@pytest.fixture(scope="module")
def _sam2():
    pytest.importorskip("sam2")


@pytest.mark.parametrize("prompt", [["--box", "8,6,20,18"], ["--lasso", "8,6,20,6,20,18,8,18"]],
                         ids=["box", "lasso"])
def test_propagate_a_slice_box_or_lasso_with_sam2(_sam2, tmp_path, nifti, capsys, prompt):
    """A --box / --lasso alone on --slice propagates with SAM 2 (it was refused as a --scribble)."""
    out = tmp_path / "p.nii.gz"
    assert main(["propagate", str(nifti), "--slice", "2", *prompt, "-o", str(out), "--no-progress"] + SAM2) == 0
    assert "--scribble" not in capsys.readouterr().err
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).shape == (5, 24, 28)


def test_propagate_refuses_a_scribble_correction_with_sam2(_sam2, tmp_path, nifti, capsys):
    out = tmp_path / "p.nii.gz"
    rc = main(["propagate", str(nifti), "--slice", "2", "--box", "8,6,20,18", "--scribble", "10,10,12,12",
               "-o", str(out)] + SAM2)
    assert rc == 2 and "--scribble with --box/--lasso" in capsys.readouterr().err
    assert not out.exists()


def test_no_progress_silences_sam2s_own_bar_and_progress_shows_one(_sam2, tmp_path, nifti, capsys):
    args = ["propagate", str(nifti), "--box3d", "8,6,1,20,18,3"] + SAM2
    assert main([*args, "-o", str(tmp_path / "a.nii.gz"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "propagate in video" not in err and "propagate (SAM 2)" not in err
    assert main([*args, "-o", str(tmp_path / "b.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert "propagate in video" not in err and "propagate (SAM 2)" in err


@pytest.mark.parametrize("model", [TINY, SAM2], ids=["litemedsam", "sam2"])
def test_plan_lines_are_printed_before_the_work_without_progress(tmp_path, nifti, capsys, model):
    if model is SAM2:
        pytest.importorskip("sam2")
    out = tmp_path / "p.nii.gz"
    assert main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "-o", str(out), "--no-progress"]
                + model) == 0
    err = capsys.readouterr().err
    assert ("SAM 2 tracks 1 object(s)" if model is SAM2 else "object 1: ") in err


@pytest.mark.parametrize("name", ["ovl.mp4", "ovl.AVI", "ovl.mov"])
def test_a_video_file_overlay_of_a_volume_is_refused(tmp_path, nifti, capsys, name):
    overlay, out = tmp_path / name, tmp_path / "t.nii.gz"
    rc = main(["propagate", str(nifti), "--box3d", "8,6,1,20,18,3", "-o", str(out), "--overlay", str(overlay)]
              + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: --overlay") and "folder" in err[0]
    assert not overlay.exists() and not out.exists()


@pytest.mark.parametrize("out", ["m.png", "m.nii.gz"])
def test_propagate_on_a_2d_image_points_to_segment_whatever_the_output(tmp_path, png, capsys, out):
    rc = main(["propagate", str(png), "-o", str(tmp_path / out), "--slice", "0", "--box", "1,1,9,9"] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"{png} is a 2D image" in err[0] and "use `medisam segment`" in err[0]


@pytest.mark.parametrize("prompt", [["--box", "100,100,300,300"], ["--box", "100,100,300,300", "--box", "50,50,90,90"],
                                    ["--point", "200,200"], ["--lasso", "100,100,300,100,300,300"]],
                         ids=["box", "two boxes", "point", "lasso"])
def test_segment_a_2d_image_with_sam2(_sam2, tmp_path, png, capsys, prompt):
    out = tmp_path / "m.png"
    assert main(["segment", str(png), "-o", str(out), *prompt] + SAM2) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    from medisam.io.label_png import read_label_map

    labels = read_label_map(out)
    assert labels.shape == (512, 512) and int(labels.max()) <= prompt.count("--box") + 1


def test_segment_a_volume_slice_with_sam2(_sam2, tmp_path, nifti):
    out = tmp_path / "m.nii.gz"
    assert main(["segment", str(nifti), "-o", str(out), "--slice", "2", "--box", "8,6,20,18"] + SAM2) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert labels.shape == (5, 24, 28) and not np.delete(labels, 2, axis=0).any()


def test_segment_with_sam2_is_the_servers_2d_session_scribble_and_lasso_included(_sam2, tmp_path, png, sam2_tiny):
    """SAM 2 on a 2D image goes through sam2's image predictor on every surface (``open_predictor``): the CLI's
    box + scribble correction (refused before: a one-frame session has no walker), and a lasso with a box
    (refused before: a SAM 2 mask prompt replaced the box), give the server's and web UI's masks."""
    from medisam.io import read_image
    from medisam.io.label_png import read_label_map
    from medisam.serve.interactive import InteractiveSession

    session = InteractiveSession(sam2_tiny, read_image(png))
    session.segment(None, box=(100, 100, 300, 300))
    session.add_scribble(None, [(150.0, 150.0), (160.0, 160.0)], True)
    out = tmp_path / "m.png"
    assert main(["segment", str(png), "-o", str(out), "--box", "100,100,300,300",
                 "--scribble", "150,150,160,160"] + SAM2) == 0
    assert np.array_equal(read_label_map(out) > 0, session.labels == 1)
    from medisam.prompting.shapes import lasso_mask

    polygon = [(120.0, 120.0), (280.0, 120.0), (280.0, 280.0)]
    want = session.segment(None, 2, box=(100, 100, 300, 300), mask=lasso_mask(polygon, (512, 512))).mask
    both = tmp_path / "both.png"
    assert main(["segment", str(png), "-o", str(both), "--box", "100,100,300,300",
                 "--lasso", "120,120,280,120,280,280"] + SAM2) == 0
    assert np.array_equal(read_label_map(both) > 0, want)
