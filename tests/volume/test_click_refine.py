"""The random-walker refinement of 3D clicks on a hand-made volume (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.metrics_basic import dice
from medisam.predict.click_refine import (RefineParams, apply_click, ball_radius, click_radius, intensity_ratio,
                                          refine_crop, squared_distance)
from medisam.predict.edits import EditLayer, merged
from medisam.predict.store import Click3D


def _volume():
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 24, 24), dtype=bool)
    truth[3:9, 6:18, 6:12] = True  # a dark block
    img = np.where(truth, 60.0, 180.0) + rng.normal(0, 5, truth.shape)
    return img, truth


def test_positive_click_recovers_a_missed_part_and_keeps_the_rest():
    img, truth = _volume()
    model = truth.copy()
    model[:, 12:, :] = False  # the model missed the lower half
    inside = np.ones_like(truth)
    zyx = (6, 15, 9)
    r = click_radius(model, zyx, True, (1.0, 1.0, 1.0))
    assert r >= 2.0 * 1.5  # 1.5 x its distance (3 voxels) to the mask
    new = refine_crop(img, model, inside, [Click3D(zyx, True, r)])
    assert new[zyx] and dice(new, truth) > dice(model, truth) + 0.2
    assert dice(new, truth) > 0.9


def test_negative_click_removes_a_leak_and_the_box_bounds_the_object():
    img, truth = _volume()
    model = truth.copy()
    model[3:9, 6:18, 12:18] = True  # a leak to the right (bright voxels)
    inside = np.zeros_like(truth)
    inside[2:10, 5:19, 5:19] = True
    zyx = (6, 12, 16)
    new = refine_crop(img, model, inside, [Click3D(zyx, False, click_radius(model, zyx, False, (1.0, 1.0, 1.0)))])
    assert not new[zyx] and not new[~inside].any()
    assert dice(new, truth) > dice(model, truth) + 0.2


def test_edit_layers_merge_over_the_union_of_their_crops():
    base = np.zeros((4, 5, 6), dtype=bool)
    a = EditLayer((0, 0, 0), np.ones((2, 2, 2), dtype=bool))
    b = EditLayer((1, 3, 4), np.ones((2, 2, 2), dtype=bool))
    m = merged(a, b, lambda crop: base[crop])
    assert m.origin == (0, 0, 0) and m.mask.shape == (3, 5, 6)
    assert np.array_equal(m.apply(base), b.apply(a.apply(base)))
    assert merged(None, b, lambda crop: base[crop]) is b


def test_a_click_fixes_the_ball_of_seed_radius_around_it_where_no_edge_helps():
    """The hippocampus tuning's lever (docs/interactive3d.md, run 9): where the missed part looks
    like the background, only the click's fixed ball recovers it, so the ball's size matters."""
    img, truth = _volume()
    img[truth[:, :, :] & (np.arange(24)[None, :, None] >= 12)] = 180.0  # the missed half has no edge
    model = truth.copy()
    model[:, 12:, :] = False
    inside = np.ones_like(truth)
    zyx = (6, 15, 9)
    r = click_radius(model, zyx, True, (1.0, 1.0, 1.0))
    zz, yy, xx = np.ogrid[:12, :24, :24]
    ball = (zz - 6) ** 2 + (yy - 15) ** 2 + (xx - 9) ** 2 <= RefineParams().seed_radius ** 2
    new = refine_crop(img, model, inside, [Click3D(zyx, True, r)])
    assert new[ball].all()
    small = refine_crop(img, model, inside, [Click3D(zyx, True, r)], params=RefineParams(seed_radius=1.0))
    missed = truth & ~model
    assert (new & missed).sum() > (small & missed).sum() + 50


def test_a_click_near_the_box_edge_sets_nothing_outside_the_box():
    """The click's ball is cut to the object's box: a voxel past it would be a new error that the
    protocol clicks next, on a slice outside the object's range (a refused prompt)."""
    img, truth = _volume()
    model = truth.copy()
    model[:, 12:, :] = False
    inside = np.zeros_like(truth)
    inside[3:9, 6:18, 6:12] = True  # the box is the object's extent
    zyx = (3, 15, 9)  # on the box's first slice: the ball reaches slices 0-2
    new = refine_crop(img, model, inside, [Click3D(zyx, True, click_radius(model, zyx, True, (1.0, 1.0, 1.0)))])
    assert new[zyx] and not new[~inside].any()


