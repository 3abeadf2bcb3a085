"""``medisam propagate`` on an MP4 and a DICOM cine with two objects, the second appearing later (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.cli import main
from medisam.io import read_image
from medisam.io.video import write_video
from medisam.cli.propagate_cmd import parse_track

TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--no-progress"]


def write_cine(grey: np.ndarray, path, fps: float):
    """``(T, Y, X)`` uint8 frames as a multi-frame ultrasound DICOM (cine loop, FrameTime in ms)."""
    from pydicom.uid import UltrasoundMultiFrameImageStorage, generate_uid

    from tests.dicom_factory import new_instance

    ds = new_instance(UltrasoundMultiFrameImageStorage)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Test^Patient", "P1", "US"
    ds.NumberOfFrames, ds.FrameTime = grey.shape[0], 1000.0 / fps
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    ds.Rows, ds.Columns = grey.shape[1], grey.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(grey, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(params=["mp4", "dicom-cine"])
def two_disks(tmp_path, request):
    """A 12.5 fps clip of two disks, the second appearing on frame 3: MP4 or DICOM cine."""
    t, h, w = 6, 64, 96
    yy, xx = np.mgrid[:h, :w]
    truth = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        truth[i][(yy - 20) ** 2 + (xx - 20 - 4 * i) ** 2 <= 9 ** 2] = 1
        if i >= 3:
            truth[i][(yy - 45) ** 2 + (xx - 70) ** 2 <= 8 ** 2] = 2
    grey = np.where(truth > 0, 210, 30).astype(np.uint8)
    if request.param == "dicom-cine":
        return write_cine(grey, tmp_path / "cine.dcm", fps=12.5), truth
    return write_video(np.repeat(grey[..., None], 3, axis=-1), tmp_path / "clip.mp4", fps=12.5), truth


def test_cli_tracks_two_objects_one_appearing_later(tmp_path, two_disks):
    path, truth = two_disks
    out, overlay = tmp_path / "masks", tmp_path / "tracked.mp4"
    rc = main(["propagate", str(path), "--slice", "0", "--box", "10,10,30,30", "--track", "3:61,36,79,54",
               "-o", str(out), "--overlay", str(overlay)] + TINY)
    assert rc == 0
    labels = read_image(out).array
    assert labels.shape == truth.shape and set(np.unique(labels)) <= {0, 1, 2}
    assert not (labels[:3] == 2).any()  # object 2 is prompted on frame 3 and tracked forward only
    assert (labels[3] == 2).any()
    tracked = read_image(overlay)
    assert tracked.num_slices == 6 and tracked.source.get("fps") == pytest.approx(12.5)


def test_cli_track_errors(tmp_path, two_disks):
    path, _ = two_disks
    base = ["propagate", str(path), "--slice", "0", "--box", "10,10,30,30", "-o", str(tmp_path / "m")] + TINY
    assert main(base + ["--track", "3:61,36,79"]) == 2
    assert main(base + ["--track", "3:61,36,79,54:1"]) == 2  # label 1 is the --box object
    assert main(base + ["--track", "9:61,36,79,54"]) == 2  # frame out of range
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
