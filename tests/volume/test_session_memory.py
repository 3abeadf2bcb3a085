"""A long VolumeSession keeps bounded state: results of old edits are pruned (issue 16)."""

from __future__ import annotations

import numpy as np

from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig, VolumeSession
from medisam.predict.session import KEEP_UNDO_RESULTS

FAST = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1)


def _volume() -> MedicalImage:
    zz, yy, xx = np.mgrid[:4, :32, :40]
    ball = ((zz - 2) / 2.0) ** 2 + ((yy - 16) / 7) ** 2 + ((xx - 20) / 8) ** 2 <= 1
    return MedicalImage.from_array(np.where(ball, 200.0, 20.0), spacing=(0.9, 0.8, 2.0))


def _stored_results(session: VolumeSession) -> int:
    return sum(len(run.results) for run in session._runs.values())


def test_runs_stay_bounded_over_many_edits_and_reset(tiny_model):
    session = VolumeSession(tiny_model, _volume(), config=FAST)
    counts = []
    for i in range(KEEP_UNDO_RESULTS + 3):  # a user nudging the box again and again, propagating each time
        session.add_box(2, (11 + i % 3, 8, 29, 24), obj_id=1)
        session.propagate(progress=False)
        counts.append(_stored_results(session))
    per_edit = 4  # one result per slice
    assert max(counts) <= (KEEP_UNDO_RESULTS + 1) * per_edit
    assert counts[-1] == counts[-2]  # flat, not growing with the number of edits
    labels = session.label_map().array.copy()
    session.reset()
    for _ in range(KEEP_UNDO_RESULTS + 1):  # more edits after the reset push old runs out
        session.add_box(1, (12, 9, 28, 23), obj_id=2)
    assert not any(key[0] == 1 for key in session._runs)
    for _ in range(KEEP_UNDO_RESULTS + 2):  # undo past the kept results: seeds are recomputed
        session.undo()
    assert session.object_ids == [1]
    assert session.label_map().array[2].any()  # the seed slice's mask is back at once
    session.propagate(progress=False)
    np.testing.assert_array_equal(session.label_map().array, labels)
