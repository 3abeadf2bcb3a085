"""A propagation's next box, moved by the object's motion, stays a valid box inside the plane: an
object leaving a video frame moved it past the edge, an inverted box, and the whole propagation was
a 400 ("box (1.25,66.25,63.75,64) is inverted") from the server and an error from the CLI."""

from __future__ import annotations

import pytest

from medisam.predict.propagation import box_in_plane, grown_box
from medisam.prompts import Box


@pytest.mark.parametrize("shift", [(0.0, 20.0), (0.0, -90.0), (90.0, 0.0), (-90.0, 5.0)])
def test_a_box_moved_past_the_planes_edge_is_the_edges_last_pixels(shift):
    box = grown_box(Box(10, 50, 30, 62), (2.0, 2.0), (64, 64), shift)
    assert 0 <= box.x0 < box.x1 <= 64 and 0 <= box.y0 < box.y1 <= 64
    assert box.x1 - box.x0 >= 1 and box.y1 - box.y0 >= 1
    box.check_inside(64, 64)


def test_a_box_inside_the_plane_is_only_grown():
    assert grown_box(Box(10, 20, 30, 40), (2.0, 3.0), (64, 64), (1.0, -1.0)) == Box(9, 16, 33, 42)
    assert box_in_plane(-5, -5, 70, 70, (64, 48)) == Box(0, 0, 48, 64)
