"""3D-box cost bound: the tri-planar plan stays within ``view_budget`` x the single-axis encodings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medisam.errors import InputError
from medisam.predict import Predictor, PropagationConfig, VolumeSession
from medisam.predict.view_plan import ViewGrid, interpolate_planes, plan_for, plan_views
from medisam.predict.volume import as_box3d

from test_volume_session import CountingEncoder, ball_volume

FAST = PropagationConfig(min_area_px=0, extra_margins_mm=(), encode_stride=1)  # encodings counted plane by plane


def test_thin_slab_is_planned_as_the_single_axis():
    # the 3-slice dcmqi CT case: both other views see the box edge-on (2 px at 256)
    plan = plan_views((3, 512, 512), (1.0, 0.81, 0.81), 0, as_box3d((74, 140, 0, 355, 371, 2)))
    assert [g.axis for g in plan.grids] == [0] and plan.planes == plan.encoded_at_most == plan.single_axis == 3
    assert "j skipped" in plan.describe() and "i skipped" in plan.describe()


@pytest.mark.parametrize("sampling", ["uniform", "secondary"])
@pytest.mark.parametrize("shape,spacing,box", [
    ((38, 52, 36), (1.0, 1.0, 1.0), (10, 5, 10, 32, 22, 24)),        # hippocampus-like
    ((155, 240, 240), (1.0, 1.0, 1.0), (60, 50, 40, 155, 113, 124)),  # BraTS tumour
    ((300, 512, 512), (2.5, 0.8, 0.8), (100, 100, 100, 400, 400, 179)),  # CT liver, large in-plane
    ((20, 64, 64), (1.0, 1.0, 1.0), (20, 20, 2, 30, 30, 17)),         # small in-plane, long
])
def test_plans_stay_within_the_budget(shape, spacing, box, sampling):
    b = as_box3d(box)
    plan = plan_views(shape, spacing, 0, b, budget=1.5, sampling=sampling)
    assert plan.encoded_at_most == plan.planes <= 1.5 * plan.single_axis
    assert plan.single_axis == b.z1 - b.z0 + 1
    for g in plan.grids:  # every plane lies in the box's range, both ends encoded
        idx = g.indices
        assert idx[0] == g.lo and idx[-1] == g.hi and list(idx) == sorted(set(idx))
    if sampling == "secondary":
        assert plan.grids[0].planes is None  # the session axis keeps every plane
    full = plan_views(shape, spacing, 0, b, budget=None)
    assert full.planes >= plan.planes and all(g.planes is None for g in full.grids)


@pytest.mark.parametrize("shape,spacing,box", [
    ((155, 240, 240), (1.0, 1.0, 1.0), (60, 50, 40, 155, 113, 124)),   # BraTS tumour, 1 mm: k interpolates
    ((192, 512, 512), (1.25, 0.57, 0.57), (48, 219, 0, 255, 478, 189)),  # thin-slice CT lung
    ((38, 52, 36), (1.0, 1.0, 1.0), (10, 5, 10, 32, 22, 24)),           # hippocampus-like
])
def test_plans_count_the_encodings_of_interpolating_views(shape, spacing, box):
    # on thin slices the single axis encodes one plane in two: the budget counts that (it counted
    # planes: "vs 190 along one axis" for 97), and the session axis's view encodes one plane in
    # four so that the other two views keep about half its planes within 1.5x
    config = PropagationConfig()
    b = as_box3d(box)
    plan = plan_for(config, shape, spacing, 0, b)
    single = plan_for(replace(config, views=1), shape, spacing, 0, b)
    planes = b.z1 - b.z0 + 1
    assert single.grid_strides == (2,) and single.encoded_at_most == plan.single_axis < single.planes == planes
    assert len(plan.grids) == 3 and plan.grid_strides[0] == 4
    assert plan.encoded_at_most <= plan.budget == int(1.5 * plan.single_axis)  # 1.5x, in encodings
    assert sum(g.num_planes for g in plan.grids[1:]) >= planes // 2 - 2  # the other views' share
    as_single = plan_views(shape, spacing, 0, b, stride_for=config.stride_for)  # session axis at 1 in 2
    assert as_single.budget == plan.budget and sum(g.num_planes for g in as_single.grids[1:]) < planes // 2
    for g, s in zip(plan.grids[1:], plan.grid_strides[1:]):  # the other views' strides follow their plane distance
        assert s == config.stride_for(g.spacing_zyx(shape, spacing)[g.axis])
    assert f"at most {plan.encoded_at_most} encodings vs {plan.single_axis} along one axis" in plan.describe()
    assert "(1 in 4 encoded)" in plan.describe()


@pytest.mark.parametrize("sampling", ["secondary", "uniform"])
def test_sampled_views_encode_each_of_their_planes(sampling):
    # a whole 0.7 mm CT: sampling the other views at <= 1.25 mm would let them interpolate and
    # visit twice the planes for the same encodings (unmeasured); they are sampled sparser instead
    plan = plan_views((600, 512, 512), (0.7, 0.7, 0.7), 0, as_box3d((0, 0, 0, 511, 511, 599)),
                      sampling=sampling, stride_for=PropagationConfig().stride_for)
    sampled = [(g, s) for g, s in zip(plan.grids, plan.grid_strides) if g.planes is not None]
    assert len(sampled) >= 2 and all(s == 1 for _, s in sampled)
    assert plan.encoded_at_most <= plan.budget


def test_a_sampled_session_view_encodes_each_of_its_planes():
    # view_sampling="uniform" samples the session axis too: its planes are several mm apart,
    # so the thin-slice session stride (1 in 4) must not apply to them (it did: 1 in 4 of the samples)
    shape, spacing, b = (192, 512, 512), (1.25, 0.57, 0.57), as_box3d((48, 219, 0, 255, 478, 189))
    plan = plan_for(PropagationConfig(view_sampling="uniform"), shape, spacing, 0, b)
    assert len(plan.grids) == 3 and plan.grids[0].planes is not None
    assert plan.grid_strides == (1, 1, 1) and plan.encoded_at_most == plan.planes <= plan.budget


def test_an_explicit_encode_stride_keeps_the_sampled_views():
    # --encode-stride 2 on 1 mm slices (what auto gives the single axis): the sampled views still
    # encode each of their planes, so they fit and vote (they were all dropped: single axis only)
    shape, spacing, b = (155, 240, 240), (1.0, 1.0, 1.0), as_box3d((60, 50, 40, 155, 113, 124))
    plan = plan_for(PropagationConfig(encode_stride=2), shape, spacing, 0, b)
    assert len(plan.grids) == 3 and plan.grid_strides == (2, 1, 1)
    assert all(g.planes is not None for g in plan.grids[1:]) and plan.encoded_at_most <= plan.budget


def test_views_across_thick_slices_are_skipped():
    # 5 mm CT slices of 0.57 mm pixels: the other views' planes would be 8.8x stretched (mostly
    # interpolation; a whole lung scored 0.861 fused against 0.949 on the session axis alone)
    b = as_box3d((55, 221, 0, 255, 477, 41))
    plan = plan_for(PropagationConfig(), (48, 512, 512), (5.0, 0.57, 0.57), 0, b)
    assert [g.axis for g in plan.grids] == [0] and plan.encoded_at_most == plan.single_axis == 42
    assert "j skipped: its pixels are 8.8x longer" in plan.describe() and "at most 4x" in plan.describe()
    # 3 mm slices of 1 mm pixels keep three views (measured better there); the limit is a setting
    assert len(plan_for(PropagationConfig(), (52, 512, 512), (3.0, 1.0, 1.0), 0, b).grids) == 3
    assert len(plan_for(PropagationConfig(view_max_anisotropy=10), (48, 512, 512), (5.0, 0.57, 0.57), 0, b).grids) == 3
    with pytest.raises(InputError, match="view_max_anisotropy"):
        PropagationConfig(view_max_anisotropy=0.5)


def test_plan_without_budget_pressure_keeps_every_plane():
    plan = plan_views((40, 40, 40), (1.0, 1.0, 1.0), 0, as_box3d((10, 10, 5, 12, 12, 34)))  # 30 + 3 + 3
    assert len(plan.grids) == 3 and all(g.planes is None for g in plan.grids) and plan.planes == 36


def test_interpolate_planes_is_linear_between_sampled_planes():
    planes = np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))]).astype(np.float32)
    out = interpolate_planes(planes, 0, np.array([0, 4, 6]), 7)
    assert np.allclose(out[:, 0, 0], [0, 0.25, 0.5, 0.75, 1, 0.5, 0])
    out1 = interpolate_planes(np.moveaxis(planes, 0, 2), 2, np.array([0, 4, 6]), 7)
    assert np.allclose(out1[0, 0], out[:, 0, 0])


def test_sampled_view_grid_crops_and_restores_its_planes():
    volume = np.arange(10 * 4 * 5, dtype=np.float32).reshape(10, 4, 5)
    box = as_box3d((0, 0, 1, 4, 3, 9))
    grid = ViewGrid.for_box(volume.shape, (1.0, 1.0, 1.0), 0, box).sampled(4)
    assert grid.indices == (1, 5, 6, 9) and grid.num_planes == 4  # ends and the middle slice 5
    crop = grid.crop(volume)
    assert np.array_equal(crop, volume[[1, 5, 6, 9]])
    assert grid.box(box, volume.shape) == as_box3d((0, 0, 0, 4, 3, 3))
    assert grid.sampled(20).planes is None  # more planes than the range: every plane
    restored = grid.restore(crop, volume.shape)
    assert np.allclose(restored, volume[1:10])  # linear data: interpolation is exact
    assert grid.spacing_zyx(volume.shape, (1.0, 1.0, 1.0))[0] == pytest.approx(8 / 3)
    with pytest.raises(InputError, match="view_budget"):
        PropagationConfig(view_budget=0.5)
    with pytest.raises(InputError, match="view_sampling"):
        PropagationConfig(view_sampling="random")


def test_session_encodes_at_most_the_budget(tiny_model, capsys):
    image, _ = ball_volume(shape=(14, 16, 16), radius=5.0, spacing=(1.0, 1.0, 1.0))
    box = (3, 3, 1, 12, 12, 12)  # 12 slices along k; 10 planes each along j and i
    counts, plans = {}, {}
    for name, config in (("single", PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1, encode_stride=1)),
                         ("budget", PropagationConfig(min_area_px=0, extra_margins_mm=(), encode_stride=1)),
                         ("interpolated", PropagationConfig(min_area_px=0, extra_margins_mm=())),  # 1 mm: stride 2
                         ("single-interpolated", PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1))):
        with CountingEncoder(tiny_model) as counter:
            session = VolumeSession(tiny_model, image, predictor=Predictor(tiny_model), config=config)
            session.add_box3d(box)
            labels = session.propagate(progress=True).array
            counts[name] = counter.calls
            plans[name] = session.view_plan(1)
        assert labels.shape == image.array.shape
        results = session.results(1)
        assert sorted(results) == list(range(1, 13))  # every slice of the range has a result
    assert counts["single"] == 12
    assert counts["single"] < counts["budget"] <= 1.5 * counts["single"]  # 12 + 3 + 3 sampled planes
    assert counts["interpolated"] < counts["budget"]  # k: its even planes; the sampled j, i views (3 mm): each plane
    assert counts["single-interpolated"] < counts["single"]
    # within the plan's bound: the interpolated single axis + half the session axis's planes
    assert counts["single-interpolated"] <= plans["single-interpolated"].encoded_at_most == plans["interpolated"].single_axis
    assert counts["interpolated"] <= plans["interpolated"].encoded_at_most <= plans["interpolated"].single_axis + 12 // 2
    assert "3D box plan: 3 view(s)" in capsys.readouterr().err  # the cost model, before the work


def test_a_coarser_session_axis_leaves_the_budget_to_the_other_views():
    # hippocampus-like, 1 mm: the single axis encodes one plane in two; the budget's unit stays that
    stride_for = PropagationConfig().stride_for
    shape, spacing, b = (36, 50, 35), (1.0, 1.0, 1.0), as_box3d((10, 12, 5, 25, 35, 30))
    auto = plan_views(shape, spacing, 0, b, budget=1.25, stride_for=stride_for)
    coarse = plan_views(shape, spacing, 0, b, budget=1.25, stride_for=stride_for, session_stride=4)
    assert coarse.single_axis == auto.single_axis == 26 // 2 + 2
    assert auto.grid_strides[0] == 2 and coarse.grid_strides[0] == 4 and coarse.grid_strides[1:] == (1, 1)
    assert coarse.encoded_at_most <= coarse.budget == auto.budget <= 1.5 * coarse.single_axis
    assert [g.num_planes for g in coarse.grids[1:]] > [g.num_planes for g in auto.grids[1:]]  # more planes to vote
    assert "k: 26 (1 in 4 encoded)" in coarse.describe()
    # a plan that falls back to the session axis alone is the single-axis propagation, at its stride
    slab = plan_views((3, 512, 512), (1.0, 0.81, 0.81), 0, as_box3d((74, 140, 0, 355, 371, 2)),
                      stride_for=stride_for, session_stride=4)
    assert len(slab.grids) == 1 and slab.grid_strides == (stride_for(1.0),)
    with pytest.raises(InputError, match="view_session_stride"):
        PropagationConfig(view_session_stride=0)


def test_session_follows_the_planned_session_stride(tiny_model):
    image, _ = ball_volume(shape=(14, 16, 16), radius=5.0, spacing=(1.0, 1.0, 1.0))
    box = (3, 3, 1, 12, 12, 12)  # 12 slices along k
    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), view_session_stride=3)
    with CountingEncoder(tiny_model) as counter:
        session = VolumeSession(tiny_model, image, predictor=Predictor(tiny_model), config=config)
        session.add_box3d(box)
        session.propagate(progress=False)
    plan = session.view_plan(1)
    assert plan.grid_strides[0] == 3 and counter.calls <= plan.encoded_at_most <= plan.budget
    assert sorted(session.results(1)) == list(range(1, 13))
    k_encoded = sorted(i for a, i in session.encoded_planes if a == 0)
    assert len(k_encoded) <= 12 // 3 + 2 < 12 // 2 + 2  # one plane in three (plus the seed and the last)
