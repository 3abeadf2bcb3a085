"""Corrective 3D clicks through the session's public API (tiny random model)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_volume_session import CountingEncoder, ball_volume  # noqa: E402

from medisam.errors import InputError, PromptError  # noqa: E402
from medisam.io.medical_image import MedicalImage  # noqa: E402
from medisam.predict import PropagationConfig, VolumeSession  # noqa: E402
from medisam.predict.click_refine import squared_distance  # noqa: E402
from medisam.predict.refine3d import click_on_plane, corrected_box, refine_with_click  # noqa: E402

FAST = PropagationConfig(views=1, min_area_px=0, extra_margins_mm=(), encode_batch=1)


def _labels(session):
    return session.label_map().array.copy()


@pytest.mark.parametrize("method", ["slice", "walker"])
def test_click_reuses_cached_embeddings_and_is_undoable(tiny_model, method):
    image, inside = ball_volume(shape=(8, 32, 40))
    with CountingEncoder(tiny_model) as counter:
        session = VolumeSession(tiny_model, image, config=FAST)
        session.add_box3d((12, 8, 1, 28, 24, 6), obj_id=2)
        session.propagate(progress=False)
        encoded_box = counter.calls
        before = _labels(session)
        z = 2
        outcome = None
        for y, x in ((16, 20), (12, 14), (20, 26), (10, 25)):  # a random model may not honour a click
            if method == "walker":  # the default of the session method
                outcome = session.add_click((z, y, x), positive=True, obj_id=2)
            else:
                outcome = refine_with_click(session, (z, y, x), True, obj_id=2, method=method)
            if not outcome.rejected:
                break
        assert outcome is not None
        assert counter.calls == encoded_box  # every plane was cached: decoder passes only
        assert outcome.encoded == 0 and outcome.slice == z
        if outcome.rejected:
            pytest.skip("the random model honoured none of the clicks")
        after = _labels(session)
        assert after[z, outcome.point[1], outcome.point[0]] == 2
        assert outcome.decoded >= 1 if method == "slice" else outcome.decoded == 0  # the walker decodes nothing
        assert set(outcome.changed) == {int(t) for t in np.nonzero((after != before).any(axis=(1, 2)))[0]}
        for _ in range(outcome.undo_steps):  # one click = one undo step, box correction included
            session.undo()
        assert np.array_equal(_labels(session), before)
        assert counter.calls == encoded_box


def test_rejected_click_leaves_the_result_alone(tiny_model):
    image, _ = ball_volume(shape=(6, 32, 40))
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d((12, 8, 1, 28, 24, 4), obj_id=1)
    session.propagate(progress=False)
    before = _labels(session)
    seen = set()
    for y in range(8, 25, 2):  # negative clicks; those the model ignores are undone
        labels_before, history_before = _labels(session), session.can_undo
        out = refine_with_click(session, (2, y, 20), positive=False, obj_id=1, method="slice")
        seen.add(out.rejected)
        if out.rejected:  # rolled back: the same labels, no undo step added
            assert out.changed == () and out.decoded in (1, 2) and out.undo_steps == 0
            assert np.array_equal(_labels(session), labels_before) and session.can_undo == history_before
    if True not in seen:
        pytest.skip("the random model honoured every click")
    assert _labels(session).shape == before.shape


def test_click_maps_to_the_session_axis_and_checks_input(tiny_model):
    image, _ = ball_volume(shape=(6, 32, 40))
    session = VolumeSession(tiny_model, image, axis=2, config=FAST)
    assert click_on_plane(session, (3, 10, 20)) == (20, 10, 3)  # slice = x; plane rows = z, columns = y
    with pytest.raises(PromptError):
        click_on_plane(session, (6, 0, 0))
    with pytest.raises(PromptError):
        click_on_plane(session, (1, 2))
    with pytest.raises(PromptError):
        refine_with_click(session, (1, 2, 3), positive=False, obj_id=5)


def test_corrected_box_agrees_with_the_click():
    m = np.zeros((20, 20), dtype=bool)
    m[5:10, 5:12] = True  # x 5..11, y 5..9
    b = corrected_box(m, 15, 7, True, (20, 20))  # a miss to the right: the box reaches it
    assert (b.x0, b.y0, b.x1, b.y1) == (3, 3, 18, 12)
    b = corrected_box(m, 10, 7, False, (20, 20))  # a leak near the right side: that side is cut
    assert (b.x0, b.y0, b.x1, b.y1) == (5, 5, 10, 10)
    b = corrected_box(m, 6, 6, False, (20, 20))  # nearest side x0 (ties: first of x0, x1, y0, y1)
    assert (b.x0, b.x1) == (7, 12)
    assert corrected_box(None, 3, 3, False, (20, 20)) is None
    b = corrected_box(None, 3, 3, True, (20, 20))  # no mask yet: a box around the click
    assert (b.x0, b.y0, b.x1, b.y1) == (1, 1, 6, 6)


def _two_objects(tiny_model, axis=0, views=1):
    image, inside = ball_volume(shape=(10, 32, 40))
    config = PropagationConfig(views=views, min_area_px=0, extra_margins_mm=(), encode_batch=1)
    session = VolumeSession(tiny_model, image, axis=axis, config=config)
    session.add_box3d((10, 6, 1, 30, 26, 8), obj_id=1)
    session.add_box3d((26, 6, 2, 36, 26, 7), obj_id=2)
    session.propagate(progress=False)
    return session, inside


def test_walker_clicks_are_honoured_one_undo_step_each_and_undo_exactly(tiny_model):
    session, _ = _two_objects(tiny_model)
    encoded = set(session.encoded_planes)
    start = _labels(session)
    history = [start]
    depth = session.can_undo
    clicks = [((5, 16, 20), True, 1), ((5, 16, 33), True, 1), ((4, 8, 12), False, 1), ((6, 20, 28), False, 2)]
    for zyx, positive, obj in clicks:
        out = session.add_click(zyx, positive, obj)
        labels = _labels(session)
        assert not out.rejected and out.undo_steps == 1 and out.decoded == 0 and out.encoded == 0
        assert (labels[zyx] == obj) == positive  # the clicked voxel follows the click
        assert {int(t) for t in np.nonzero((labels != history[-1]).any(axis=(1, 2)))[0]} <= set(out.changed)
        history.append(labels)
    assert session.encoded_planes == encoded  # no plane encoded for a click
    assert session.can_undo == depth + len(clicks)
    assert [c.zyx for c in session.object_state(1).clicks3d] == [c[0] for c in clicks if c[2] == 1]
    for labels in reversed(history[:-1]):  # each undo restores the label map before that click, exactly
        session.undo()
        assert np.array_equal(_labels(session), labels)
    assert np.array_equal(_labels(session), start)
    assert session.object_state(1).edit is None and session.object_state(1).clicks3d == ()


@pytest.mark.parametrize("axis,views", [(0, 1), (2, 1), (0, 3)])
def test_an_object_that_does_not_touch_a_crop_is_empty_there(tiny_model, axis, views):
    """object_touches lets a click skip the objects far from its crop: where it says False the
    object's crop (3D clicks included) is empty, and it says True wherever the crop holds a voxel."""
    session, _ = _two_objects(tiny_model, axis=axis, views=views)
    session.add_click((5, 16, 20), True, 1)
    session.add_click((6, 20, 28), False, 2)
    rng = np.random.default_rng(0)
    shape = session.image.spatial_shape
    said = []
    for _ in range(60):
        lo = [int(rng.integers(0, n)) for n in shape]
        crop = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(lo, shape))
        for obj in (1, 2):
            touches, held = session.object_touches(obj, crop), session.object_crop(obj, crop).any()
            assert touches or not held
            said.append(touches)
    assert any(said) and not all(said)  # both answers occur: the test can fail either way


