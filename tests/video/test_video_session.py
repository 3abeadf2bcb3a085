"""VideoSession and propagate_video on a synthetic MP4 (tiny models) and the GOWT1 sequence (real weights)."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import InputError, OutputExistsError
from medisam.io import read_image
from medisam.metrics_basic import dice
from medisam.predict.video import VideoSession, propagate_video
from medisam.prompts import Box


def test_video_session_with_litemedsam_tiny_tracks_every_frame(tiny_model, disk_mp4):
    path, masks = disk_mp4
    video = read_image(path)
    session = VideoSession(tiny_model, video)
    first = session.add_box(3, Box.from_mask(masks[3], margin=2), obj_id=2)
    assert first.mask.shape == (64, 96) and first.slice == 3
    labels = session.propagate(progress=False)
    assert labels.is_video and labels.kind == "labels" and labels.array.shape == (5, 64, 96)
    assert set(np.unique(labels.array)) <= {0, 2}
    with pytest.raises(InputError, match="frame 5 out of range"):
        session.add_box(5, (1, 1, 5, 5))


def test_video_session_with_sam2_tiny_on_colour_frames(disk_frames):
    pytest.importorskip("sam2")
    from medisam.models import load_model

    frames, masks = disk_frames
    frames = frames.copy()
    frames[..., 0] = 0  # colour video
    model = load_model("sam2-tiny", device="cpu")
    session = VideoSession(model, frames[:4])
    session.add_points(0, [(24, 32, 1)], obj_id=9)
    assert session.planned_slices("forward") == 4
    results = list(session.iter_propagate("forward"))
    assert [r.slice for r in results] == [0, 1, 2, 3]
    session.add_box(2, (20, 20, 50, 44), obj_id=9)
    session.clear_frame(2, obj_id=9)
    assert session.object_ids == [9]
    assert session.label_map().array.shape == (4, 64, 96)


def test_colour_frames_with_volume_session_keep_colour(tiny_model, disk_frames):
    frames, masks = disk_frames
    session = VideoSession(tiny_model, frames[:2] * np.array([1, 0, 1], np.uint8))
    display = session.session.plane_display(0)
    assert display.shape == (64, 96, 3) and display[..., 1].max() == 0 and display[..., 0].max() == 210
    session.add_box(0, Box.from_mask(masks[0], margin=2))
    assert session.propagate(progress=False).array.shape == (2, 64, 96)


def test_propagate_video_writes_frames_and_overlay(tmp_path, tiny_model, disk_mp4):
    path, masks = disk_mp4
    video = read_image(path)
    out = propagate_video(video, tiny_model, frame=0, box=Box.from_mask(masks[0], margin=2), points=None,
                          obj_id=1, output=tmp_path / "masks", overlay=tmp_path / "ov.mp4", force=False)
    assert out == tmp_path / "masks" and len(list(out.glob("*.png"))) == 5
    assert read_image(tmp_path / "ov.mp4").num_slices == 5
    with pytest.raises(OutputExistsError):
        propagate_video(video, tiny_model, 0, (1, 1, 9, 9), None, 1, tmp_path / "masks", None, False)
    short = video.with_array(video.array[:2])
    npz = propagate_video(short, tiny_model, 0, (1, 1, 9, 9), [(5, 5, 1)], 1, tmp_path / "m.npz", None, False)
    assert np.load(npz)["segs"].shape == (2, 64, 96)
    for output, frame, match in ((tmp_path / "m.mp4", 0, "lossy"), (tmp_path / "x", 99, "out of range"),
                                 (path, 0, "lossy")):
        with pytest.raises(InputError, match=match):
            propagate_video(video, tiny_model, frame, (1, 1, 9, 9), None, 1, output, None, False)
    with pytest.raises(InputError, match="2D image"):
        propagate_video(read_image(out / "00000.png"), tiny_model, 0, (1, 1, 9, 9), None, 1,
                        tmp_path / "y", None, False)


@pytest.mark.real_weights
def test_litemedsam_tracks_a_gowt1_nucleus(real_model, gowt1):
    """Track nucleus 3 of the CTC GOWT1 sequence from a box on frame 0 over 3 frames (TRA markers as truth)."""
    video, tracks = gowt1
    truth = tracks[:3]
    session = VideoSession(real_model, video.with_array(video.array[:3]))
    session.add_box(0, Box.from_mask(truth[0] == 3, margin=3), obj_id=3)
    labels = session.propagate(direction="forward", progress=False).array
    scores = [dice(labels[t] == 3, truth[t] == 3) for t in range(3)]
    assert np.mean(scores) > 0.8, scores
