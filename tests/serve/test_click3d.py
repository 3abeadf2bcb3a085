"""3D corrective clicks over REST: the same result as VolumeSession.add_click, undoable, bad clicks 400."""

from __future__ import annotations

import numpy as np
import pytest
from serve_data import ct_volume, disk

from medisam.client import Client, ServerError


def test_click3d_matches_volume_session_and_undoes(make_client, tiny_model):
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    vol = ct_volume((8, 48, 48))
    ref = VolumeSession(tiny_model, MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0)))
    ref.add_box3d((12, 12, 2, 36, 36, 5))
    ref.propagate(progress=False)
    expected_outcome = ref.add_click((3, 24, 24), positive=False)
    expected = ref.label_map().array
    c = Client(http=make_client())
    with c.open_session(vol, spacing=(1.0, 1.0, 2.0)) as s:
        s.add_box3d((12, 12, 2, 36, 36, 5))
        s.propagate()
        before = s.labels()
        out = s.add_click((3, 24, 24), positive=False)
        assert out["slice"] == 3 and out["rejected"] == expected_outcome.rejected
        assert out["undo_steps"] == expected_outcome.undo_steps
        assert out["changed_slices"] == len(expected_outcome.changed)
        assert np.array_equal(s.labels(), expected)
        for _ in range(0 if out["rejected"] else out["undo_steps"]):
            assert s.undo()
        s.propagate()
        assert np.array_equal(s.labels(), before)  # the click is taken back


@pytest.mark.parametrize("body, msg", [
    ({"zyx": [9, 1, 1]}, "outside"),
    ({"zyx": [1, 1]}, "zyx"),
    ({"zyx": [1, 20, 20], "positive": False, "obj_id": 7}, "background click"),
])
def test_bad_clicks_are_400(make_client, body, msg):
    tc = make_client()
    c = Client(http=tc)
    with c.open_session(ct_volume()) as s:
        r = tc.post(f"/sessions/{s.id}/click3d", json=body)
        assert r.status_code in (400, 422) and msg in str(r.json()["detail"])


def test_clicks_on_a_2d_image_refine_its_mask_and_undo(make_client, tiny_model):
    """A 2D image's corrective clicks go to the random walker (``predict.refine2d``), as the
    API's ``InteractiveSession.add_click`` does them; one undo step each; bad clicks 400."""
    from medisam.io import MedicalImage
    from medisam.serve.interactive import InteractiveSession

    image = disk()
    ref = InteractiveSession(tiny_model, MedicalImage.from_array(image))
    ref.segment(None, 1, box=(24, 24, 72, 72))
    ref.add_click((0, 48, 48), positive=True)
    c = Client(http=make_client())
    with c.open_session(image) as s:
        with pytest.raises(ServerError, match="no mask to correct"):
            s.add_click((0, 5, 5))
        s.predict(box=(24, 24, 72, 72))
        before = s.labels()
        out = s.add_click((0, 48, 48), positive=True)
        assert out["slice"] == 0 and not out["rejected"] and out["undo_steps"] == 1
        after = s.labels()
        assert after[48, 48] == 1 and np.array_equal(after, ref.labels)
        assert s.undo() and np.array_equal(s.labels(), before)
        with pytest.raises(ServerError, match=r"is \(0, y, x\)"):
            s.add_click((1, 5, 5))
        with pytest.raises(ServerError, match="outside"):
            s.add_click((0, 500, 5))


def test_guides_over_rest_match_volume_session_and_bad_guides_are_400(make_client, tiny_model):
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    vol = ct_volume((8, 48, 48))
    guide = np.flip(vol, axis=2).copy()  # another "contrast" of the same grid
    ref = VolumeSession(tiny_model, MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0)),
                        guides=[MedicalImage.from_array(guide, spacing=(1.0, 1.0, 2.0))])
    ref.add_box3d((12, 12, 2, 36, 36, 5))
    ref.propagate(progress=False)
    ref.add_click((3, 24, 24), positive=False)
    c = Client(http=make_client())
    with c.open_session(vol, spacing=(1.0, 1.0, 2.0)) as s:
        assert s.info["guides"] == 0
        assert s.add_guide(guide) == 1
        s.add_box3d((12, 12, 2, 36, 36, 5))
        s.propagate()
        s.add_click((3, 24, 24), positive=False)
        assert np.array_equal(s.labels(), ref.label_map().array)  # the walker saw the guide, as in the API
        with pytest.raises(ServerError, match="guide 1 has shape"):
            s.add_guide(np.zeros((8, 48, 47), np.float32))
        assert s.refresh()["guides"] == 1  # a refused guide leaves the session as it was
        assert s.add_guide(guide) == 2  # and the next one is taken (it hit the refused file's name: a 500)
    with c.open_session(disk()) as s, pytest.raises(ServerError, match="need a volume session"):
        s.add_guide(disk())


def test_a_new_window_keeps_the_guides_once(tiny_model):
    """The session keeps each guide once (the walker's channel) and a window change carries it over."""
    from medisam.io import MedicalImage
    from medisam.serve.interactive import InteractiveSession

    vol = ct_volume((8, 48, 48))
    st = InteractiveSession(tiny_model, MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0), modality="CT"))
    assert st.add_guide(MedicalImage.from_array(np.flip(vol, axis=2).copy(), spacing=(1.0, 1.0, 2.0))) == 1
    channel = st.volume.click_features((slice(0, 8), slice(0, 48), slice(0, 48)))[..., 1]
    old = st.volume
    st.set_window("lung")
    assert st.volume is not old and st.guides == 1
    after = st.volume.click_features((slice(0, 8), slice(0, 48), slice(0, 48)))
    assert np.array_equal(after[..., 1], channel)  # the guide's channel does not follow the window
    assert not np.array_equal(after[..., 0], old.click_features((slice(0, 8), slice(0, 48), slice(0, 48)))[..., 0])
    held = [k for k, v in vars(st).items()
            if isinstance(v, MedicalImage) or (isinstance(v, list) and any(isinstance(g, MedicalImage) for g in v))]
    assert held == ["image"]  # no raw copy of the guide kept


def test_a_background_click_where_objects_overlap_yields_over_rest_as_in_the_session(make_client, tiny_model):
    """Nested 3D boxes: a background click on the inner object at a voxel the outer one holds too gives the outer
    one what it holds near the click (``Click3D.yields``), over REST exactly as in ``VolumeSession``."""
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    vol = ct_volume((8, 48, 48))
    boxes = {1: (6, 6, 1, 42, 42, 6), 2: (14, 14, 2, 34, 34, 5)}
    ref = VolumeSession(tiny_model, MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0)))
    for obj, box in boxes.items():
        ref.add_box3d(box, obj_id=obj)
    ref.propagate(progress=False)
    both = np.argwhere(ref.object_volume(1) & ref.object_volume(2))
    assert len(both), "the tiny model's nested masks share no voxel: pick other boxes"
    v = tuple(int(c) for c in both[len(both) // 2])
    ref.add_click(v, positive=False, obj_id=2)
    assert ref.object_state(2).clicks3d[-1].yields and ref.label_map().array[v] == 1
    c = Client(http=make_client())
    with c.open_session(vol, spacing=(1.0, 1.0, 2.0)) as s:
        for obj, box in boxes.items():
            s.add_box3d(box, obj_id=obj)
        s.propagate()
        s.add_click(v, positive=False, obj_id=2)
        assert np.array_equal(s.labels(), ref.label_map().array)
