"""A long click session's per-click work stays bounded (benchmarks/session_growth.py measures the time).

Sizes and counts only: which grids the walker computes a click's distances on, and whether a click
deep-copies the object's prompt state (every click so far and its 3D click layer)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_volume_session import ball_volume  # noqa: E402

from medisam.predict import PropagationConfig, VolumeSession  # noqa: E402
from medisam.predict import click_refine  # noqa: E402
from medisam.predict.axis_session import AxisSession  # noqa: E402
from medisam.predict.store import Click3D  # noqa: E402

FAST = PropagationConfig(views=1, min_area_px=0, extra_margins_mm=(), encode_batch=1)


def _crop(shape=(20, 80, 80), seed=0):  # noqa: ANN202 - a crop the walker refines, with many small clicks
    rng = np.random.default_rng(seed)
    img = rng.normal(100.0, 20.0, shape)
    model = np.zeros(shape, bool)
    model[5:15, 20:60, 20:60] = True
    img[model] += 80.0
    inside = np.ones(shape, bool)
    clicks = [Click3D((int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1])), int(rng.integers(0, shape[2]))),
                      bool(k % 2), 2.0, yields=bool(k % 3 == 0)) for k in range(40)]
    clicks.append(Click3D((10, 200, 40), False, 2.0))  # an earlier click far off a bounded window of the crop
    return img, model, inside, clicks, rng.random(shape) > 0.5


def _reference_inputs(img, model, inside, clicks, spacing, params, shared):  # noqa: ANN001, ANN202
    """The walker's prior weight and seeds as the code before this test computed them: every click on the
    whole crop (the result must be the same to the bit)."""
    shape = model.shape
    lam = np.full(shape, params.prior_weight)
    fg, bg, zero = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool)
    for c in clicks:
        d2 = click_refine.squared_distance(shape, c.zyx, spacing)
        fade = 1.0 - np.exp(-d2 / (2.0 * c.radius ** 2))
        if c.yields and params.negative_yields:
            given = (d2 <= c.radius ** 2) & shared
            zero |= given
            fade[given] = 1.0
        lam = lam * fade
        ball = (d2 <= params.seed_radius ** 2) & inside
        if all(0 <= v < n for v, n in zip(c.zyx, shape)):
            ball[c.zyx] = True
        if c.positive:
            fg, bg = fg | ball, bg & ~ball
        else:
            bg, fg = bg | ball, fg & ~ball
    return lam, fg, bg | (~inside & ~fg)


def test_an_old_click_is_applied_on_its_reach_not_the_whole_crop(monkeypatch):
    img, model, inside, clicks, shared = _crop()
    spacing, params = (2.0, 1.0, 1.0), click_refine.RefineParams()
    expected = _reference_inputs(img, model, inside, clicks, spacing, params, shared)
    grids, seen = [], {}
    distance = click_refine.squared_distance

    def counted(shape, zyx, sp):  # noqa: ANN001, ANN202
        grids.append(int(np.prod(shape)))
        return distance(shape, zyx, sp)

    def solve(lap, lam, prior, fg, bg):  # noqa: ANN001, ANN202
        seen.update(lam=lam.copy(), fg=fg.copy(), bg=bg.copy())
        return np.zeros(prior.shape)

    monkeypatch.setattr(click_refine, "squared_distance", counted)
    monkeypatch.setattr(click_refine, "solve_prior_walker", solve)
    click_refine.refine_crop(img, model, inside, clicks, spacing, params, shared=shared)
    crop = model.size
    # radius 2: a click's fade is exactly 1.0 beyond sqrt(80) * 2 voxels, so it is applied on a box of about
    # 37 x 37 x 19 voxels (a fifth of the crop); the click far off the crop costs nothing. Before: 41 whole crops.
    assert len(grids) == len(clicks) - 1
    assert max(grids) <= crop // 4
    for name, want in zip(("lam", "fg", "bg"), expected):
        assert np.array_equal(seen[name], want), name


def test_a_click_reads_the_object_without_copying_its_history(tiny_model, monkeypatch):
    image, inside = ball_volume(shape=(8, 32, 40))
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d((10, 6, 1, 30, 26, 6), obj_id=1)
    session.propagate(progress=False)
    copies = []
    real = AxisSession.object_state

    def counted(self, obj_id):  # noqa: ANN001, ANN202 - a deep copy of every click so far and the click layer
        copies.append(obj_id)
        return real(self, obj_id)

    monkeypatch.setattr(AxisSession, "object_state", counted)
    for zyx, positive in (((4, 16, 20), True), ((4, 8, 12), False), ((3, 20, 24), True)):
        session.add_click(zyx, positive, obj_id=1)
    assert len(session.store.objects[1].clicks3d) == 3
    assert copies == []  # before: one deep copy of the object (all its clicks, its layer) per click


def test_a_long_click_session_applies_each_click_once(tiny_model, monkeypatch):
    """Clicks with an undo after every third: each click computes distances for its new click and the few
    that its window and radii need, not for every click the object holds (before: one per held click)."""
    image, _ = ball_volume(shape=(8, 32, 40))
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d((10, 6, 1, 30, 26, 6), obj_id=1)
    session.propagate(progress=False)
    calls = []
    distance = click_refine.squared_distance

    def counted(shape, zyx, sp):  # noqa: ANN001, ANN202
        calls[-1] += 1
        return distance(shape, zyx, sp)

    monkeypatch.setattr(click_refine, "squared_distance", counted)
    rng = np.random.default_rng(4)
    for i in range(1, 25):
        calls.append(0)
        session.add_click((int(rng.integers(1, 7)), int(rng.integers(6, 27)), int(rng.integers(10, 31))),
                          bool(i % 2), obj_id=1)
        if i % 3 == 0:
            session.undo()
    held = len(session.store.objects[1].clicks3d)
    assert held >= 15
    assert max(calls[5:]) <= 3  # the new click's distances (its fade and seeds, its reach): not ``held``
    assert session.walker_memo.hits >= 20
