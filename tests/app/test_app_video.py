"""The web UI's video logic (AppState) without a browser, on the tiny random model: two objects,
the second boxed on the frame where it appears, tracked forward; masks and overlay downloads."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from medisam.app import AppState
from medisam.errors import InputError
from medisam.io import read_image
from tests.video_clips import APPEARS, BOX1, BOX2, FPS, write_two_disks


def _box(st: AppState, box) -> None:
    st.mode = "box"
    st.click(box[0], box[1])
    st.click(box[2] - 1, box[3] - 1)


@pytest.mark.parametrize("kind", ["mp4", "dicom-cine"])
def test_two_objects_one_appearing_later_track_forward_and_download(state, tmp_path, kind, monkeypatch):
    # the page's plumbing, not tracking quality: the random model's noise masks would rightly be ended as lost
    monkeypatch.setattr("medisam.predict.tracking.is_lost", lambda *a: False)
    path, truth = write_two_disks(tmp_path, kind)
    state.open(path)
    assert state.is_video and state.direction == "forward" and state.slice == 0
    assert state.message.startswith("opened video") and f"{len(truth)} frames at 12.5 fps" in state.message
    _box(state, BOX1)
    assert state.message.startswith("object 1 on frame 0")
    state.set_slice(APPEARS)
    state.obj_id = 2
    _box(state, BOX2)
    assert state.message.startswith(f"object 2 on frame {APPEARS}")
    state.propagate()
    assert state.message.startswith("propagated") and "frames" in state.message
    labels = state.session.labels
    assert labels.shape == truth.shape
    assert not (labels[:APPEARS] == 2).any()  # object 2 starts where it was boxed
    assert (labels[APPEARS] == 2).any() and (labels[0] == 1).any()
    assert (labels[1:] > 0).reshape(len(truth) - 1, -1).any(axis=1).all()  # tracked beyond the prompts

    masks = state.export()  # auto: zipped PNG label frames
    assert masks.suffix == ".zip"
    with zipfile.ZipFile(masks) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        assert len(names) == len(truth)
        z.extractall(tmp_path / "unzipped")
    frames = read_image(tmp_path / "unzipped" / names[0].split("/")[0]).array
    assert np.array_equal(frames, labels)
    npz = state.export(".npz")
    assert np.array_equal(np.load(npz)["segs"], labels)

    overlay = state.export_overlay()
    video = read_image(overlay)
    assert overlay.suffix == ".mp4" and video.num_slices == len(truth)
    assert video.source["fps"] == pytest.approx(FPS)


def test_video_only_choices_fail_cleanly_elsewhere(state, tmp_path):
    from tests.app.test_app_state import _write_nifti

    path, _ = write_two_disks(tmp_path)
    state.open(path)
    with pytest.raises(InputError, match="direction must be one of"):
        state.set_direction("sideways")
    state.set_direction("both")
    assert state.direction == "both"
    with pytest.raises(InputError, match="masks download as"):
        state.export(".png")
    state.open(_write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 16, 16), np.int16)))
    assert not state.is_video and state.direction == "both"
    with pytest.raises(InputError, match="is for videos"):
        state.set_direction("forward")
    with pytest.raises(InputError, match="is for videos"):
        state.export(".zip")
    with pytest.raises(InputError, match="overlay video is for videos"):
        state.export_overlay()
