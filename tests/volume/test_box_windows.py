"""A window per 3D box in one session: a CT in HU prompted without a window gives each box its own."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medisam.io.intensity import apply_window, ct_box_window
from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig, VolumeSession

FAST = PropagationConfig(min_area_px=0, extra_margins_mm=(), encode_batch=1)
NODULE = (4, 4, 1, 15, 15, 5)  # x0, y0, z0, x1, y1, z1 (inclusive)
ORGAN = (22, 20, 2, 37, 35, 6)


def _ct(modality: str = "CT") -> MedicalImage:
    """Air around a soft-tissue ball (a lung nodule) and a brighter organ beside bone: two boxes whose
    voxels span very different HU ranges."""
    zz, yy, xx = np.mgrid[:8, :40, :44].astype(np.float32)
    rng = np.random.default_rng(0)
    ct = np.full(zz.shape, -850.0, dtype=np.float32) + rng.normal(0, 30, zz.shape).astype(np.float32)
    ct[((zz - 3) / 2) ** 2 + ((yy - 9) / 4) ** 2 + ((xx - 9) / 4) ** 2 <= 1] = 30.0
    ct[20:36, 22:38] = 60.0
    ct[:, 26:30, 28:34] += 40.0  # an organ with texture
    ct[:, 34:36, 22:38] = 700.0  # bone at its edge
    return MedicalImage.from_array(ct, spacing=(1.0, 1.0, 2.0), modality=modality)


def _box_region(box) -> tuple[slice, ...]:
    x0, y0, z0, x1, y1, z1 = box
    return slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1)


def test_each_3d_box_of_a_ct_gets_its_own_window(tiny_model):
    image = _ct()
    session = VolumeSession(tiny_model, image, config=FAST)
    assert session.box_windows
    session.add_box3d(NODULE, obj_id=1)
    session.add_box3d(ORGAN, obj_id=2)
    windows = {o: session.object_state(o).window for o in (1, 2)}
    for obj, box in ((1, NODULE), (2, ORGAN)):
        assert windows[obj] == ct_box_window(image.array, "CT", _box_region(box))
    assert windows[1] != windows[2] and min(w[0] for w in windows.values()) >= 400
    # the 3D clicks' walker sees each object in its own window
    crop = _box_region(NODULE)
    assert np.array_equal(session.click_features(crop, 1), apply_window(image.array[crop], windows[1]))
    assert np.array_equal(session.click_features(crop), session.display[crop])  # no object: the session's


@pytest.mark.parametrize("obj,views", [(1, 3), (2, 3), (1, 1), (2, 1)])
def test_an_object_segments_as_alone_with_its_window(tiny_model, obj, views):
    """Two boxes in one session: each object's voxels are those of a session holding it alone with its
    window given explicitly (what `medisam propagate` does for one object), fused from three views or
    propagated along the session's axis alone."""
    image = _ct()
    config = replace(FAST, views=views)
    both = VolumeSession(tiny_model, image, config=config)
    both.add_box3d(NODULE, obj_id=1)
    both.add_box3d(ORGAN, obj_id=2)
    both.propagate(progress=False)
    box = NODULE if obj == 1 else ORGAN
    alone = VolumeSession(tiny_model, image, config=config, window=both.object_state(obj).window)
    assert not alone.box_windows  # an explicit window: no box windows
    alone.add_box3d(box, obj_id=obj)
    alone.propagate(progress=False)
    assert alone.object_state(obj).window is None
    assert np.array_equal(both.object_volume(obj), alone.object_volume(obj))


def test_box_windows_are_off_for_an_explicit_window_an_mr_and_on_request(tiny_model):
    image = _ct()
    assert not VolumeSession(tiny_model, image, config=FAST, window="soft_tissue").box_windows
    assert not VolumeSession(tiny_model, _ct("MR"), config=FAST).box_windows
    assert not VolumeSession(tiny_model, image, config=FAST, box_windows=False).box_windows
    shown = VolumeSession(tiny_model, image, config=FAST, box_windows=False)
    shown.add_box3d(NODULE, obj_id=1)
    assert shown.object_state(1).window is None
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d(NODULE, obj_id=1)
    session.undo()  # the window goes with the box
    session.add_box3d(ORGAN, obj_id=1)
    assert session.object_state(1).window == ct_box_window(image.array, "CT", _box_region(ORGAN))


def test_a_long_session_keeps_only_the_encoders_of_live_windows(tiny_model):
    image = _ct()
    session = VolumeSession(tiny_model, image, config=replace(FAST, views=1))
    for x0 in range(2, 20, 3):  # one object, its box moved again and again: a new window each time
        session.add_box3d((x0, 4, 1, x0 + 12, 15, 5), obj_id=1)
        session.propagate(progress=False)
    assert len(session._window_encoders) == 1
    assert set(session._window_encoders) == {session.object_state(1).window}


def test_the_server_session_gives_a_ct_box_its_window_until_a_window_is_set(tiny_model):
    """The REST server and the web UI hold an `InteractiveSession`: a CT's 3D box gets the window of its
    voxels there too, and the user's window (`set_window`) replaces it."""
    from medisam.serve.interactive import InteractiveSession

    image = _ct()
    st = InteractiveSession(tiny_model, image)
    st.add_box3d(NODULE, obj_id=1)
    assert st.volume.object_state(1).window == ct_box_window(image.array, "CT", _box_region(NODULE))
    st.reset()
    st.set_window("lung")  # the window changes before prompting (or after a reset)
    st.add_box3d(NODULE, obj_id=1)
    assert st.volume.object_state(1).window is None
