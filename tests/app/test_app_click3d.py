"""Web UI logic: after propagation a click on any slice corrects the 3D result (add_click), undo takes
it back, a rejected click is one line; RECIST mode's two endpoints -> the lesion's 3D box (tiny model)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_data import ct_volume  # noqa: E402

from medisam.app import AppState  # noqa: E402


@pytest.fixture()
def vol_state(tiny_model, tmp_path):
    import SimpleITK as sitk

    path = tmp_path / "ct.nii.gz"
    img = sitk.GetImageFromArray(ct_volume((8, 48, 48)))
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))
    st = AppState(tiny_model)
    st.open(path)
    yield st
    st.close()


def _reference(st: AppState, box3d):
    from medisam.serve.interactive import InteractiveSession

    ref = InteractiveSession(st.model, st.session.image)
    ref.add_box3d(box3d)
    ref.propagate()
    return ref


def test_click_after_propagation_is_a_3d_correction_and_undo_restores(vol_state):
    st = vol_state
    st.set_slice_range("2,5")
    st.click(12, 12)
    st.click(35, 35)
    st.mode = "positive"
    assert not st.propagated
    plan = st.session.plan_lines()
    assert len(plan) == 1 and plan[0].startswith("object 1: 3D box plan: ")
    st.propagate()
    assert st.propagated
    assert st.plan == plan and st.message.startswith("propagated: ") and st.message.endswith(plan[0])
    before = st.session.labels.copy()
    ref = _reference(st, (12, 12, 2, 35, 35, 5))
    assert np.array_equal(before, ref.labels)
    st.mode = "negative"
    st.set_slice(4)  # not the seed slice
    st.click(24, 24)
    expected = ref.add_click((4, 24, 24), positive=False)
    if expected.rejected:
        pytest.skip("the tiny random model did not honour this click")
    assert st.message.startswith("3D negative click on slice 4") and "changed on" in st.message
    assert np.array_equal(st.session.labels, ref.labels)  # the library's 3D click, nothing else
    assert not np.array_equal(st.session.labels, before)
    assert st.points == [(24.0, 24.0, 0)] and st.render() is not None
    st.undo()
    assert st.message == "3D click undone" and np.array_equal(st.session.labels, before)
    assert st.propagated  # the next click corrects in 3D again
    st.undo()  # the 3D box itself
    assert not st.session.labels.any() and not st.propagated


def test_before_propagation_a_click_adds_a_point_on_the_slice(vol_state):
    st = vol_state
    st.mode = "positive"
    st.click(24, 24)
    assert "object 1 on slice 4" in st.message
    assert st.session.volume.slice_prompts(4, 1).points is not None


def test_rejected_click_is_one_line_and_changes_nothing(vol_state, monkeypatch):
    from medisam.predict.refine3d import ClickOutcome

    st = vol_state
    st.set_slice_range("2,5")
    st.click(12, 12)
    st.click(35, 35)
    st.propagate()
    before = st.session.labels.copy()
    steps = st.session.can_undo
    monkeypatch.setattr(type(st.session), "add_click", lambda self, zyx, positive, obj_id: ClickOutcome(
        zyx[0], (zyx[2], zyx[1], int(positive)), 2, 0, rejected=True, undo_steps=0))
    st.mode = "positive"
    st.click(40, 6)
    assert st.message == "click rejected: the model did not honour the positive click at (40, 6) on slice 4; " \
                         "nothing changed"
    assert np.array_equal(st.session.labels, before) and st.session.can_undo == steps and st.points == []


def test_click_outside_the_object_range_is_an_error_not_a_change(vol_state):
    from medisam.errors import PromptError

    st = vol_state
    st.set_slice_range("2,5")
    st.click(12, 12)
    st.click(35, 35)
    st.propagate()
    st.set_slice(7)
    st.mode = "positive"
    with pytest.raises(PromptError, match="outside object 1's slice range"):
        st.click(24, 24)


def test_recist_mode_two_endpoints_make_the_lesion_3d_box(vol_state):
    from medisam.prompting.shapes import recist_to_box3d

    st = vol_state
    st.mode = "recist"
    st.set_slice(4)
    before = st.render().copy()
    st.click(14, 24)
    assert "RECIST line end" in st.message and st.pending_corner == (14.0, 24.0)
    st.click(33, 24)
    line = (14.5, 24.5, 33.5, 24.5)
    assert st.lines[1] == (line, 4)
    b3 = recist_to_box3d(line, 4, (8, 48, 48), (2.0, 1.0, 1.0))
    ref = _reference(st, (b3.x0, b3.y0, b3.z0, b3.x1, b3.y1, b3.z1))
    st.propagate()
    assert np.array_equal(st.session.labels, ref.labels)
    labelled = np.nonzero(st.session.labels.reshape(8, -1).any(1))[0]
    assert labelled.size == 0 or (b3.z0 <= labelled.min() and labelled.max() <= b3.z1)
    shown = st.render()
    assert (np.abs(shown.astype(int) - before.astype(int)).sum(-1) > 0).any()  # the line is drawn


def test_scribble_and_lasso_modes_apply_on_finish(vol_state):
    from medisam.errors import InputError
    from medisam.prompting.shapes import lasso_mask
    from medisam.serve.interactive import InteractiveSession

    st = vol_state
    with pytest.raises(InputError, match="scribble"):
        st.finish_shape()
    st.mode = "scribble+"
    before = st.render().copy()
    for x, y in ((16, 20), (28, 20), (28, 30)):
        st.click(x, y)
    assert "3 vertices" in st.message and not st.session.labels.any()
    assert (np.abs(st.render().astype(int) - before.astype(int)).sum(-1) > 0).any()  # drawn while pending
    st.finish_shape()
    ref = InteractiveSession(st.model, st.session.image)
    ref.add_scribble(4, [(16.5, 20.5), (28.5, 20.5), (28.5, 30.5)], True, 1)
    assert np.array_equal(st.session.labels, ref.labels) and st.vertices == []
    st.obj_id = 2
    st.mode = "lasso"
    for x, y in ((6, 6), (20, 6), (20, 16), (6, 16)):
        st.click(x, y)
    st.finish_shape()
    square = [(6.5, 6.5), (20.5, 6.5), (20.5, 16.5), (6.5, 16.5)]
    ref_after_scribble = ref.labels.copy()
    ref.add_lasso(4, square, 2)
    assert np.array_equal(st.session.labels, ref.labels) and "lasso on slice 4" in st.message
    drawn = lasso_mask(square, (48, 48))
    assert ((st.session.labels_slice(4) == 2) <= drawn).all() and (st.session.labels_slice(4) == 2).any()
    st.undo()
    assert not (st.session.labels == 2).any()
    assert np.array_equal(st.session.labels, ref_after_scribble)


def test_a_scribble_on_an_object_corrects_its_propagated_result_in_one_undo_step(vol_state):
    """A scribble on an object that has a mask runs the pending propagation, then corrects the 3D
    result as 3D clicks (the server's add_scribble); one undo takes the correction back, not the
    propagation."""
    from medisam.serve.interactive import InteractiveSession

    st = vol_state
    st.mode = "lasso"
    for x, y in ((6, 6), (20, 6), (20, 16), (6, 16)):
        st.click(x, y)
    st.finish_shape()
    assert not st.propagated
    st.mode = "scribble-"  # on object 1, which has a mask: it corrects
    for x, y in ((8, 8), (18, 14)):
        st.click(x, y)
    st.finish_shape()
    assert "corrected" in st.message and st.propagated
    ref = InteractiveSession(st.model, st.session.image)
    ref.add_lasso(4, [(6.5, 6.5), (20.5, 6.5), (20.5, 16.5), (6.5, 16.5)], 1)
    ref.propagate()
    propagated = ref.labels.copy()
    ref.add_scribble(4, [(8.5, 8.5), (18.5, 14.5)], False, 1)
    assert np.array_equal(st.session.labels, ref.labels)
    st.undo()
    assert st.message == "3D click undone" and np.array_equal(st.session.labels, propagated)


def test_a_guide_channel_is_added_checked_and_seen_by_3d_clicks(vol_state, tmp_path):
    import SimpleITK as sitk

    from medisam.errors import InputError

    good, bad = tmp_path / "t1c.nii.gz", tmp_path / "small.nii.gz"
    for path, shape in ((good, (8, 48, 48)), (bad, (8, 48, 40))):
        img = sitk.GetImageFromArray(np.flip(ct_volume(shape), axis=2).copy())
        img.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(img, str(path))
    with pytest.raises(InputError, match="guide 0 has shape"):
        vol_state.add_guide(bad)
    assert vol_state.session.guides == 0
    vol_state.add_guide(good)
    assert "2 channels" in vol_state.message and vol_state.session.volume.guides == 1
    vol_state.set_window("lung")  # the session is re-opened for the window: the guide stays
    assert vol_state.session.volume.guides == 1


@pytest.mark.parametrize("search", [True, False])
def test_a_click_on_a_new_object_shows_the_box_it_was_answered_with(vol_state, search):
    st = vol_state
    st.session.predictor.box_search = search  # LiteMedSAM's default; the tiny model answers points itself
    st.mode = "positive"
    st.set_slice(4)
    st.click(24, 24)
    found = st.session.found_box(4, 1)
    assert (found is not None) is search
    assert ("answered with the box" in st.message) is search
    if search:
        assert st.boxes[1] == (found, 4, 4)  # drawn on the seed slice, as a drawn box is
        assert st.message.endswith(f"answered with the box {','.join(f'{v:.0f}' for v in found)} found around "
                                   "the click")
    else:
        assert 1 not in st.boxes
    assert st.render() is not None


def test_undo_takes_back_the_boxes_and_clicks_drawn_with_the_step(vol_state):
    st = vol_state
    st.session.predictor.box_search = True  # LiteMedSAM's default: a click alone is answered with a found box
    st.set_slice(4)
    st.mode = "box"
    st.click(14, 14)
    st.click(33, 33)
    first = st.boxes[1]
    st.mode = "positive"
    st.click(24, 24)  # a click added to the box: the box stays drawn
    assert st.boxes[1] == first and st.points == [(24.0, 24.0, 1)]
    st.mode = "box"
    st.click(10, 10)
    st.click(36, 36)  # a new box replaces the slice's prompts, the click with them
    assert st.boxes[1] != first and st.points == []
    st.undo()  # the second box goes: the first box and the click come back
    assert st.boxes[1] == first and st.points == [(24.0, 24.0, 1)]
    st.undo()
    assert st.boxes[1] == first and st.points == []
    st.undo()
    assert st.boxes == {} and st.message == "undone"
    st.mode = "positive"
    st.click(24, 24)  # a new object's click: the box found around it is drawn, and goes with it
    assert 1 in st.boxes
    st.set_slice(5)
    st.undo()
    assert st.boxes == {} and st.points == []  # clicks of another slice are not shown here
