"""Sam2Session end to end on CPU with the tiny random-weight SAM 2 (shapes, geometry, ids, directions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.errors import InputError, ModelError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.predict.sam2_frames import NormalisedFrames, display_frames, as_frames
from medisam.predict.sam2_session import Sam2Session
from medisam.predict.contract import paint_order


@pytest.fixture()
def volume(moving_disk):
    vol, masks = moving_disk
    image = MedicalImage(vol, (0.7, 0.8, 2.5), (10.0, -5.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), modality="MR")
    return image, masks


def test_frames_are_normalised_like_sam2(volume):
    image, _ = volume
    img, frames = as_frames(image)
    display = display_frames(img, frames)
    assert len(display) == 6 and display[0].shape == (48, 64) and display[0].dtype == np.uint8
    # one intensity mapping for the whole volume: the disk has the same grey level everywhere
    assert abs(float(display[0][24, 16]) - float(display[5][24, 36])) <= 12
    seq = NormalisedFrames(display, 128)
    x = seq[2]
    assert len(seq) == 6 and tuple(x.shape) == (3, 128, 128) and seq.resized.shape == (6, 128, 128)
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    assert np.allclose(x.numpy() * std + mean, seq.resized[2][None].repeat(3, 0) / 255.0, atol=1e-5)
    colour = NormalisedFrames([np.dstack([display[0]] * 3)], 128)
    assert colour.resized.shape == (1, 128, 128, 3) and torch.equal(colour[0], seq[0])


def test_frames_match_sam2s_own_frame_loader(tmp_path, volume):
    from PIL import Image
    from sam2.utils.misc import _load_img_as_tensor

    image, _ = volume
    display = display_frames(*as_frames(image))
    Image.fromarray(np.dstack([display[1]] * 3)).save(tmp_path / "frame.png")
    ref, h, w = _load_img_as_tensor(str(tmp_path / "frame.png"), 128)
    ref = ref.float()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert (h, w) == (48, 64)
    assert torch.allclose(NormalisedFrames(display, 128)[1], (ref - mean) / std, atol=1e-6)


def test_two_objects_both_directions_keep_geometry_and_ids(sam2_tiny, volume):
    image, masks = volume
    session = Sam2Session(sam2_tiny, image)
    first = session.add_box(2, (16, 14, 42, 34), obj_id=3)
    assert (first.slice, first.obj_id, first.source, first.mask.shape) == (2, 3, "prompt", (48, 64))
    assert first.low_res_logits.shape == (32, 32) and np.isfinite(first.low_res_logits).all()
    assert 0.0 <= first.score <= 1.0
    session.add_points(4, [(32, 24, 1), (5, 5, 0)], obj_id=5)
    assert session.object_ids == [3, 5]

    results = list(session.iter_propagate("both"))
    per_object = {o: sorted(r.slice for r in results if r.obj_id == o) for o in (3, 5)}
    assert per_object == {3: list(range(6)), 5: list(range(6))}
    assert all(np.isfinite(r.low_res_logits).all() and r.mask.shape == (48, 64) for r in results)
    sources = {(r.slice, r.obj_id): r.source for r in results}
    assert sources[(2, 3)] == "prompt" and sources[(4, 5)] == "prompt" and sources[(0, 3)] == "propagated"

    labels = session.label_map()
    assert labels.kind == "labels" and labels.array.shape == (6, 48, 64)
    assert (labels.spacing, labels.origin, labels.direction) == (image.spacing, image.origin, image.direction)
    assert set(np.unique(labels.array)) <= {0, 3, 5}
    sizes = {o: sum(int(r.mask.sum()) for r in session.results(o).values()) for o in (3, 5)}
    top = paint_order(sizes)[-1]  # the smaller object on top, as in VolumeSession
    for t, r in session.results(top).items():
        assert np.array_equal(labels.array[t] == top, r.mask)


def test_forward_and_backward_cover_one_side(sam2_tiny, volume):
    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    session.add_box(3, (20, 14, 46, 34), obj_id=1)
    assert [r.slice for r in session.iter_propagate("forward")] == [3, 4, 5]
    session.reset()
    session.add_box(3, (20, 14, 46, 34), obj_id=1)
    assert [r.slice for r in session.iter_propagate("backward")] == [3, 2, 1, 0]
    assert sorted(session.results(1)) == [0, 1, 2, 3]
    with pytest.raises(InputError, match="direction"):
        next(session.iter_propagate("sideways"))


def test_propagating_again_with_nothing_changed_gives_the_same_masks(sam2_tiny, volume):
    """sam2 used the last run's tracked frames as memory: a second propagation with the same prompts
    gave other masks (MedSAM2: 155 of 51,833 voxels). Each run now tracks from the prompts alone."""
    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    session.add_box(2, (16, 14, 42, 34), obj_id=1)
    session.add_points(4, [(32, 24, 1)], obj_id=2)
    runs = [session.propagate(progress=False).array.copy() for _ in range(3)]
    assert runs[0].any() and all(np.array_equal(runs[0], run) for run in runs[1:])


def test_undo_remove_reset(sam2_tiny, volume):
    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    session.add_box(1, (8, 14, 30, 34), obj_id=1)
    session.add_box(4, (24, 14, 48, 34), obj_id=2)
    session.remove_object(1)
    assert session.object_ids == [2]
    session.undo()
    assert session.object_ids == [1, 2]
    session.undo()
    assert session.object_ids == [1]
    session.reset()
    assert session.object_ids == []
    session.undo()
    assert session.object_ids == [1]
    with pytest.raises(PromptError, match="no object 7"):
        session.remove_object(7)
    assert set(np.unique(session.propagate(progress=False).array)) <= {0, 1}


def test_mask_prompt_and_single_2d_image(sam2_tiny, volume):
    image, masks = volume
    session = Sam2Session(sam2_tiny, MedicalImage.from_array(image.array[2]))
    result = session.add_mask(0, masks[2], obj_id=4)
    assert result.mask.shape == (48, 64)
    labels = session.label_map()
    assert labels.array.shape == (48, 64) and not labels.is_volume
    # a mask prompt is used as the output on its own frame (use_mask_input_as_output_without_sam)
    assert np.array_equal(labels.array == 4, masks[2])


def test_bad_input_gives_one_line_errors(sam2_tiny, tiny_model, volume):
    image, masks = volume
    session = Sam2Session(sam2_tiny, image)
    for call, match in [(lambda: session.add_box(6, (1, 1, 5, 5)), "out of range"),
                        (lambda: session.add_box(-1, (1, 1, 5, 5)), "out of range"),
                        (lambda: session.add_box(0, (1, 1, 99, 5)), "outside"),
                        (lambda: session.add_box(0, (1, 1, 5, 5), obj_id=0), "object id"),
                        (lambda: session.add_mask(0, masks[0][:10]), "does not match"),
                        (lambda: session.undo(), "nothing to undo"),
                        (lambda: next(session.iter_propagate()), "no prompts")]:
        with pytest.raises(InputError, match=match) as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="SAM 2 model"):
        Sam2Session(tiny_model, image)
    with pytest.raises(InputError, match="empty"):
        Sam2Session(sam2_tiny, np.zeros((0, 8, 8), np.float32))


def test_box3d_limits_slices_and_extent_and_clear_slice(sam2_tiny, volume):
    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    first = session.add_box3d((14, 12, 1, 40, 35, 3), obj_id=2)  # x0, y0, z0, x1, y1, z1 inclusive
    assert first.slice == 2 and first.source == "prompt"
    assert session.planned_slices("both") == 3  # slices 1..3 only
    results = list(session.iter_propagate("both"))
    assert sorted(r.slice for r in results) == [1, 2, 3]
    labels = session.label_map().array
    assert not labels[[0, 4, 5]].any()
    assert not labels[:, :12].any() and not labels[:, 36:].any() and not labels[:, :, 41:].any()

    session.add_box(4, (30, 14, 52, 34), obj_id=2)
    session.clear_slice(4, obj_id=2)
    assert 4 not in session.results(2) and session.object_ids == [2]
    session.clear_slice(2, obj_id=2)  # last prompt of the object: the object goes
    assert session.object_ids == []
    session.undo()
    assert session.object_ids == [2]
    with pytest.raises(PromptError, match="no prompt on slice 5"):
        session.clear_slice(5, obj_id=2)


def test_backward_from_frame_zero_keeps_the_prompt_frame(sam2_tiny, volume):
    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    session.add_box(0, (8, 14, 30, 34))
    assert session.planned_slices("backward") == 1
    assert [r.slice for r in session.iter_propagate("backward")] == [0]


def test_undoing_a_removal_or_reset_gives_the_propagated_slices_back(sam2_tiny, volume):
    """A removal or a reset then undo brought the objects back on their seed slices alone (a notice
    said: propagate again); the undo now gives back the label map as it was, and says nothing."""
    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    session.add_box(1, (8, 14, 30, 34), obj_id=1)
    session.add_box(4, (24, 14, 48, 34), obj_id=2)
    shown = session.propagate(progress=False).array.copy()
    for edit in (lambda: session.remove_object(1), session.reset):
        edit()
        session.undo()
        np.testing.assert_array_equal(session.label_map().array, shown)
        assert sorted(session.results(1)) == list(range(6)) and not session.notices


def test_an_undo_past_the_kept_steps_drops_the_propagated_slices_and_names_their_objects(sam2_tiny, volume):
    """Results and sam2's state are kept for the last KEEP_UNDO_RESULTS undo steps (memory stays
    bounded); an older step restarts from its prompts, and the notice names what it dropped."""
    from medisam.predict.store import KEEP_UNDO_RESULTS

    image, _ = volume
    session = Sam2Session(sam2_tiny, image)
    session.add_box(1, (8, 14, 30, 34), obj_id=1)
    session.add_box(4, (24, 14, 48, 34), obj_id=2)
    session.propagate(progress=False)
    for k in range(KEEP_UNDO_RESULTS + 1):  # one more step than are kept; none propagated
        session.add_points(5, [(40, 20 + k, 1)], obj_id=3)
    for _ in range(KEEP_UNDO_RESULTS):  # kept: the propagated slices stay
        session.undo()
        assert sorted(session.results(1)) == list(range(6)) and not session.notices
    session.undo()  # past the kept steps
    assert session.object_ids == [1, 2] and sorted(session.results(1)) == [1]
    assert list(session.notices) == [f"undo: a sam2-tiny session keeps the propagated slices of its last "
                                     f"{KEEP_UNDO_RESULTS} undo steps, so those of objects 1, 2 were dropped: "
                                     "propagate again"]
    session.propagate(progress=False)
    assert not session.notices  # propagated again: answered
