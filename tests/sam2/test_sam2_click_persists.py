"""A click on a frame SAM 2 has tracked is kept by the next propagation (it becomes a conditioning frame).

With sam2's default (``add_all_frames_to_correct_as_cond`` off) such a click corrected that frame's
output only, and the next propagation tracked the frame again from the prompt frames: the click was
lost, in the web UI, the server and the CVPR25 protocol alike.
"""

from __future__ import annotations

import numpy as np

from medisam.predict import sam2_state
from tests.volume.test_sam2_undo_restores import _boxed_and_propagated


def test_a_click_on_a_tracked_frame_survives_the_next_propagation(sam2_tiny):
    session, _ = _boxed_and_propagated(sam2_tiny)  # the 3D box's prompt frame is 3; frame 5 is tracked
    tracked = session.results(1)[5].mask.copy()
    clicked = session.add_points(5, [(20, 14, 0)], obj_id=1).mask.copy()
    assert not np.array_equal(clicked, tracked)  # the click changed the frame
    session.propagate(progress=False)
    np.testing.assert_array_equal(session.results(1)[5].mask, clicked)
    assert sam2_state.is_conditioning(session._state, 1, 5)
    assert session.results(1)[5].source == "prompt"