def test_a_second_channel_separates_what_the_first_cannot():
    img, truth = _volume()
    flat = np.full_like(img, 120.0) + np.random.default_rng(1).normal(0, 5, img.shape)  # no contrast at all
    model = truth.copy()
    model[:, 12:, :] = False
    inside = np.ones_like(truth)
    zyx = (6, 15, 9)
    r = click_radius(model, zyx, True, (1.0, 1.0, 1.0))
    blind = refine_crop(flat, model, inside, [Click3D(zyx, True, r)])
    guided = refine_crop(np.stack([flat, img], axis=-1), model, inside, [Click3D(zyx, True, r)])
    assert dice(guided, truth) > dice(blind, truth) + 0.1 and dice(guided, truth) > 0.9
    # one channel as (Z, Y, X, 1) is the same as (Z, Y, X)
    assert np.array_equal(refine_crop(img[..., None], model, inside, [Click3D(zyx, True, r)]),
                          refine_crop(img, model, inside, [Click3D(zyx, True, r)]))


def test_a_positive_click_far_from_a_tiny_mask_acts_within_the_objects_size():
    """A click on a missed part that does not touch the mask (BraTS necrosis: 5 voxels left, the
    click 35 voxels away) measures no error size by its distance to the mask; ``size_scale``
    bounds its radius by the object's own size instead, so it cannot hand the walker (and take
    from the other objects) a region many times the object."""
    current = np.zeros((48, 48, 48), dtype=bool)
    current[5, 5, 4:9] = True  # 5 voxels
    zyx = (30, 30, 30)
    free = click_radius(current, zyx, True, (1.0, 1.0, 1.0), RefineParams(size_scale=None))
    assert free > 40.0
    capped = click_radius(current, zyx, True, (1.0, 1.0, 1.0), RefineParams(size_scale=2.0))
    ball = (3 * 5 / (4 * np.pi)) ** (1 / 3)
    assert capped == max(RefineParams().min_radius, 2.0 * ball)
    # a click next to a large mask keeps its distance-based radius (the cap is far above it)
    current[10:40, 10:40, 10:29] = True
    near = click_radius(current, (25, 25, 32), True, (1.0, 1.0, 1.0), RefineParams(size_scale=2.0))
    assert near == RefineParams().click_scale * 4.0  # 4 voxels from the mask (x = 28)
    # a negative click is not capped (its distance into the mask is bounded by the mask)
    neg = click_radius(current, (25, 25, 20), False, (1.0, 1.0, 1.0), RefineParams(size_scale=0.1))
    assert neg == RefineParams().click_scale * float(min(25 - 9, 20 - 9, 29 - 20))


def test_the_size_cap_on_a_cut_window_measures_the_whole_object():
    """On a large object the walker solves a window around the click; the window may hold only a
    sliver of the object, so the size cap must use the whole object's volume, not the window's part."""
    from medisam.predict.refine3d import _window_click_radii

    def _window_click_radius(whole, window, current, at, positive, spacing, params, volume=None):  # noqa: ANN001, ANN202
        return _window_click_radii(whole, window, current, [at], positive, spacing, params, volume)[0]

    whole = (slice(0, 60), slice(0, 60), slice(0, 60))
    window = (slice(0, 30), slice(0, 30), slice(0, 30))  # cut on the far faces only
    current = np.zeros((30, 30, 30), dtype=bool)
    current[2, 2, 2:7] = True  # 5 voxels of the object in the window
    at = (14, 14, 14)  # 15 voxels from the cut faces, ~20 from the sliver
    params = RefineParams()
    sliver = _window_click_radius(whole, window, current, at, True, (1.0, 1.0, 1.0), params)
    assert sliver == max(params.min_radius, params.size_scale * ball_radius(5))  # capped by the sliver
    big = _window_click_radius(whole, window, current, at, True, (1.0, 1.0, 1.0), params, volume=40_000)
    assert big == params.click_scale * 15.0  # the face cap binds: the object is large
    # a window holding none of a small object: the size cap still binds (the faces alone would not)
    empty = np.zeros_like(current)
    far = _window_click_radius(whole, window, empty, at, True, (1.0, 1.0, 1.0), params, volume=50)
    assert far == max(params.min_radius, params.size_scale * ball_radius(50)) < params.click_scale * 15.0
    assert _window_click_radius(whole, window, empty, at, True, (1.0, 1.0, 1.0), params) == params.click_scale * 15.0
    # the volume never counts less than the window's own part
    assert click_radius(current, at, True, (1.0, 1.0, 1.0), params, volume=1) == sliver


def _one_slice_object():
    """A lesion on one slice at the edge of a volume (found with an unseen-volume check, stop 48):
    the crop holds two slices of the pad before it, outside the object's 3D box."""
    rng = np.random.default_rng(0)
    truth = np.zeros((3, 22, 34), dtype=bool)
    truth[2, 0:20, 2:32] = True
    img = np.where(truth, 200.0, 50.0) + rng.normal(0, 20, truth.shape)
    model = truth.copy()
    model[2, 19, 2:14] = False  # the model missed part of the last row
    return img, truth, model, truth.copy()  # the box is the object's extent