def test_positive_walker_click_takes_its_voxels_from_other_objects(tiny_model):
    session, _ = _two_objects(tiny_model)
    before1, before2 = session.object_volume(1), session.object_volume(2)
    zyx = (5, 16, 30)  # inside both 3D boxes, outside object 1's mask
    assert not before1[zyx]
    session.add_click(zyx, True, 1)
    vol1, vol2 = session.object_volume(1), session.object_volume(2)
    assert vol1[zyx] and not vol2[zyx] and _labels(session)[zyx] == 1
    r = session.object_state(1).clicks3d[-1].radius
    near = squared_distance(vol1.shape, zyx, session.geometry.spacing_zyx) <= r * r
    assert not (vol1 & near & vol2).any()  # what object 1 holds within the click's radius, object 2 lost
    assert not (vol2 & ~before2).any()  # object 2 gained nothing
    assert np.array_equal(session.object_volume(2, model_only=True), before2)  # the model's result is kept


def test_slice_prompt_after_walker_clicks_drops_the_layer_and_undo_brings_it_back(tiny_model):
    session, _ = _two_objects(tiny_model)
    session.add_click((5, 16, 20), True, 1)
    clicked = _labels(session)
    session.add_box(5, (10, 6, 30, 26), obj_id=1)
    session.propagate(progress=False)
    assert session.object_state(1).edit is None
    session.undo()
    assert np.array_equal(_labels(session), clicked)


