"""``medisam propagate`` on an MP4 and a DICOM cine with two objects, the second appearing later (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.cli import main
from medisam.io import read_image
from medisam.cli.propagate_cmd import parse_track
from tests.video_clips import APPEARS, BOX1, BOX2, FPS, write_two_disks

TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--no-progress"]


@pytest.fixture(params=["mp4", "dicom-cine"])
def two_disks(tmp_path, request):
    """A 12.5 fps clip of two disks, the second appearing on frame 3: MP4 or DICOM cine."""
    return write_two_disks(tmp_path, request.param)


def test_cli_tracks_two_objects_one_appearing_later(tmp_path, two_disks, capsys):
    path, truth = two_disks
    out, overlay = tmp_path / "masks", tmp_path / "tracked.mp4"
    rc = main(["propagate", str(path), "--slice", "0", "--box", "10,10,30,30", "--track", "3:61,36,79,54",
               "-o", str(out), "--overlay", str(overlay)] + TINY)
    assert rc == 0
    # the cost before the work with --no-progress too, as for volumes (a video printed nothing)
    assert "tracking 2 object(s) over 6 frame(s)" in capsys.readouterr().err
    labels = read_image(out).array
    assert labels.shape == truth.shape and set(np.unique(labels)) <= {0, 1, 2}
    assert not (labels[:3] == 2).any()  # object 2 is prompted on frame 3 and tracked forward only
    assert (labels[3] == 2).any()
    tracked = read_image(overlay)
    assert tracked.num_slices == 6 and tracked.source.get("fps") == pytest.approx(12.5)



@pytest.mark.real_weights
@pytest.mark.slow
def test_cli_real_model_tracks_both_objects_and_keeps_the_frame_rate(tmp_path, two_disks):
    """LiteMedSAM: object 1 boxed on frame 0, object 2 (``--track``) on frame 3 where it appears."""
    from medisam.metrics_basic import dice

    path, truth = two_disks
    out, overlay = tmp_path / "masks", tmp_path / "tracked.mp4"
    box1, box2 = ",".join(map(str, BOX1)), ",".join(map(str, BOX2))
    rc = main(["propagate", str(path), "--slice", "0", "--box", box1, "--track", f"{APPEARS}:{box2}",
               "-o", str(out), "--overlay", str(overlay), "--model", "litemedsam", "--device", "cpu",
               "--no-progress"])
    assert rc == 0
    labels = read_image(out).array
    assert not (labels[:APPEARS] == 2).any()
    for obj, frames in ((1, range(len(truth))), (2, range(APPEARS, len(truth)))):
        scores = [dice(labels[t] == obj, truth[t] == obj) for t in frames]
        assert min(scores) > 0.85, (obj, scores)
    tracked = read_image(overlay)
    assert tracked.num_slices == len(truth) and tracked.source.get("fps") == pytest.approx(FPS)


def test_cli_track_errors(tmp_path, two_disks, monkeypatch, capsys):
    """Each is one line, before the model loads (they came after it: frame, box, label)."""
    from medisam.cli import common

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the --track check")

    monkeypatch.setattr(common, "load", no_model)
    path, _ = two_disks
    base = ["propagate", str(path), "--slice", "0", "--box", "10,10,30,30", "-o", str(tmp_path / "m")] + TINY
    for track, said in [("3:61,36,79", "must be FRAME:x0,y0,x1,y1"),
                        ("3:61,36,79,54:1", "object 1 is prompted twice"),  # label 1 is the --box object
                        ("9:61,36,79,54", "frame 9 out of range"),
                        ("2:41,19,300,32", "reaches outside"),
                        ("2:55,19,41,32", "inverted"),
                        ("2:41,19,55,32:0", "the label must be 1..65535")]:
        assert main(base + ["--track", track]) == 2
        assert said in capsys.readouterr().err
    assert main(base + ["--track", "2:41,19,55,32", "--track", "3:41,19,55,32:2"]) == 2  # 2 went to the first
    assert "object 2 is prompted twice" in capsys.readouterr().err
    assert parse_track("4:1,2,3,4:7") == (4, [1.0, 2.0, 3.0, 4.0], 7)


def test_rerun_with_overlay_needs_force_and_works_with_it(tmp_path, two_disks, capsys):
    """The README command run twice: ``-o masks/ --overlay tracked.mp4``; the rerun fails in one
    line without --force (nothing touched) and succeeds with it."""
    path, _ = two_disks
    out, overlay = tmp_path / "masks", tmp_path / "tracked.mp4"
    args = ["propagate", str(path), "--slice", "0", "--box", "10,10,30,30", "-o", f"{out}/",
            "--overlay", str(overlay)] + TINY
    assert main(args) == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 6 and overlay.is_file()
    before = {p: p.stat().st_mtime_ns for p in [overlay, *frames]}
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err, err
    assert {p: p.stat().st_mtime_ns for p in [overlay, *frames]} == before
    assert main(args + ["--force"]) == 0
    assert "wrote" in capsys.readouterr().out and len(list(out.glob("*.png"))) == 6
    assert read_image(overlay).num_slices == 6
    only_overlay = tmp_path / "other"  # a new mask folder, the old overlay: --overlay is named
    assert main(args[:6] + ["-o", str(only_overlay), "--overlay", str(overlay)] + TINY) == 2
    assert "--overlay" in capsys.readouterr().err


def test_info_on_a_folder_of_frames(tmp_path, capsys):
    """A folder of frames has no frame rate: `info` says so (it was a TypeError traceback)."""
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        Image.fromarray(np.full((16, 20), 40 * t, np.uint8)).save(folder / f"t{t:03d}.png")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "frame rate" in out and "unknown (a folder of frames)" in out


def test_cli_says_where_a_track_ended(tmp_path, two_disks, monkeypatch, capsys):
    """A track that ends is said after the files (the rule is forced: the tiny model's masks are noise)."""
    import medisam.predict.tracking as tracking

    monkeypatch.setattr(tracking, "is_lost", lambda look, recent, config: True)  # every object lost when tracked
    path, _ = two_disks
    out = tmp_path / "masks"
    assert main(["propagate", str(path), "--slice", "0", "--box", "10,10,30,30", "--track", "3:61,36,79,54",
                 "-o", str(out)] + TINY) == 0
    said = capsys.readouterr().out
    assert "object 1 lost (no longer seen) at frame 1, last seen around x=" in said, said
    assert "object 2 lost (no longer seen) at frame 4" in said
    labels = read_image(out).array
    assert not (labels[1:] == 1).any() and not (labels[4:] == 2).any()


def _frame_folder(folder, frames: np.ndarray):
    from PIL import Image

    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{t:03d}.png")
    return folder


@pytest.mark.parametrize("kind", ["mp4", "frames"])
def test_segment_one_frame_of_a_video_to_png(tmp_path, kind, capsys):
    """``segment clip.mp4 --slice 4 -o m.png`` writes that frame's 2D mask (a PNG was refused: "the input
    is a volume"); a missing or wrong --slice is said in frames."""
    from tests.video_clips import two_disks as truth_of

    truth = truth_of()
    path = write_two_disks(tmp_path)[0] if kind == "mp4" else _frame_folder(
        tmp_path / "frames", np.where(truth > 0, 210, 30).astype(np.uint8))
    out = tmp_path / "m.png"
    args = ["segment", str(path), "--box", ",".join(map(str, BOX2)), "-o", str(out)] + TINY[:4]
    assert main(args + ["--slice", "4"]) == 0
    assert "on frame 4" in capsys.readouterr().out
    mask = read_image(out).array
    assert mask.shape == truth.shape[1:] and mask.any()
    assert main(args + ["--force"]) == 2
    err = capsys.readouterr().err
    assert "video of 6 frames" in err and "--slice 0..5" in err and "volume" not in err, err
    assert main(args + ["--force", "--slice", "6"]) == 2
    assert "has 6 frames (0..5)" in capsys.readouterr().err
