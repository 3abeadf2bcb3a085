"""3D-box prompts over REST: same labels as VolumeSession.add_box3d (the CLI's --box3d), slice range kept."""

from __future__ import annotations

import numpy as np
import pytest
from serve_data import ct_volume

from medisam.client import Client, ServerError


def test_box3d_matches_volume_session_and_stays_in_its_slices(make_client, tiny_model):
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    vol = ct_volume((8, 48, 48))
    ref = VolumeSession(tiny_model, MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0)))
    ref.add_box3d((12, 12, 2, 36, 36, 5))
    expected = ref.propagate(progress=False).array
    c = Client(http=make_client())
    with c.open_session(vol, spacing=(1.0, 1.0, 2.0)) as s:
        seed = s.add_box3d((12, 12, 2, 36, 36, 5))
        assert seed.shape == (48, 48) and 2 <= s.last_slice <= 5
        s.propagate()
        labels = s.labels()
        assert np.array_equal(labels, expected)
        assert not labels[:2].any() and not labels[6:].any()  # outside the slice range: nothing
        assert s.undo() and not s.labels().any()  # one undo step


def test_plan_before_and_notices_after_a_3d_box_propagation(make_client, monkeypatch):
    # views that disagree with a trusted session axis are left out of the vote (a strict setting,
    # and every view planned, so that the tiny random model's views trigger it); the server says so, and shows
    # the plan first
    from functools import partial

    from medisam.predict import axis_session
    from medisam.predict.propagation import PropagationConfig

    monkeypatch.setattr(axis_session, "PropagationConfig",
                        partial(PropagationConfig, view_min_agreement=1.0, view_trusted_score=0.0, view_budget=None))
    tc = make_client()
    c = Client(http=tc)
    with c.open_session(ct_volume((8, 48, 48)), spacing=(1.0, 1.0, 2.0)) as s:
        assert s.plan() == {"session_id": s.id, "direction": "both", "planned_slices": 0, "plan": []}
        s.add_box3d((12, 12, 2, 36, 36, 5))
        before = s.plan()
        assert before["planned_slices"] > 0 and len(before["plan"]) == 1
        assert before["plan"][0].startswith("object 1: 3D box plan: 3 view(s) [k: 4, j: ")
        out = s.propagate()
        assert out["plan"] == before["plan"]
        assert [n.split(": ", 1)[1][:38] for n in out["notices"]] == ["the j view is left out of the vote: it",
                                                                      "the i view is left out of the vote: it"]
        assert s.plan()["plan"] == [] and s.propagate()["notices"] == []  # done: no plan, nothing new to say
        bad = tc.get(f"/sessions/{s.id}/plan", params={"direction": "sideways"})
        assert bad.status_code in (400, 422) and "direction" in bad.text


def test_box_plus_slice_range_is_the_same_3d_box(make_client):
    c = Client(http=make_client())
    with c.open_session(ct_volume((8, 48, 48))) as s:
        a = s.add_box3d((12, 12, 2, 35, 35, 5))
        first = s.labels()
        s.undo()
        b = s.add_box3d(box=(12, 12, 36, 36), slice_range=(5, 2))
        assert np.array_equal(a, b) and np.array_equal(first, s.labels())


def test_box_drawn_on_a_slice_is_the_session_prompt_and_bounds_it_there(make_client, tiny_model):
    """A 2D box with its slice range and the slice it was drawn on: the session's ``drawn_on``
    prompt (seeded there; 3D clicks may reach past the box's x/y on the other slices)."""
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    vol = ct_volume((8, 48, 48))
    ref = VolumeSession(tiny_model, MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0)))
    ref.add_box3d((12, 12, 2, 35, 35, 5), drawn_on=3)
    expected = ref.propagate(progress=False).array
    assert ref.object_state(1).drawn_on == 3
    c = Client(http=make_client())
    with c.open_session(vol, spacing=(1.0, 1.0, 2.0)) as s:
        s.add_box3d(box=(12, 12, 36, 36), slice_range=(2, 5), slice=3)
        assert s.last_slice == 3
        s.propagate()
        assert np.array_equal(s.labels(), expected)


@pytest.mark.parametrize("body, msg", [
    ({"box": [1, 1, 9, 9], "slice_range": [1, 2], "slice": 3}, "outside its slice range"),
    ({"box3d": [1, 1, 1, 9, 9, 3], "slice": 2}, "goes with a 2D box"),
    ({"box3d": [1, 1, 1, 60, 9, 3]}, "outside the volume"),
    ({"box3d": [9, 1, 1, 2, 9, 3]}, "inverted"),
    ({"box": [1, 1, 9, 9]}, "slice range"),
    ({"box": [0, 1, 1e300, 5], "slice_range": [0, 5]}, "outside the volume"),  # a float32 inf: was a 500
    ({}, "either a 3D box"),
    ({"box3d": [1, 1, 1, 9, 9, 3], "box": [1, 1, 9, 9], "slice_range": [1, 2]}, "either a 3D box"),
])
def test_bad_3d_boxes_are_400(make_client, body, msg):
    tc = make_client()
    c = Client(http=tc)
    with c.open_session(ct_volume()) as s:
        r = tc.post(f"/sessions/{s.id}/box3d", json=body)
        assert r.status_code == 400 and msg in r.json()["detail"]


def test_box3d_on_2d_image_is_400(make_client):
    from serve_data import disk

    c = Client(http=make_client())
    with c.open_session(disk()) as s, pytest.raises(ServerError, match="needs a volume"):
        s.add_box3d((1, 1, 0, 9, 9, 0))
