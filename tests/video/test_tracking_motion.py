"""The tracker's motion estimate (template matching) on synthetic frames."""

from __future__ import annotations

import numpy as np

from medisam.predict.tracking_motion import displacement, shift_mask


def _disk(cx: int, cy: int, r: int = 9, shape=(64, 96)) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def test_displacement_finds_a_fast_object_and_keeps_a_still_one():
    rng = np.random.default_rng(0)
    a, b = _disk(30, 30), _disk(36, 27)
    prev = np.where(a, 200.0, 40.0) + rng.normal(0, 3, a.shape)
    cur = np.where(b, 200.0, 40.0) + rng.normal(0, 3, a.shape)
    assert displacement(prev, cur, a) == (6, -3)
    assert np.array_equal(shift_mask(a, (6, -3)), b)
    assert displacement(prev, prev + rng.normal(0, 3, a.shape), a) == (0, 0)
    assert displacement(np.zeros(a.shape), cur, a) == (0, 0)  # no texture: no guess
    assert displacement(prev, cur, np.zeros_like(a)) == (0, 0)


def test_displacement_of_a_colour_only_object_on_colour_frames():
    """A red disk on pink of its grey level moves (6, -3): matched on the colour frames it is found; on the
    grey frames it is noise. A grey frame shown in colour (R = G = B) gives the grey frame's answer."""
    rng = np.random.default_rng(1)
    a, b = _disk(30, 30), _disk(36, 27)
    red, pink = np.array([230.0, 110.0, 110.0]), np.array([190.0, 130.0, 130.0])  # both 150 grey
    prev = np.where(a[..., None], red, pink) + rng.normal(0, 4, a.shape + (3,))
    cur = np.where(b[..., None], red, pink) + rng.normal(0, 4, a.shape + (3,))
    assert displacement(prev, cur, a) == (6, -3)
    assert displacement(prev.mean(-1), cur.mean(-1), a) != (6, -3)  # the grey frames do not show it
    grey_prev = np.where(a, 200.0, 40.0) + rng.normal(0, 3, a.shape)
    grey_cur = np.where(b, 200.0, 40.0) + rng.normal(0, 3, a.shape)
    assert displacement(np.repeat(grey_prev[..., None], 3, -1), np.repeat(grey_cur[..., None], 3, -1), a) == \
        displacement(grey_prev, grey_cur, a) == (6, -3)


def test_shift_mask_drops_what_leaves_the_frame():
    m = _disk(90, 30)
    moved = shift_mask(m, (10, 0))
    assert 0 < moved.sum() < m.sum() and not shift_mask(m, (200, 0)).any()


def test_displacement_of_a_dim_object_in_strong_noise(monkeypatch):
    """Fluorescence-like frames: a dim nucleus in pixel noise twice its contrast.
    Smoothing at the object's scale keeps the match on the object, not on the noise."""
    from medisam.predict import tracking_motion

    a, b = _disk(40, 32, r=12), _disk(44, 30, r=12)
    errors = {}
    for fraction in (0.0, tracking_motion.SMOOTH_FRACTION):
        monkeypatch.setattr(tracking_motion, "SMOOTH_FRACTION", fraction)
        err = []
        for seed in range(20):
            rng = np.random.default_rng(seed)
            prev = np.where(a, 70.0, 40.0) + rng.normal(0, 60, a.shape)
            cur = np.where(b, 70.0, 40.0) + rng.normal(0, 60, a.shape)
            dx, dy = displacement(prev, cur, a)
            err.append(np.hypot(dx - 4, dy + 2))
        errors[fraction] = float(np.mean(err))
    assert errors[tracking_motion.SMOOTH_FRACTION] <= 2.5  # about 2 px (4 without smoothing)
    assert errors[tracking_motion.SMOOTH_FRACTION] < 0.75 * errors[0.0]