def test_walker_click_on_another_axis_and_with_triplanar_fusion(tiny_model):
    for axis, views in ((2, 1), (0, 3)):
        session, _ = _two_objects(tiny_model, axis=axis, views=views)
        before = _labels(session)
        out = session.add_click((5, 16, 20), True, 1)
        after = _labels(session)
        assert after[5, 16, 20] == 1 and out.slice == (5, 16, 20)[axis]
        changed = np.nonzero(np.moveaxis(after != before, axis, 0).any(axis=(1, 2)))[0]
        assert {int(t) for t in changed} <= set(out.changed) and changed.size > 0
        session.undo()
        assert np.array_equal(_labels(session), before)


def test_unknown_click_method_is_refused(tiny_model):
    session, _ = _two_objects(tiny_model)
    with pytest.raises(PromptError):
        refine_with_click(session, (5, 16, 20), True, 1, method="magic")


def test_object_crop_and_extent_read_only_the_crop_and_match_the_volume(tiny_model):
    session, _ = _two_objects(tiny_model)
    session.add_click((5, 16, 30), True, 1)  # a click layer on top of the model's result
    for obj in (1, 2):
        for model_only in (False, True):
            vol = session.object_volume(obj, model_only)
            crop = (slice(2, 7), slice(5, 20), slice(10, 35))
            assert np.array_equal(session.object_crop(obj, crop, model_only), vol[crop])
            assert np.array_equal(session.object_crops(obj, crop)[int(not model_only)], vol[crop])  # one read, both
            extent = session.object_extent(obj, model_only)
            idx = np.nonzero(vol)
            expected = None if not vol.any() else (tuple(int(i.min()) for i in idx), tuple(int(i.max()) for i in idx))
            assert extent == expected
    view = session.display
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1.0  # the public display is read-only


