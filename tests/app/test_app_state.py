"""The web UI's logic (AppState) without a browser, on the tiny random model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_data import ct_volume, disk, png_bytes, write_ct_series, zip_bytes  # noqa: E402

from medisam.errors import InputError  # noqa: E402
from medisam.io import MedicalImage, read_image  # noqa: E402
from medisam.predict import Predictor  # noqa: E402
from medisam.predict.segment import segment_image  # noqa: E402


def _write_nifti(path: Path, array: np.ndarray, spacing=(0.8, 0.8, 2.5)) -> Path:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin((5.0, -7.0, 11.0))
    sitk.WriteImage(img, str(path))
    return path


def test_two_clicks_make_a_box_and_match_the_library(state, tiny_model, tmp_path):
    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(disk()))
    state.open(png)
    assert state.view_scale == 6 and state.render().shape == (576, 576, 3)
    state.click(20, 22)
    assert state.pending_corner == (20.0, 22.0) and "corner" in state.message
    assert not state.session.labels.any()
    state.click(75, 74)
    expected = segment_image(Predictor(tiny_model), read_image(png), [(20, 22, 76, 75)]).array > 0
    assert np.array_equal(state.session.labels > 0, expected)
    out = state.export()
    assert out.suffix == ".png" and np.array_equal(read_image(out).array > 0, expected)
    state.mode = "negative"
    state.click(48, 48)  # a corrective click on the box's mask: the random walker (predict.refine2d)
    assert state.points == [(48.0, 48.0, 0)] and "negative click: object 1 refined" in state.message
    assert state.session.labels[48, 48] == 0 and not (state.session.labels > expected).any()  # it only removes
    state.undo()
    assert np.array_equal(state.session.labels > 0, expected) and state.message == "click undone"


def test_clicks_before_open_and_bad_files_fail_cleanly(state, tmp_path):
    with pytest.raises(InputError, match="open an image first"):
        state.click(1, 1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError):
        state.open(bad)
    evil = tmp_path / "evil.zip"
    evil.write_bytes(zip_bytes({"../x.dcm": b"x"}))
    with pytest.raises(InputError, match="parent-relative"):
        state.open(evil)


def test_volume_slice_box_propagate_undo_and_nifti_export(state, tmp_path):
    vol = ct_volume()
    state.open(_write_nifti(tmp_path / "ct.nii.gz", vol))
    assert state.slice == 3 and state.session.image.is_volume
    state.set_window("abdomen")
    state.set_slice(3)
    state.click(10, 10)
    state.click(38, 38)
    seed = state.session.labels_slice(3)
    if not seed.any():
        pytest.skip("tiny random model gave an empty seed mask")
    state.propagate()
    labels = state.session.labels
    assert np.array_equal(labels[3], seed) and "propagated" in state.message
    out = state.export()
    assert out.name == "ct_mask.nii.gz"
    back = read_image(out)
    assert np.array_equal(back.array, labels)
    assert back.spacing == pytest.approx((0.8, 0.8, 2.5)) and back.origin == pytest.approx((5.0, -7.0, 11.0))
    state.undo()  # undoes the box (propagation adds no prompt)
    assert not state.session.labels.any()
    with pytest.raises(InputError, match="out of range"):
        state.set_slice(99)


def test_zipped_dicom_exports_dicom_seg(state, tmp_path):
    pytest.importorskip("highdicom")
    pydicom = pytest.importorskip("pydicom")
    files = write_ct_series(tmp_path / "s", ct_volume())
    z = tmp_path / "series.zip"
    z.write_bytes(zip_bytes({f"dir/{p.name}": p.read_bytes() for p in files}))
    state.open(z)
    assert state.mask_extension() == ".dcm"
    state.session.segment(3, 1, mask=np.pad(np.ones((10, 10), bool), ((19, 19), (19, 19))))
    seg = pydicom.dcmread(state.export())
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == 1


def test_interactive_volume_undo_is_one_step_per_action(tiny_model):
    from medisam.serve import InteractiveSession

    s = InteractiveSession(tiny_model, MedicalImage.from_array(ct_volume()))
    s.segment(2, 1, box=(10, 10, 38, 38), points=[(24, 24, 1)])  # box + points = one action
    s.segment(2, 1, box=(12, 12, 36, 36))  # replaces the prompts on slice 2
    assert s.can_undo == 2
    assert s.volume.object_state(1).seeds[2].points is None
    s.undo()
    assert s.volume.object_state(1).seeds[2].points is not None
    s.undo()
    assert s.object_ids == [] and s.undo() is False


def test_a_2d_scribble_honouring_none_of_its_clicks_is_refused_and_kept_drawn(state, tmp_path, monkeypatch):
    """A 2D scribble whose clicks the walker honours none of changed nothing: it is refused in one
    line, pushes no undo step (the next undo takes back the box, as "undone"), and stays drawn."""
    import medisam.serve.interactive as interactive
    from medisam.errors import PromptError

    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(disk()))
    state.open(png)
    state.click(20, 22)
    state.click(75, 74)
    boxed, steps = state.session.labels.copy(), state.session.can_undo
    state.mode = "scribble+"
    for x, y in ((30, 30), (60, 60)):
        state.click(x, y)
    drawn = list(state.vertices)
    honoured = interactive.correct_2d
    monkeypatch.setattr(interactive, "correct_2d", lambda *args, **kwargs: None)
    with pytest.raises(PromptError, match="scribble changed nothing"):
        state.finish_shape()
    assert np.array_equal(state.session.labels, boxed) and state.session.can_undo == steps
    assert state.vertices == drawn
    monkeypatch.setattr(interactive, "correct_2d", honoured)
    state.finish_shape()
    assert "corrected around it" in state.message and state.vertices == []
    assert state.session.can_undo == steps + 1
    state.undo()
    assert state.message == "click undone" and np.array_equal(state.session.labels, boxed)
    state.undo()
    assert state.message == "undone" and not state.session.labels.any()


def test_download_before_any_prompt_says_nothing_is_segmented(state, tmp_path):
    """Before: an all-zero mask was written and the status read "mask saved as ...". """
    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(disk()))
    state.open(png)
    with pytest.raises(InputError, match="nothing segmented yet"):
        state.export()
    state.click(20, 22)
    state.click(75, 74)
    assert state.export().is_file()


def test_a_click_event_without_its_position_is_one_status_line(state, tiny_model, tmp_path):
    """The picture's select handler called without click data (an API client): one line, not a traceback."""
    pytest.importorskip("gradio")
    from medisam.app import build_ui

    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(disk()))
    state.open(png)
    demo = build_ui(tiny_model)
    on_click = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_click")
    st, _view, status = on_click(state, "box", 1, None)
    assert st is state and status == "error: a click needs its position on the picture"
    assert state.pending_corner is None
