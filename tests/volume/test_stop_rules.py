"""Stop rules of single-slice-box propagation and the slice range (synthetic masks; tiny model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medisam.cli import main
from medisam.errors import PromptError
from medisam.predict import PropagationConfig, VolumeSession
from medisam.predict.slice_box import SliceBoxRules
from medisam.predict.stop_rules import SeedStopper, StopRules, seed_stop_reason, size_bounded
from medisam.prompts import Box

from test_volume_session import ball_volume


def disc(r: float, cy: float = 20, cx: float = 20, shape=(40, 40)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_each_rule_fires_on_its_own_change():
    seed = disc(8)
    rules = StopRules()
    assert seed_stop_reason(disc(7.5), 0.9, seed, seed, 0.9, 1, rules) is None  # gradual shrinking goes on
    # a jump to another structure: consecutive masks hardly overlap (not checked next to the seed)
    moved = disc(7, cy=8, cx=8)
    assert seed_stop_reason(moved, 0.9, disc(7), seed, 0.9, rules.grace + 1, rules) == "shape change"
    assert seed_stop_reason(moved, 0.9, disc(7), seed, 0.9, rules.grace, rules) is None
    # a leak: the mask outgrows the seed (area, or box side against the user's box)
    assert seed_stop_reason(disc(12.5), 0.9, disc(12), seed, 0.9, 2, rules) == "growth"
    wide = np.zeros_like(seed)
    wide[18:23, 4:36] = True  # box 32 px wide against a 17 px seed: 1.9x
    assert seed_stop_reason(wide, 0.9, wide, seed, 0.9, 2, StopRules(min_consecutive_dice=0)) == "growth"
    # a large user box allows a larger mask than a small seed mask would
    big = disc(10)
    assert seed_stop_reason(big, 0.9, big, disc(5), 0.9, 2, rules, seed_box_hw=(21, 21)) is None
    assert seed_stop_reason(big, 0.9, big, disc(5), 0.9, 2, rules) == "growth"
    # regrowth after a narrowing
    past = rules.grace + 1
    assert seed_stop_reason(disc(6), 0.9, disc(5.8), seed, 0.9, past, rules, min_area=40) == "regrowth"
    assert seed_stop_reason(disc(6), 0.9, disc(5.8), seed, 0.9, past, rules, min_area=100) is None
    assert seed_stop_reason(disc(6), 0.9, disc(5.8), seed, 0.9, rules.grace, rules, min_area=40) is None  # grace
    # regrowth_after: a run that narrowed only a little (a seed on the object's waist) may widen again
    waist = replace(rules, regrowth_after=0.5)
    # 40 <= half the seed
    assert seed_stop_reason(disc(6), 0.9, disc(5.8), seed, 0.9, past, waist, min_area=40) == "regrowth"
    assert seed_stop_reason(disc(6), 0.9, disc(5.8), disc(4.5), 0.9, past, waist, min_area=40) is None
    assert seed_stop_reason(disc(6), 0.9, disc(5.8), disc(4.5), 0.9, past, rules, min_area=40) == "regrowth"
    # optional rules, off by default
    assert seed_stop_reason(disc(2), 0.2, disc(2), seed, 0.9, 2, rules) is None
    assert seed_stop_reason(disc(2), 0.9, disc(2), seed, 0.9, 2, StopRules(min_seed_area_ratio=0.1)) == "area collapse"
    # drift: the centroid leaves the user's box (12..29) by more than max_centroid_shift half-sides
    assert seed_stop_reason(disc(3, cy=20, cx=36), 0.9, disc(3, cy=20, cx=36), seed, 0.9, 2, rules,
                            seed_box=(12, 12, 29, 29)) is None
    assert seed_stop_reason(disc(3, cy=20, cx=36), 0.9, disc(3, cy=20, cx=36), seed, 0.9, 2,
                            StopRules(max_centroid_shift=1.5), seed_box=(12, 12, 29, 29)) == "drift"
    assert seed_stop_reason(disc(8), 0.2, disc(8), seed, 0.9, 2, StopRules(min_seed_score_ratio=0.5)) == "low score"
    # nothing fires when the rules are off; empty masks are the caller's business
    off = StopRules.off()
    for mask, prev in ((moved, disc(7)), (disc(15), disc(15)), (wide, wide)):
        assert seed_stop_reason(mask, 0.0, prev, disc(3), 0.9, 5, off, min_area=1) is None
    assert seed_stop_reason(np.zeros_like(seed), 0.9, seed, seed, 0.9, 2, rules) is None


def test_stopper_keeps_the_smallest_area_of_the_run():
    seed = disc(8)
    stopper = SeedStopper(seed, 0.9, Box(12, 12, 29, 29), StopRules())
    assert stopper.box_hw == (17, 17)
    for r, distance in ((7, 1), (5, 2), (4, 3)):
        assert stopper.reason(disc(r), 0.9, disc(r + 1), distance) is None
    assert stopper.min_area == int(disc(4).sum())
    assert stopper.reason(disc(6.5), 0.9, disc(6), StopRules().grace + 1) == "regrowth"  # > 1.5x the narrowest slice
    resumed = SeedStopper(seed, 0.9, None, StopRules(), accepted=[disc(7), disc(4), np.zeros_like(seed)])
    assert resumed.min_area == int(disc(4).sum())


def test_grace_is_bounded_by_the_objects_size_on_thick_slices():
    # a 17 px box of 0.5 mm pixels (8.5 mm) on 5 mm slices: the object spans about 2 slices, so the
    # grace is ceil(8.5 / 5) = 2 slices, not 5 (25 mm past it), and the score rule applies
    seed, box, moved = disc(8), Box(12, 12, 29, 29), disc(7, cy=8, cx=8)
    thick = SeedStopper(seed, 0.9, box, StopRules(), spacing=(5.0, 0.5, 0.5))
    assert thick.rules.grace == 2 and thick.rules.min_seed_score_ratio == StopRules().thin_min_seed_score_ratio
    assert thick.reason(disc(7.5), 0.8, seed, 1) is None
    assert thick.reason(disc(7.5), 0.6, seed, 1) == "low score"  # below 0.8 of the seed's 0.9
    assert thick.reason(moved, 0.9, disc(7), 3) == "shape change"  # past the bounded grace
    # the same box on 1 mm slices (8.5 slices long), without a spacing, or with the rules off: as before
    thin = SeedStopper(seed, 0.9, box, StopRules(), spacing=(1.0, 0.5, 0.5))
    assert thin.rules == StopRules() and thin.reason(moved, 0.9, disc(7), 3) is None
    assert thin.reason(disc(7.5), 0.6, seed, 1) is None
    assert SeedStopper(seed, 0.9, box, StopRules()).rules == StopRules()
    assert SeedStopper(seed, 0.9, box, StopRules.off(), spacing=(5.0, 0.5, 0.5)).rules == StopRules.off()
    # the user's override: the grace in slices alone
    free = replace(StopRules(), size_grace=float("inf"))
    assert SeedStopper(seed, 0.9, box, free, spacing=(5.0, 0.5, 0.5)).rules == free
    # no box (points): the seed mask's box; anisotropic pixels: the shorter side in mm
    assert SeedStopper(seed, 0.9, None, StopRules(), spacing=(5.0, 0.5, 0.5)).rules.grace == 2
    assert size_bounded(StopRules(), (17, 40), (6.0, 0.5, 1.0)).grace == 3  # ceil(min(17, 20) mm / 6 mm)


def test_session_stops_where_a_rule_fires_and_box3d_ignores_the_rules(tiny_model):
    image, _ = ball_volume(shape=(8, 32, 40))
    never = StopRules(max_seed_growth=0.0)  # every non-empty propagated mask "grows": stop next to the seed
    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1, stop_rules=never,
                               slice_box=SliceBoxRules(enabled=False))  # the first pass: the chain alone
    session = VolumeSession(tiny_model, image, config=config)
    seed = session.add_box(4, (14, 10, 26, 22))
    results = list(session.iter_propagate())
    if seed.mask.any():
        stopped = [r for r in results if r.stop is not None]
        assert {r.slice for r in results} <= {3, 5}
        assert all(r.stop == "growth" and not r.mask.any() for r in stopped)
    # the same rules do not apply to a 3D box (its range and extent bound it)
    box3d = VolumeSession(tiny_model, image, config=config)
    box3d.add_box3d((14, 10, 1, 26, 22, 6))
    assert all(r.stop != "growth" for r in box3d.iter_propagate())


def test_slice_range_bounds_a_slice_box(tiny_model):
    image, _ = ball_volume(shape=(8, 32, 40))
    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1, stop_rules=StopRules.off())
    session = VolumeSession(tiny_model, image, config=config)
    session.add_box(4, (14, 10, 26, 22), slices=(3, 5))
    session.propagate(progress=False)
    assert set(session.results(1)) <= {3, 4, 5}
    assert session.object_state(1).slice_range == (3, 5)
    labels = session.label_map().array
    assert not labels[[0, 1, 2, 6, 7]].any()
    for bad, message in (((5, 3), "inverted"), ((0, 9), "out of range"), ((0,), "two slice")):
        with pytest.raises(PromptError, match=message):
            session.add_box(4, (14, 10, 26, 22), obj_id=2, slices=bad)
    with pytest.raises(PromptError, match="outside"):
        session.add_box(1, (14, 10, 26, 22), obj_id=3, slices=(3, 5))
    session.add_box3d((14, 10, 1, 26, 22, 6), obj_id=4)
    with pytest.raises(PromptError, match="3D box"):
        session.add_box(3, (14, 10, 26, 22), obj_id=4, slices=(2, 4))


def test_cli_slices(tmp_path):
    import SimpleITK as sitk

    image, _ = ball_volume(shape=(8, 32, 40))
    path = tmp_path / "vol.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(image.array), str(path))
    tiny = ["--model", "litemedsam-tiny", "--device", "cpu", "--no-progress"]
    out = tmp_path / "m.nii.gz"
    rc = main(["propagate", str(path), "--slice", "4", "--box", "14,10,26,22", "--slices", "3:5", "-o", str(out)]
              + tiny)
    assert rc == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert not labels[[0, 1, 2, 6, 7]].any()
    for args in (["--slices", "5"], ["--slices", "a:b"], ["--slices", "5:3"]):
        assert main(["propagate", str(path), "--slice", "4", "--box", "14,10,26,22", "-o",
                     str(tmp_path / "x.nii.gz")] + args + tiny) == 2
    assert main(["propagate", str(path), "--box3d", "14,10,1,26,22,6", "--slices", "1:5", "-o",
                 str(tmp_path / "y.nii.gz")] + tiny) == 2


def test_estimate_box_range_and_extent():
    from medisam.predict.slice_box import estimate_box

    user = Box(12, 12, 29, 29)
    masks = [(5, disc(8)), (6, disc(6)), (7, np.zeros((40, 40), bool)), (3, disc(10, cx=24)), (2, disc(3))]
    e = estimate_box(4, user, masks, (0, 9), (40, 40), SliceBoxRules())
    assert (e.lo, e.hi) == (1, 7)  # non-empty slices 2..6, one slice of margin; the empty stop slice ignored
    assert e.box == user  # default: the user's box is the x/y extent
    u = estimate_box(4, user, masks, (2, 6), (40, 40), SliceBoxRules(slice_margin=2, xy_margin=1, union=True))
    assert (u.lo, u.hi) == (2, 6)  # within the run's limits
    assert (u.box.x0, u.box.y0, u.box.x1, u.box.y1) == (11, 9, 36, 32)  # union with disc(10, cx=24), grown 1 px
    assert estimate_box(4, None, [(4, np.zeros((40, 40), bool))], (0, 9), (40, 40), SliceBoxRules()) is None


def test_slice_box_runs_in_two_passes_inside_the_estimate(tiny_model):
    from medisam.predict import ViewProgress

    image, _ = ball_volume(shape=(10, 32, 40))
    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1, slice_box=SliceBoxRules(enabled=True))
    session = VolumeSession(tiny_model, image, config=config)
    seed = session.add_box(5, (14, 10, 26, 22), slices=(2, 8))
    planned = session.planned_slices()
    items = list(session.iter_propagate())
    first = [i for i in items if isinstance(i, ViewProgress)]
    second = [i for i in items if not isinstance(i, ViewProgress)]
    assert all(i.source == "estimate" and i.axis == 0 and 2 <= i.index <= 8 for i in first)
    assert len(items) <= planned and session.planned_slices() == 0
    results = session.results(1)
    if seed.mask.any():
        chain = [i.index for i in first if i.mask.any()] + [5]
        lo, hi = max(2, min(chain) - 1), min(8, max(chain) + 1)
        assert {r.slice for r in second} == set(range(lo, hi + 1)) - {5}
        assert set(results) == set(range(lo, hi + 1))
        for r in second:  # the second pass stays inside the user's box
            assert not r.mask[:, :14].any() and not r.mask[:, 26:].any() and not r.mask[:10].any()
    # the first pass alone (enabled=False) shows the chain's masks; undo brings the prompt back
    old = VolumeSession(tiny_model, image, config=replace(config, slice_box=SliceBoxRules(enabled=False)))
    old.add_box(5, (14, 10, 26, 22), slices=(2, 8))
    assert all(not isinstance(i, ViewProgress) for i in old.iter_propagate())
    session.add_box(5, (13, 10, 27, 22))
    session.undo()
    assert tuple(session.slice_prompts(5, 1).box.as_array()) == (14, 10, 26, 22)
    assert set(session.results(1)) == set(results)
    session.reset()
    assert session.object_ids == [] and not session.label_map().array.any()


def test_cancelled_first_pass_resumes(tiny_model):
    image, _ = ball_volume(shape=(10, 32, 40))
    session = VolumeSession(tiny_model, image, config=PropagationConfig(min_area_px=0, views=1,
                                                                         stop_rules=StopRules.off(),
                                                                         slice_box=SliceBoxRules(enabled=True)))
    session.add_box(5, (14, 10, 26, 22))
    it = session.iter_propagate()
    got = [next(it) for _ in range(2)]
    it.close()
    rest = list(session.iter_propagate())
    assert {(type(i).__name__, getattr(i, "index", getattr(i, "slice", None))) for i in got}.isdisjoint(
        {(type(i).__name__, getattr(i, "index", getattr(i, "slice", None))) for i in rest})
    assert session.planned_slices() == 0


def test_clip_box_is_the_user_box_grown_within_the_plane():
    from medisam.predict.slice_box import clip_box

    box = Box(10, 20, 30, 30)
    assert clip_box(box, (40, 40), SliceBoxRules(clip_margin=0.0)) == box  # the user's box itself
    default = clip_box(box, (40, 40), SliceBoxRules())  # default: a tenth of each side, each way
    assert (default.x0, default.y0, default.x1, default.y1) == (8.0, 19.0, 32.0, 31.0)
    grown = clip_box(box, (40, 40), SliceBoxRules(clip_margin=0.25))  # a quarter of each side, each way
    assert (grown.x0, grown.y0, grown.x1, grown.y1) == (5.0, 17.5, 35.0, 32.5)
    edge = clip_box(Box(0, 0, 20, 40), (40, 30), SliceBoxRules(clip_margin=0.5))
    assert (edge.x0, edge.y0, edge.x1, edge.y1) == (0.0, 0.0, 30.0, 40.0)  # within the plane (H 40, W 30)
    assert clip_box(None, (40, 40), SliceBoxRules()) is None  # points or a mask: nothing to clip to
    assert clip_box(box, (40, 40), SliceBoxRules(clip=False)) is None


def test_slice_box_chain_stays_inside_the_users_box(tiny_model):
    image, _ = ball_volume(shape=(10, 32, 40))
    config = PropagationConfig(min_area_px=0, views=1, stop_rules=StopRules.off(),
                               slice_box=SliceBoxRules(clip_margin=0.0))
    clipped = VolumeSession(tiny_model, image, config=config)
    clipped.add_box(5, (14, 10, 26, 22))
    results = [r for r in clipped.iter_propagate() if r.slice != 5]
    assert results and all(r.mask[:, :14].sum() + r.mask[:, 26:].sum() + r.mask[:10].sum() + r.mask[22:].sum() == 0
                           for r in results)
    # the default clip: the user's box grown by a tenth of its sides (x 12.8..27.2, y 8.8..23.2)
    grown = VolumeSession(tiny_model, image, config=replace(config, slice_box=SliceBoxRules()))
    grown.add_box(5, (14, 10, 26, 22))
    results = [r for r in grown.iter_propagate() if r.slice != 5]
    assert results and all(r.mask[:, :12].sum() + r.mask[:, 28:].sum() + r.mask[:8].sum() + r.mask[24:].sum() == 0
                           for r in results)
    # the stop rules still apply inside the box: a rule that fires on every slice stops next to the seed
    never = VolumeSession(tiny_model, image, config=replace(config, stop_rules=StopRules(max_seed_growth=0.0)))
    if never.add_box(5, (14, 10, 26, 22)).mask.any():
        assert {r.slice for r in never.iter_propagate()} <= {4, 5, 6}
