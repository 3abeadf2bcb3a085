"""Simulated correction scribbles (medisam.prompting.scribble_sim) on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.prompting.scribble_sim import error_scribble_2d, error_scribble_3d, longest_run
from medisam.prompting.shapes import scribble_points


def test_the_longest_run_of_a_bar_runs_along_it_through_its_middle():
    region = np.zeros((20, 40), bool)
    region[8:12, 5:35] = True  # a 30 x 4 horizontal bar
    (xa, ya), (xb, yb) = longest_run(region)
    assert abs(ya - yb) < 1e-9 and 9 <= ya < 11  # horizontal, through the bar's middle rows
    assert min(xa, xb) < 6 and max(xa, xb) > 34  # end to end
    lone = np.zeros((5, 5), bool)
    lone[2, 3] = True
    assert longest_run(lone) == [(3.5, 2.5), (3.5, 2.5)]
    with pytest.raises(ValueError):
        longest_run(np.zeros((5, 5), bool))


def test_a_2d_scribble_marks_the_largest_error_with_its_sign_and_stays_inside_it():
    truth = np.zeros((40, 40), bool)
    truth[10:30, 10:30] = True
    pred = truth.copy()
    pred[10:30, 22:30] = False  # missed: 160 pixels
    pred[2:5, 10:20] = True  # leak: 30 pixels
    line, positive = error_scribble_2d(pred, truth)
    assert positive
    clicks = scribble_points(line, truth.shape).coords.astype(int)
    assert all(truth[y, x] and not pred[y, x] for x, y in clicks) and len(clicks) >= 2
    pred2 = truth.copy()
    pred2[0:8, 0:40] = True  # a leak larger than anything missed
    line, positive = error_scribble_2d(pred2, truth)
    assert not positive and all(pred2[y, x] and not truth[y, x]
                                for x, y in scribble_points(line, truth.shape).coords.astype(int))
    assert error_scribble_2d(truth, truth) is None


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_3d_scribble_lies_on_the_largest_cross_section_of_the_largest_error(axis):
    truth = np.zeros((12, 16, 20), bool)
    truth[2:10, 3:13, 4:16] = True
    pred = truth.copy()
    pred[2:10, 3:13, 11:16] = False  # missed: the x >= 11 part
    k, line, positive = error_scribble_3d(pred, truth, axis)
    rows, cols = (a for a in range(3) if a != axis)
    plane_hw = (truth.shape[rows], truth.shape[cols])
    assert positive
    for x, y in scribble_points(line, plane_hw).coords.astype(int):
        v = [k, k, k]
        v[rows], v[cols] = y, x
        assert truth[tuple(v)] and not pred[tuple(v)]
    assert error_scribble_3d(truth, truth, axis) is None