def test_a_positive_click_on_a_one_slice_object_keeps_it():
    """Before stop 48 the click at the object's corner wiped it (588 -> 29 voxels): the box faces
    counted as the model mask's boundary (every voxel 1 voxel deep, prior ~0.56) and the intensity
    sample took the two slices outside the box (the background) as the object's intensity."""
    img, truth, model, inside = _one_slice_object()
    zyx = (2, 18, 2)
    new = refine_crop(img, model, inside, [Click3D(zyx, True, click_radius(model, zyx, True, (1.0, 1.0, 1.0)))])
    assert new[zyx] and dice(new, truth) > 0.97


def test_the_model_prior_ignores_the_box_faces_and_measures_millimetres():
    from medisam.predict.click_refine import model_prior

    mask = np.zeros((7, 40, 40), dtype=bool)
    mask[2:5, 8:32, 8:32] = True  # three slices
    anywhere = np.ones_like(mask)
    centre, outside = (3, 20, 20), (3, 20, 4)
    iso = model_prior(mask, anywhere, (1.0, 1.0, 1.0))
    assert iso[centre] < 0.65  # 2 voxels from the slices past the mask
    # 5 mm slices: the centre is 10 mm from the slices past the mask, 12 mm from its side
    assert model_prior(mask, anywhere, (5.0, 1.0, 1.0))[centre] > 0.9
    # a 3D box whose faces lie where the mask ends (a tight box): the faces bound where the
    # object may be, they are no evidence that the model's mask ends there
    inside = np.zeros_like(mask)
    inside[2:5] = True
    boxed = model_prior(mask, inside, (1.0, 1.0, 1.0))
    assert boxed[centre] > 0.9
    assert boxed[outside] == iso[outside] < 0.5  # outside the mask nothing changes


def test_the_objects_gaussian_is_at_least_a_share_of_the_rests_spread():
    img = np.concatenate([np.full(50, 50.0), np.linspace(150, 180, 10), np.full(40, 210.0)]).reshape(1, 1, -1)
    edge = np.zeros(img.shape, bool)
    edge[..., 50:60] = True  # a sample of partial-volume voxels only: 150..180, narrow
    core = img == 210.0
    assert intensity_ratio(img, edge)[core].max() < 1.0  # the object's own core looks like the rest
    assert intensity_ratio(img, edge, sd_share=0.4)[core].min() > 1.0


def test_a_background_clicks_intensity_removes_the_tissue_that_looks_like_it():
    """The model's blob spills over a grey region; a background click there says "not this", and
    with the click's own intensity in the model of the rest, the walker removes the grey region
    that looks like it, past the click's radius (stop 58)."""
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 32, 32), dtype=bool)
    truth[3:9, 6:26, 6:14] = True
    grey = np.zeros_like(truth)
    grey[3:9, 6:26, 14:26] = True
    img = np.where(truth, 60.0, np.where(grey, 115.0, 180.0)) + rng.normal(0, 5, truth.shape)
    model, inside, zyx = truth | grey, np.ones_like(truth), (6, 10, 20)
    click = Click3D(zyx, False, click_radius(truth | grey, zyx, False, (1.0, 1.0, 1.0)))
    with_sample = refine_crop(img, model, inside, [click])
    without = refine_crop(img, model, inside, [click], params=RefineParams(negative_sample=0.0))
    assert RefineParams().negative_sample > 0 and not with_sample[zyx]
    assert (with_sample & grey).sum() < 0.75 * (without & grey).sum()  # 741 against 1113 voxels left
    assert (with_sample & truth).sum() == truth.sum()  # the object itself is kept
    # no background click: the same likelihood ratio as without a background sample
    assert np.array_equal(intensity_ratio(img, truth, bg_sample=np.zeros_like(truth), bg_share=0.5),
                          intensity_ratio(img, truth))
    with pytest.raises(ValueError, match="negative_sample is a share"):
        RefineParams(negative_sample=1.5)


