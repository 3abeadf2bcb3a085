"""Metrics: known answers computed by hand and the empty-mask policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medisam.bench.metrics import hd95, nsd, score


def _squares():
    truth = np.zeros((12, 12), bool)
    truth[2:6, 2:6] = True
    pred = np.zeros((12, 12), bool)
    pred[2:6, 3:7] = True  # the same 4x4 square shifted one column
    return pred, truth


def test_nsd_matches_the_deepmind_surface_definition_by_hand():
    """Surfels on the pixel-corner grid: straight edges have length 1 (x spacing 0.5 mm:
    horizontal ones 0.5), corners the diagonal of a half cell. Shifting a 4x4 square by
    one column keeps only the top and bottom edge elements shared (distance 0); the
    others are one column (0.5 mm) away."""
    pred, truth = _squares()
    # isotropic 1 mm: shared elements 2 x (3 straight + 1 corner) per mask out of 12 + 4 corners
    c = math.sqrt(0.5)
    expected = 2 * 2 * (3 + c) / (2 * (12 + 4 * c))
    assert nsd(pred, truth, (1.0, 1.0), tolerance_mm=0.0) == pytest.approx(expected, abs=1e-5)
    assert nsd(pred, truth, (1.0, 1.0), tolerance_mm=1.0) == pytest.approx(1.0)
    # spacing (x, y) = (0.5, 1): horizontal elements 0.5 long, vertical 1, corner diagonal sqrt(.25^2 + .5^2)
    c = math.hypot(0.25, 0.5)
    expected = 2 * 2 * (3 * 0.5 + c) / (2 * (6 * 0.5 + 6 * 1.0 + 4 * c))
    assert nsd(pred, truth, (0.5, 1.0), tolerance_mm=0.4) == pytest.approx(expected, abs=1e-5)  # 0.3665
    assert nsd(pred, truth, (0.5, 1.0), tolerance_mm=0.5) == pytest.approx(1.0)
    # spacing is ITK (x, y): the same shift along y instead is 1 mm away and fails 0.5 mm
    assert nsd(pred.T, truth.T, (0.5, 1.0), tolerance_mm=0.5) < 1.0


def test_nsd_far_duplicate_and_3d():
    truth = np.zeros((40, 40), bool)
    truth[5:15, 5:15] = True
    pred = truth.copy()
    pred[25:35, 25:35] = True  # congruent copy far away: 1/3 of all surface is wrong
    assert nsd(pred, truth, tolerance_mm=2.0) == pytest.approx(2 / 3, abs=1e-5)
    vol = np.zeros((10, 10, 10), bool)
    vol[2:6, 2:6, 2:6] = True
    assert nsd(vol, vol, (1, 1, 3)) == pytest.approx(1.0)


def test_hd95_in_mm():
    pred, truth = _squares()
    assert hd95(pred, truth) == pytest.approx(1.0)
    assert hd95(pred, truth, (0.5, 1.0)) == pytest.approx(0.5)
    assert hd95(truth, truth) == 0.0


def test_empty_mask_policy():
    empty = np.zeros((8, 8), bool)
    full = np.zeros((8, 8), bool)
    full[2:5, 2:5] = True
    both = score(empty, empty)
    assert (both.dsc, both.iou, both.nsd, both.hd95) == (1.0, 1.0, 1.0, 0.0)
    for a, b in ((empty, full), (full, empty)):
        one = score(a, b)
        assert (one.dsc, one.iou, one.nsd) == (0.0, 0.0, 0.0)
        assert math.isnan(one.hd95)


def test_shape_mismatch_is_an_input_error():
    from medisam.errors import InputError

    with pytest.raises(InputError, match="does not match"):
        score(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
