"""A Sam2Session's undo (and a failed step's rollback) gives back what the user saw before the undone
step: the propagated slices, the exact label map and sam2's own tracking state. It rebuilt a fresh sam2
state from the prompts and dropped every propagated slice ("propagate again"), so a rejected slice click
cost a second tracking (tiny random-weight SAM 2 on CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.io.medical_image import MedicalImage
from medisam.prompts import Box3D

pytest.importorskip("sam2")


@pytest.fixture()
def tracked(sam2_tiny, moving_disk):
    """A session with two objects propagated over the 6 frames, and its label map."""
    from medisam.predict.sam2_session import Sam2Session

    vol, _ = moving_disk
    session = Sam2Session(sam2_tiny, MedicalImage(vol, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()),
                                                  modality="MR"))
    session.add_box(1, (8, 14, 30, 34), obj_id=1)
    session.add_box(4, (24, 14, 48, 34), obj_id=2)
    return session, session.propagate(progress=False).array.copy()


def test_undo_after_a_propagation_keeps_the_propagated_slices(tracked):
    session, shown = tracked
    before = {obj_id: session.results(obj_id) for obj_id in (1, 2)}
    assert {r.source for r in before[1].values()} == {"prompt", "propagated"}
    session.add_box(2, (20, 10, 40, 30), obj_id=3)  # a new object, not propagated
    session.undo()
    assert session.object_ids == [1, 2] and not session.notices
    np.testing.assert_array_equal(session.label_map().array, shown)
    for obj_id, results in before.items():  # the same results, not recomputed: they share their arrays
        now = session.results(obj_id)
        assert sorted(now) == list(range(6)) and all(now[t] is r for t, r in results.items())


def test_undo_after_a_click_on_a_propagated_volume_gives_back_the_label_map_and_sams_state(tracked):
    """The click on a tracked frame corrects that frame's tracked mask (sam2 feeds its logits back);
    after the undo, the label map is the one before the click, and the same click gives the same mask
    again: sam2's tracked outputs are back too (a fresh state took it as a new prompt frame)."""
    session, shown = tracked
    tracked_mask = session.results(1)[3]
    assert tracked_mask.source == "propagated"
    first = session.add_points(3, [(20, 24, 1)], obj_id=1)
    assert first.area != tracked_mask.area and not np.array_equal(session.label_map().array, shown)
    session.undo()
    np.testing.assert_array_equal(session.label_map().array, shown)
    assert session.results(1)[3] is tracked_mask
    again = session.add_points(3, [(20, 24, 1)], obj_id=1)
    np.testing.assert_array_equal(again.low_res_logits, first.low_res_logits)
    assert again.area == first.area


def test_a_failed_step_gives_back_the_propagated_slices(tracked):
    session, shown = tracked
    kept = session.results(1)[0]
    with pytest.raises(RuntimeError, match="stop"):
        with session.step():
            session.add_points(0, [(20, 24, 0)], obj_id=1)
            session.remove_object(2)
            raise RuntimeError("stop")
    assert session.object_ids == [1, 2] and session.can_undo == 2 and not session.notices
    np.testing.assert_array_equal(session.label_map().array, shown)
    now = session.results(1)[0]
    assert now is kept and now.crop is kept.crop and now.low_res_logits is kept.low_res_logits


def test_snapshots_share_the_results_and_sams_tensors(tracked):
    """An undo step copies dicts, not arrays: the SliceResults and sam2's output tensors come back
    as the very objects the session held."""
    from medisam.predict import sam2_state

    session, _ = tracked
    result = session.results(2)[5]
    output = sam2_state.frame_output(session._state, 2, 5)
    session.remove_object(2)
    assert sam2_state.frame_output(session._state, 2, 5) is None
    session.undo()
    assert session.results(2)[5] is result
    back = sam2_state.frame_output(session._state, 2, 5)
    assert back is not output  # its own dict (sam2 fills a prompt output's memory in place)...
    assert all(back[key] is output[key] for key in ("pred_masks", "maskmem_features", "obj_ptr"))  # ...same tensors


def _boxed_and_propagated(sam2_tiny):  # noqa: ANN001, ANN202
    """A SAM 2 session on a bright box in noise (slices 1-6), its 3D box added and propagated; the label map."""
    from medisam.predict import open_session

    lab = np.zeros((8, 48, 48), np.uint8)
    lab[1:7, 8:24, 10:26] = 1
    vol = (lab * 100 + np.random.default_rng(0).normal(0, 5, lab.shape)).astype(np.float32)
    session = open_session(sam2_tiny, MedicalImage(vol, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()),
                                                   "MR"))
    session.add_box3d(Box3D(10, 8, 1, 25, 23, 6), obj_id=1)
    return session, session.propagate(progress=False).array.copy()


def test_a_rejected_slice_click_does_not_track_again(sam2_tiny):
    """A click the session cannot honour (outside the 3D box that clips the object) is rolled back;
    the rollback dropped the tracked frames, so the click tracked the volume again (a second tracking
    per rejected click in the CVPR25 protocol). Now the rollback gives them back: no tracking."""
    from medisam.predict.refine3d import refine_with_click

    session, shown = _boxed_and_propagated(sam2_tiny)
    runs = []
    propagate = session.iter_propagate
    session.iter_propagate = lambda *a, **k: (runs.append(a), propagate(*a, **k))[1]
    out = refine_with_click(session, (3, 30, 40), True, obj_id=1)
    assert out.rejected and out.undo_steps == 0
    assert runs == [] and out.decoded <= 2  # the click's own decodes (point, then its corrected box) only
    np.testing.assert_array_equal(session.label_map().array, shown)
    assert sorted(session.results(1)) == list(range(1, 7))


def test_a_rejected_click_tracks_again_only_where_the_rollback_lost_slices(sam2_tiny):
    """The fallback for a session whose rollback restarts from its prompts (here a Sam2Session made
    to rebuild, as it did before): the click tracks the volume again, and counts those results."""
    from medisam.predict.refine3d import refine_with_click

    session, shown = _boxed_and_propagated(sam2_tiny)
    session.store.on_rollback = session._rebuild  # drops the tracked slices, as every rollback did
    out = refine_with_click(session, (3, 30, 40), True, obj_id=1)
    assert out.rejected and session.planned_slices() == 6
    assert out.decoded - 6 in (1, 2)  # the click's decodes, and the 6 frames tracked again
    np.testing.assert_array_equal(session.label_map().array, shown)
