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


def test_shift_mask_drops_what_leaves_the_frame():
    m = _disk(90, 30)
    moved = shift_mask(m, (10, 0))
    assert 0 < moved.sum() < m.sum() and not shift_mask(m, (200, 0)).any()