def _overlapping_masks(tiny_model):
    """Objects 1 (x 8..25) and 2 (x 20..33, smaller: on top) set by masks on slices 3..7 of a flat volume."""
    rng = np.random.default_rng(1)
    image = MedicalImage((100 + rng.normal(0, 5, (10, 32, 40))).astype(np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                         (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), "MR")
    session = VolumeSession(tiny_model, image, axis=0, config=FAST)
    for obj, (x0, x1) in ((1, (8, 26)), (2, (20, 34))):
        m = np.zeros((32, 40), dtype=bool)
        m[8:24, x0:x1] = True
        for t in range(3, 8):
            session.add_mask(t, m, obj_id=obj)
    return session


def test_a_nested_or_smaller_object_is_on_top_whatever_its_id(tiny_model):
    session = _overlapping_masks(tiny_model)
    labels = _labels(session)
    assert (labels[3:8, 8:24, 20:34] == 2).all() and (labels[3:8, 8:24, 8:20] == 1).all()
    inner = np.zeros((32, 40), dtype=bool)
    inner[12:16, 10:14] = True  # a third object nested in object 1, with a higher id
    session.add_mask(5, inner, obj_id=3)
    labels = _labels(session)
    assert (labels[5][inner] == 3).all()
    session.remove_object(1)
    session.remove_object(3)
    session.add_mask(5, inner, obj_id=1)  # the nested object now has the LOWEST id: still on top
    big = np.zeros((32, 40), dtype=bool)
    big[4:28, 4:30] = True
    session.add_mask(5, big, obj_id=4)
    labels = _labels(session)
    assert (labels[5][inner] == 1).all() and (labels[5][big & ~inner] != 0).all()


def test_a_positive_click_takes_from_other_objects_only_near_it(tiny_model):
    session = _overlapping_masks(tiny_model)
    assert session.object_volume(2)[5, 16, 23]
    session.add_click((5, 16, 10), True, 1)  # inside object 1, far from the overlap (x 20..25)
    assert session.object_volume(2)[5, 16, 23] and _labels(session)[5, 16, 23] == 2  # the far overlap stays


def test_another_objects_click_is_background_for_this_object(tiny_model):
    session = _overlapping_masks(tiny_model)
    v = (5, 16, 17)  # object 1 only
    session.add_click(v, True, 2)
    assert _labels(session)[v] == 2
    session.add_click((5, 16, 11), True, 1)  # object 1 refined again: it does not take the voxel back
    assert _labels(session)[v] == 2 and not session.object_volume(1)[v]


def test_a_negative_click_only_removes(tiny_model):
    session, _ = _two_objects(tiny_model)
    before = session.object_volume(1)
    v = (4, 8, 12)
    session.add_click(v, False, 1)
    after = session.object_volume(1)
    assert not after[v] and not (after & ~before).any()


def test_a_positive_click_where_a_smaller_object_shows_is_a_background_click_of_that_one(tiny_model):
    session = _overlapping_masks(tiny_model)
    v = (5, 16, 22)  # in both objects; the label map shows the smaller one, 2
    assert session.paint_order() == [1, 2] and _labels(session)[v] == 2
    before1 = session.object_volume(1)
    depth = session.can_undo
    out = session.add_click(v, True, 1)
    assert _labels(session)[v] == 1 and not session.object_volume(2)[v]
    assert np.array_equal(session.object_volume(1), before1)  # object 1 already held it: unchanged
    assert [c.positive for c in session.object_state(2).clicks3d] == [False]  # object 2's walker decided
    assert [c.positive for c in session.object_state(1).clicks3d] == [True]
    assert session.can_undo == depth + 1 and v[0] in out.changed  # one undo step, the change reported
    session.undo()
    assert _labels(session)[v] == 2 and session.object_state(2).clicks3d == ()


def test_guides_are_checked_and_the_walker_sees_them(tiny_model):
    image, _ = ball_volume(shape=(8, 32, 40))
    with pytest.raises(InputError, match="guide 0 has shape"):
        VolumeSession(tiny_model, image, config=FAST, guides=[np.zeros((8, 32, 39), np.float32)])
    with pytest.raises(InputError, match="NaN"):
        VolumeSession(tiny_model, image, config=FAST, guides=[np.full((8, 32, 40), np.nan, np.float32)])
    guide = np.random.default_rng(0).normal(size=(8, 32, 40)).astype(np.float32)
    session = VolumeSession(tiny_model, image, config=FAST, guides=[guide])
    crop = (slice(1, 3), slice(4, 9), slice(0, 40))
    feats = session.click_features(crop)
    assert feats.shape == (2, 5, 40, 2) and np.array_equal(feats[..., 0], session.display[crop])
    assert 0 <= feats[..., 1].min() and feats[..., 1].max() <= 255
    assert VolumeSession(tiny_model, image, config=FAST).click_features(crop).shape == (2, 5, 40)


@pytest.mark.parametrize("views", [1, 3])
def test_snapshot_restores_prompts_results_and_undo_here_and_in_a_new_session(tiny_model, views):
    session, _ = _two_objects(tiny_model, views=views)
    session.add_click((5, 16, 20), True, 1)
    snap, labels, depth = session.snapshot(), _labels(session), session.can_undo
    session.add_click((5, 16, 33), True, 2)
    session.remove_object(1)
    session.restore(snap)
    assert np.array_equal(_labels(session), labels) and session.can_undo == depth
    other = VolumeSession(tiny_model, session.image, axis=0, config=session.config)
    other.restore(snap)  # a fresh session: nothing to propagate or encode again
    assert np.array_equal(_labels(other), labels) and other.planned_slices() == 0 and not other.encoded_planes
    other.undo()  # the undo history came too: the click is taken back
    assert other.object_state(1).clicks3d == ()
    session.restore(snap)  # a snapshot is not used up by a restore
    assert np.array_equal(_labels(session), labels)
    with pytest.raises(InputError, match="cannot be restored"):
        VolumeSession(tiny_model, session.image, axis=1, config=session.config).restore(snap)


def test_window_around_bounds_the_crop_and_keeps_the_click_inside():
    from medisam.predict.click_layer import window_around

    crop = (slice(2, 42), slice(10, 210), slice(5, 205))  # 40 x 200 x 200 = 1.6 M voxels
    assert window_around(crop, (20, 100, 100), (1.0, 1.0, 1.0), 2_000_000) == crop  # within budget: as is
    for at, spacing in (((20, 100, 100), (1.0, 1.0, 1.0)), ((3, 12, 200), (1.0, 1.0, 1.0)),
                        ((20, 100, 100), (5.0, 0.8, 0.8))):
        win = window_around(crop, at, spacing, 100_000)
        sizes = [s.stop - s.start for s in win]
        assert np.prod(sizes) <= 100_000 and np.prod(sizes) > 100_000 / 2  # bounded, not much smaller
        assert all(c.start <= w.start and w.stop <= c.stop for c, w in zip(crop, win))  # inside the crop
        assert all(w.start <= a < w.stop for w, a in zip(win, at))  # around the click
    thick = window_around(crop, (20, 100, 100), (5.0, 0.8, 0.8), 100_000)
    z, y, x = [s.stop - s.start for s in thick]
    assert abs(z * 5.0 - y * 0.8) <= 5.0 and y == x  # the same physical side on every axis


def test_a_click_on_an_object_larger_than_the_budget_edits_only_a_window_around_it(tiny_model):
    from medisam.predict.click_refine import RefineParams
    from medisam.predict.refine3d import walker_click

    session, _ = _two_objects(tiny_model)
    before = session.object_volume(1)
    budget = 6 * 12 * 12  # the object's crop is 11 x 25 x 25 voxels: a 9-voxel cube is solved
    v = (5, 16, 20)
    out = walker_click(session, v, False, 1, RefineParams(max_voxels=budget))
    after = session.object_volume(1)
    layer = session.object_state(1).edit
    assert layer.mask.size <= budget and not after[v]  # solved on a window, the click honoured
    outside = np.ones(after.shape, dtype=bool)
    outside[tuple(slice(o, o + n) for o, n in zip(layer.origin, layer.mask.shape))] = False
    assert np.array_equal(after[outside], before[outside]) and not (after & ~before).any()
    assert set(out.changed) <= set(range(layer.origin[0], layer.origin[0] + layer.mask.shape[0]))
    session.undo()
    assert np.array_equal(session.object_volume(1), before)
    # a later click off that window keeps the first click's seed (no index past the crop)
    walker_click(session, v, False, 1, RefineParams(max_voxels=budget))
    walker_click(session, (5, 16, 11), False, 1, RefineParams(max_voxels=budget))
    assert not session.object_volume(1)[v] and not session.object_volume(1)[(5, 16, 11)]
    assert session.object_size(1) == int(session.object_volume(1).sum())  # the size cap's measure, plane by plane
    walker_click(session, v, True, 1, RefineParams(max_voxels=budget))  # positive: capped by the whole object
    assert session.object_volume(1)[v] and session.object_state(1).clicks3d[-1].radius >= RefineParams().min_radius


def test_a_positive_click_on_a_constant_image_only_adds(tiny_model):
    # no contrast: the walker's re-solve shrank the model's mask to the click's neighbourhood (0.533 -> 0.288)
    from medisam.prompts import Box3D

    session = VolumeSession(tiny_model, MedicalImage.from_array(np.full((8, 40, 40), 50.0)), config=FAST)
    session.add_box3d(Box3D(8, 8, 2, 31, 31, 5), obj_id=1)
    session.propagate(progress=False)
    before = session.object_volume(1)
    clicked = (4, 20, 20) if not before[4, 20, 20] else (3, 28, 10)
    refine_with_click(session, clicked, True, obj_id=1)
    after = session.object_volume(1)
    assert after[clicked] and not (before & ~after).any()  # added the click, removed nothing
    contrast = np.full((8, 40, 40), 50.0)
    contrast[2:6, 8:32, 8:32] += np.linspace(0, 60, 24)  # a ramp: the walker has edges, and re-solves
    from medisam.predict.click_refine import no_contrast
    inside = np.zeros((8, 40, 40), bool)
    inside[2:6, 8:32, 8:32] = True
    assert no_contrast(np.full((8, 40, 40), 50.0), inside) and not no_contrast(contrast, inside)
    assert not no_contrast(np.stack([np.full((8, 40, 40), 50.0), contrast], axis=-1), inside)  # a guide channel


def _nested_masks(tiny_model):
    """Object 2 (rows 10..21, x 14..25) nested in object 1 (rows 6..25, x 6..33), set by masks on slices 2..8."""
    rng = np.random.default_rng(2)
    image = MedicalImage((100 + rng.normal(0, 5, (11, 32, 40))).astype(np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                         (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), "MR")
    session = VolumeSession(tiny_model, image, axis=0, config=FAST)
    for obj, (y0, y1, x0, x1) in ((1, (6, 26, 6, 34)), (2, (10, 22, 14, 26))):
        m = np.zeros((32, 40), dtype=bool)
        m[y0:y1, x0:x1] = True
        for t in range(2, 9):
            session.add_mask(t, m, obj_id=obj)
    return session


def test_a_negative_click_where_another_object_holds_gives_it_the_voxels_near_the_click(tiny_model):
    from medisam.predict.click_refine import RefineParams

    v = (5, 16, 19)  # the middle of object 2, which lies over object 1
    plain = _nested_masks(tiny_model)
    refine_with_click(plain, v, False, 2, params=RefineParams(negative_yields=False))  # as any background click
    session = _nested_masks(tiny_model)
    before = session.object_volume(2)
    session.add_click(v, False, 2)
    click = session.object_state(2).clicks3d[-1]
    assert click.yields  # object 1 holds the voxel too
    after, kept_plain = session.object_volume(2), plain.object_volume(2)
    assert not (after & ~before).any()  # still only removes
    near = squared_distance(after.shape, v, (1.0, 1.0, 1.0)) <= (click.radius / 2) ** 2
    assert not (after & near).any() and (_labels(session)[near & before] == 1).all()  # object 1 shows there
    assert 2 * after.sum() < kept_plain.sum()  # a plain background click left far more of the false blob
    session.undo()
    assert np.array_equal(session.object_volume(2), before)


def test_a_negative_click_that_no_other_object_holds_acts_as_before(tiny_model):
    from medisam.predict.click_refine import RefineParams

    v = (5, 16, 30)  # object 2 only (x 20..33)
    plain = _overlapping_masks(tiny_model)
    refine_with_click(plain, v, False, 2, params=RefineParams(negative_yields=False))
    session = _overlapping_masks(tiny_model)
    session.add_click(v, False, 2)
    assert not session.object_state(2).clicks3d[-1].yields
    assert np.array_equal(session.object_volume(2), plain.object_volume(2))


def _slanted_rod(shape=(8, 32, 40)):
    """A bright rod that moves 2 pixels in x per slice: its box on slice 1 misses it on slice 6."""
    array = np.random.default_rng(1).normal(0, 5, shape).astype(np.float32)
    for z in range(shape[0]):
        array[z, 12:20, 8 + 2 * z:14 + 2 * z] += 300
    return MedicalImage(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "MR")


@pytest.mark.parametrize("drawn_on", [None, 1])
def test_a_box_drawn_on_one_slice_bounds_the_object_on_that_slice_only(tiny_model, drawn_on):
    """The CVPR25 start (a 2D box with the object's slice range): a positive click past the box's x/y
    extent on another slice adds the voxels there; a 3D box bounds every slice, so the same click
    cannot add outside it."""
    image = _slanted_rod()
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d((8, 12, 0, 14, 19, 7), obj_id=1, drawn_on=drawn_on)  # the rod's box on slice 1
    session.propagate(progress=False)
    if drawn_on is not None:
        assert list(session.object_state(1).seeds) == [drawn_on]  # slicing along k, its own slice is the seed
    v = (6, 15, 22)  # the rod on slice 6, 8 pixels past the box
    session.add_click(v, positive=True, obj_id=1)
    after = session.object_volume(1)
    outside = after[6, :, 15:]  # slice 6 past the box's x extent
    if drawn_on is None:  # the box's faces are the walker's background there: the clicked voxel at most
        assert outside.sum() <= 1
    else:  # the walker fills the rod there (rows 12-19, columns 20-25), not the background beside it
        assert outside[12:20, 5:11].mean() > 0.5 and not after[6, :10].any() and not after[6, 22:].any()


def test_a_box_drawn_on_a_slice_along_another_axis_bounds_and_seeds_there_as_on_k(tiny_model):
    """The same rod stored with its slices last, sliced along axis 2 (the server's and web UI's
    sessions on such a volume): a box drawn on slice 1 of that axis (``drawn_axis=2``) seeds that
    slice and bounds the object there only, giving the k session's label map, transposed."""
    image = _slanted_rod()
    on_k = VolumeSession(tiny_model, image, config=FAST)
    on_k.add_box3d((8, 12, 0, 14, 19, 7), obj_id=1, drawn_on=1)
    on_k.propagate(progress=False)
    on_k.add_click((6, 15, 22), positive=True, obj_id=1)
    last = MedicalImage(np.ascontiguousarray(image.array.transpose(1, 2, 0)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                        (1, 0, 0, 0, 1, 0, 0, 0, 1), "MR")
    on_i = VolumeSession(tiny_model, last, config=FAST, axis=2)
    on_i.add_box3d((0, 8, 12, 7, 14, 19), obj_id=1, drawn_on=1, drawn_axis=2)  # (x, y, z) = (old z, old x, old y)
    on_i.propagate(progress=False)
    assert list(on_i.object_state(1).seeds) == [1]
    on_i.add_click((15, 22, 6), positive=True, obj_id=1)
    assert np.array_equal(on_i.object_volume(1), on_k.object_volume(1).transpose(1, 2, 0))
    with pytest.raises(PromptError, match="outside its slice range 0..7"):
        on_i.add_box3d((0, 8, 12, 7, 14, 19), obj_id=2, drawn_on=9, drawn_axis=2)


def test_a_box_drawn_outside_its_slice_range_is_refused(tiny_model):
    session = VolumeSession(tiny_model, _slanted_rod(), config=FAST)
    with pytest.raises(PromptError, match="outside its slice range"):
        session.add_box3d((8, 12, 0, 14, 19, 5), obj_id=1, drawn_on=6)
    assert session.object_ids == []


def test_a_walker_click_before_the_propagation_corrects_the_propagated_result(tiny_model):
    """A click on an object that is not propagated yet propagates first: the same label map as
    propagating, then clicking (before, its edit was made from the seed slice alone and hid the
    propagation's slices around it)."""
    image, _ = ball_volume(shape=(10, 32, 40))
    early, late = (VolumeSession(tiny_model, image, config=FAST) for _ in range(2))
    for s in (early, late):
        s.add_box3d((10, 6, 1, 30, 26, 8), obj_id=1)
    late.propagate(progress=False)
    out = early.add_click((5, 16, 20), True, 1)
    late.add_click((5, 16, 20), True, 1)
    assert not out.rejected and early.planned_slices() == 0
    assert np.array_equal(_labels(early), _labels(late))
    early.undo()  # the click is the undo step, not the propagation
    late.undo()
    assert np.array_equal(_labels(early), _labels(late)) and _labels(early).any()


def _count_solves(monkeypatch):
    """Count the walker solves of refine3d (``refine_crop`` calls)."""
    import medisam.predict.refine3d as refine3d

    calls = []
    real = refine3d.refine_crop

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(refine3d, "refine_crop", counted)
    return calls


def test_clicks_of_a_scribble_are_one_walker_solve_one_undo_step_and_honoured(tiny_model, monkeypatch):
    """add_clicks: a scribble's clicks of one sign are solved together (one solve, not one per click),
    each is honoured, all are kept as the object's clicks, and one undo takes them all back."""
    session, _ = _two_objects(tiny_model)
    start, depth = _labels(session), session.can_undo
    solves = _count_solves(monkeypatch)
    negative = [(5, 10, 14), (5, 12, 16), (5, 14, 18), (5, 16, 20)]
    out = session.add_clicks(negative, False, 1)
    labels = _labels(session)
    assert len(solves) == 1 and session.can_undo == depth + 1
    assert all(labels[v] != 1 for v in negative) and not ((labels == 1) & (start != 1)).any()  # only removes
    assert [c.zyx for c in session.object_state(1).clicks3d] == negative
    assert {int(t) for t in np.nonzero((labels != start).any(axis=(1, 2)))[0]} <= set(out.changed)
    positive = [(3, 16, 12), (4, 16, 14)]
    session.add_clicks(positive, True, 1)
    assert len(solves) == 2 and all(_labels(session)[v] == 1 for v in positive)
    session.undo()
    assert np.array_equal(_labels(session), labels)
    session.undo()
    assert np.array_equal(_labels(session), start) and session.object_state(1).clicks3d == ()


def test_one_click_through_add_clicks_is_add_click(tiny_model):
    """add_clicks with one voxel is the same edit as add_click (the same walker code)."""
    a, _ = _two_objects(tiny_model)
    b, _ = _two_objects(tiny_model)
    a.add_click((5, 16, 20), False, 1)
    b.add_clicks([(5, 16, 20)], False, 1)
    assert np.array_equal(_labels(a), _labels(b))
    assert a.object_state(1).clicks3d == b.object_state(1).clicks3d


def test_clicks_past_one_window_take_another_solve_in_the_same_undo_step(tiny_model, monkeypatch):
    """A scribble longer than the walker's window budget: the clicks outside the first window are
    solved on a window of their own (bounded cost per solve), still one undo step, all honoured."""
    from medisam.predict.click_refine import RefineParams
    from medisam.predict.refine3d import walker_clicks

    session, _ = _two_objects(tiny_model)
    start, depth = _labels(session), session.can_undo
    solves = _count_solves(monkeypatch)
    voxels = [(5, 16, 11), (5, 16, 29)]  # 18 voxels apart; a window of 6 x 12 x 12 voxels holds one
    walker_clicks(session, voxels, False, 1, RefineParams(max_voxels=6 * 12 * 12))
    assert len(solves) == 2 and session.can_undo == depth + 1
    assert all(_labels(session)[v] != 1 for v in voxels)
    assert session.object_state(1).edit.mask.size < 11 * 25 * 25  # two windows merged, not the object's whole crop
    session.undo()
    assert np.array_equal(_labels(session), start)


def test_add_clicks_checks_its_input(tiny_model):
    session, _ = _two_objects(tiny_model)
    with pytest.raises(PromptError, match="at least one click"):
        session.add_clicks([], True, 1)
    with pytest.raises(PromptError, match="no mask to correct"):
        session.add_clicks([(5, 16, 20)], True, 7)
    with pytest.raises((PromptError, InputError)):
        session.add_clicks([(5, 16, 20), (50, 16, 20)], True, 1)
    assert session.object_state(1).clicks3d == ()
