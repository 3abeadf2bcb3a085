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


def test_undo_history_shares_what_a_click_did_not_change(tiny_model):
    # the undo snapshots shared nothing before: each click copied every object's 3D click layer twice
    # (400 nuclei x 5 protocol clicks: gigabytes); now a snapshot holds new states and seeds dicts only
    from medisam.predict.refine3d import refine_with_click
    from medisam.prompts import Box3D

    zz, yy, xx = np.mgrid[:6, :32, :40]
    image = np.full((6, 32, 40), 20.0)
    boxes = {1: Box3D(4, 4, 1, 14, 14, 4), 2: Box3D(22, 4, 1, 34, 14, 4), 3: Box3D(4, 18, 1, 14, 28, 4)}
    for b in boxes.values():
        image[b.z0:b.z1 + 1, b.y0:b.y1 + 1, b.x0:b.x1 + 1] = 200.0
    session = VolumeSession(tiny_model, MedicalImage.from_array(image, spacing=(1.0, 1.0, 2.0)), config=FAST)
    for obj_id, b in boxes.items():
        session.add_box3d(b, obj_id=obj_id)
    session.propagate(progress=False)
    for obj_id, b in boxes.items():  # every object gets a 3D click layer
        refine_with_click(session, (b.z0 + 1, b.y0 + 2, b.x0 + 2), True, obj_id=obj_id)
    layers = {obj_id: session.object_state(obj_id).edit for obj_id in boxes}
    assert all(layer is not None for layer in layers.values())
    before = session.label_map().array.copy()
    from medisam.predict import store

    copies = []
    real = store.snapshot_objects
    store.snapshot_objects = lambda objects: copies.append(len(objects)) or real(objects)
    try:
        refine_with_click(session, (2, 9, 9), False, obj_id=1)  # changes object 1 only
    finally:
        store.snapshot_objects = real
    assert copies == [3]  # one copy of the prompts per click: the step's rollback copy is its undo snapshot
    history = session.store.history
    assert history[-1][2].edit is history[-2][2].edit is session.store.objects[2].edit  # shared, not copied
    assert history[-1][1].edit is not session.store.objects[1].edit
    assert history[-1][1].seeds is not session.store.objects[1].seeds  # each snapshot owns its seeds
    session.undo()
    np.testing.assert_array_equal(session.label_map().array, before)
    session.undo()  # and the step before it: object 3's layer goes, the others keep theirs
    assert session.object_state(3).edit is None and session.object_state(2).edit is not None