def test_a_positive_click_removes_only_within_its_reach():
    """A bar whose far end is a thin tail of another intensity; the model missed the near end. A
    positive click there samples the near end's intensity, and the walker's re-solve drops the whole
    tail, 30-60 voxels away. Within ``positive_reach`` radii the click takes the re-solve as it is;
    farther it only adds, so the tail stays (stop 59)."""
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 32, 64), dtype=bool)
    truth[4:8, 10:22, 2:34] = True
    truth[4:8, 12:20, 34:62] = True  # the tail
    tail = truth.copy()
    tail[:, :, :34] = False
    img = np.where(truth, np.where(tail, 150.0, 60.0), 180.0) + rng.normal(0, 5, truth.shape)
    model = truth.copy()
    model[:, :, 2:10] = False  # the near end the click asks for
    zyx = (6, 16, 4)
    click = Click3D(zyx, True, click_radius(model, zyx, True, (1.0, 1.0, 1.0)))
    solved = refine_crop(img, model, np.ones_like(truth), [click])
    anywhere = apply_click(solved, model, click, RefineParams(positive_reach=None))
    reach = RefineParams().positive_reach
    kept = apply_click(solved, model, click, RefineParams())
    assert reach is not None and not (anywhere & tail).any()  # the re-solve alone drops the whole tail
    beyond = squared_distance(truth.shape, zyx, (1.0, 1.0, 1.0)) > (reach * click.radius) ** 2
    assert (tail & beyond).sum() > 500 and (kept & tail & beyond).sum() == (tail & beyond).sum()
    assert (kept & truth & ~tail).sum() == (truth & ~tail).sum()  # the near end is added all the same
    assert dice(kept, truth) > 0.9 > dice(anywhere, truth)  # 0.94 against 0.76 (the model: 0.91)
    with pytest.raises(ValueError, match="positive_reach is a positive multiple"):
        RefineParams(positive_reach=0.0)


@pytest.mark.real_data
def test_a_positive_click_on_a_nodules_edge_keeps_the_nodule(data_dir):
    """The protocol's third click on the lung nodule (stop 51; the crop, box window and clicks its
    walker got in the bench, the truth standing for the model's mask): a foreground click on the
    nodule's edge, beside two background clicks, took the nodule from 837 voxels to 232 when the
    object's intensity Gaussian was fitted on the click's partial-volume voxels alone."""
    from medisam.io import read_image
    from medisam.io.intensity import apply_window

    folder = data_dir / "pyradiomics_lung_ct"
    crop = (slice(30, 37), slice(345, 375), slice(204, 232))
    image = read_image(folder / "imagesTr" / "lung1_0000.nii.gz")
    truth = read_image(folder / "labelsTr" / "lung1.nii.gz").array[crop] == 1
    display = apply_window(image.array[crop], (1044.0, -432.0))
    inside = np.zeros(truth.shape, bool)
    inside[2:5, 2:28, 2:26] = True  # the nodule's 3D box in the crop
    clicks = [Click3D((3, 8, 6), False, 2.12), Click3D((4, 22, 20), False, 2.12), Click3D((3, 11, 7), True, 2.0)]
    kept = refine_crop(display, truth, inside, clicks, image.spacing_zyx)
    assert dice(kept, truth) > 0.9
    narrow = refine_crop(display, truth, inside, clicks, image.spacing_zyx, RefineParams(object_sd_share=0.0))
    assert dice(narrow, truth) < 0.5  # the rule this replaced


def test_clicks_of_one_stroke_act_at_most_about_their_gap():
    """stroke_radii: a click solved with others acts at most click_scale x its distance to the nearest
    of them (in voxels of the finest spacing), never under min_radius; one click or no cap: unchanged."""
    from dataclasses import replace

    from medisam.predict.click_refine import stroke_radii

    params = RefineParams(stroke_cap=1.0)
    voxels = [(2, 10, 10), (2, 10, 18), (2, 10, 34)]
    got = stroke_radii([100.0, 5.0, 100.0], voxels, (1.0, 1.0, 1.0), params)
    assert got == [params.click_scale * 8, 5.0, params.click_scale * 16]
    assert stroke_radii([100.0, 100.0], [(2, 10, 10), (3, 10, 10)], (4.0, 1.0, 1.0), params) == [6.0, 6.0]
    wider = replace(params, stroke_cap=2.0)  # the 3D default: twice as far
    assert stroke_radii([100.0, 5.0, 100.0], voxels, (1.0, 1.0, 1.0), wider) == [
        2 * params.click_scale * 8, 5.0, 2 * params.click_scale * 16]
    assert stroke_radii([0.5, 0.5], [(2, 10, 10), (2, 10, 11)], (1.0, 1.0, 1.0), params) == [params.min_radius] * 2
    assert stroke_radii([100.0], voxels[:1], (1.0, 1.0, 1.0), params) == [100.0]
    assert stroke_radii([100.0, 100.0], voxels[:2], (1.0, 1.0, 1.0), replace(params, stroke_cap=None)) == [100.0] * 2
    assert stroke_radii([100.0, 100.0], voxels[:2], (1.0, 1.0, 1.0), replace(params, stroke_cap=4.0)) == [
        4.0 * params.click_scale * 8] * 2  # the 2D default (PARAMS_2D)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="stroke_cap is a positive multiple"):
            RefineParams(stroke_cap=bad)
