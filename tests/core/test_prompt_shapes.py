"""Drawn prompts: RECIST line -> box/points/3D box, scribble -> points, lasso -> mask."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.prompting.shapes import lasso_mask, recist_box3d, recist_prompt, scribble_points


def test_recist_horizontal_line():
    p = recist_prompt((20, 50), (60, 50), (100, 100), pixel_mm=(0.5, 0.5))
    # length 40 px; across 0.8 * 40 = 32 (16 each side); margin 4 px
    assert (p.box.x0, p.box.y0, p.box.x1, p.box.y1) == pytest.approx((16, 30, 64, 70))
    assert p.points.coords.tolist() == [[30, 50], [40, 50], [50, 50]]
    assert p.points.labels.tolist() == [1, 1, 1]
    assert p.length_mm == pytest.approx(20.0)


def test_recist_diagonal_line_is_clipped_to_the_slice():
    p = recist_prompt((0, 0), (30, 40), (45, 35))
    assert p.box.x0 == 0 and p.box.y0 == 0 and p.box.x1 == 35 and p.box.y1 == 45
    assert p.length_mm == pytest.approx(50.0)
    with pytest.raises(PromptError):
        recist_prompt((5, 5), (5.2, 5.1), (20, 20))
    with pytest.raises(PromptError):
        recist_prompt((5, 5), (50, 5), (20, 20))


def test_recist_box3d_depth_from_the_long_axis_and_slice_spacing():
    p = recist_prompt((20, 50), (60, 50), (100, 100), pixel_mm=(0.5, 0.5))  # 20 mm long
    b = recist_box3d(p, slice_index=10, num_slices=30, slice_mm=2.0)
    # depth 0.8 * 20 mm = 16 mm -> 8 mm each side -> 4 slices of 2 mm
    assert (b.z0, b.z1) == (6, 14)
    assert (b.x0, b.y0, b.x1, b.y1) == (16, 30, 63, 69)
    thin = recist_box3d(p, slice_index=1, num_slices=3, slice_mm=5.0)
    assert (thin.z0, thin.z1) == (0, 2)
    with pytest.raises(PromptError):
        recist_box3d(p, slice_index=3, num_slices=3, slice_mm=1.0)


def test_scribble_points_along_the_polyline():
    pts = scribble_points([(0, 0), (16, 0), (16, 16)], (20, 20), spacing_px=8)
    assert pts.coords.tolist() == [[0, 0], [8, 0], [16, 0], [16, 8], [16, 16]]
    assert set(pts.labels.tolist()) == {1}
    neg = scribble_points([(3, 4)], (20, 20), positive=False)
    assert neg.coords.tolist() == [[3, 4]] and neg.labels.tolist() == [0]
    many = scribble_points([(0, 5), (99, 5)], (10, 100), spacing_px=1, max_points=4)
    assert len(many.coords) == 4 and many.coords[-1].tolist() == [99, 5]
    with pytest.raises(PromptError):
        scribble_points([], (10, 10))
    with pytest.raises(PromptError, match=r"scribble vertex 1 \(21, 5\) lies outside the 20x10"):
        scribble_points([(0, 5), (21, 5)], (10, 20))  # never moved onto the slice
    assert scribble_points([(20, 10)], (10, 20)).coords.tolist() == [[19, 9]]  # the far edge is on the slice


def test_lasso_fills_the_polygon():
    mask = lasso_mask([(2, 2), (7, 2), (7, 5), (2, 5)], (10, 12))
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:6, 2:8] = True
    assert np.array_equal(mask, expected)
    with pytest.raises(PromptError):
        lasso_mask([(1, 1), (2, 2)], (10, 10))
    with pytest.raises(PromptError, match="lasso vertex 0 .* lies outside"):
        lasso_mask([(50, 50), (60, 50), (60, 60)], (10, 10))
    with pytest.raises(PromptError, match="encloses no pixel"):
        lasso_mask([(10, 2), (10, 8), (9.6, 5)], (10, 10))  # on the right edge: no pixel inside
    # a line or a point encloses nothing: its outline alone was taken as the mask (21 pixels, stop 69)
    for line in ([(10, 10), (20, 10), (30, 10)], [(5, 5), (5, 5), (5, 5)], [(1, 1), (9, 9), (5, 5)]):
        with pytest.raises(PromptError, match="encloses 0 square pixels: its 3 vertices lie on a line or a point"):
            lasso_mask(line, (40, 40))
