"""The display a session maps where it reads it (display_volume): the same numbers as the whole
volume's map, no whole float32 copy in the session, and the same results as a session given one."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.io.intensity import apply_window
from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig, VolumeSession
from medisam.predict.display_volume import DisplayVolume
from medisam.predict.volume import volume_to_display

FAST = PropagationConfig(min_area_px=0, extra_margins_mm=(), encode_batch=1)
RNG = np.random.default_rng(0)
VOLUMES = {  # one per rule of display_mapping
    "ct_in_hu": (RNG.integers(-1024, 2000, (9, 30, 26)).astype(np.int16), "CT", None),
    "ct_min_max": (RNG.integers(0, 3000, (9, 30, 26)).astype(np.int16), "CT", None),
    "mr_percentiles": (RNG.normal(300, 80, (9, 30, 26)), "MR", None),
    "uint8": (RNG.integers(0, 256, (9, 30, 26)).astype(np.uint8), "OT", None),
    "window": (RNG.integers(-1024, 2000, (9, 30, 26)).astype(np.int16), "CT", "bone"),
    "constant": (np.full((9, 30, 26), 7.0, dtype=np.float32), "MR", None),
}
READS = [(4,), (slice(None), 11), (slice(2, 7), slice(5, 25), slice(3, 20)),
         (slice(None), slice(None), np.array([1, 5, 9]))]


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_a_read_equals_the_whole_volumes_map_there(name):
    array, modality, window = VOLUMES[name]
    whole = volume_to_display(array, modality, window)
    lazy = DisplayVolume.of(array, modality, window)
    assert lazy.shape == array.shape and lazy.dtype == np.float32
    assert np.array_equal(np.asarray(lazy), whole)
    for index in READS:
        got = lazy[index]
        assert got.dtype == np.float32 and np.array_equal(got, whole[index])
    with pytest.raises(ValueError, match="read-only"):
        lazy[0, 0, 0] = 1.0


def test_mapping_never_writes_its_input():
    array = RNG.normal(0, 500, (4, 8, 8)).astype(np.float32)
    kept = array.copy()
    apply_window(array, "soft_tissue")
    DisplayVolume.of(array, "MR")[1:3]
    assert np.array_equal(array, kept)


def _ct() -> MedicalImage:
    zz, yy, xx = np.mgrid[:10, :40, :44].astype(np.float32)
    ct = np.full(zz.shape, -850.0, dtype=np.float32) + RNG.normal(0, 30, zz.shape).astype(np.float32)
    ct[((zz - 5) / 3) ** 2 + ((yy - 18) / 8) ** 2 + ((xx - 20) / 8) ** 2 <= 1] = 40.0
    return MedicalImage.from_array(ct, spacing=(1.0, 1.0, 2.0), modality="CT")


@pytest.mark.parametrize("views", [1, 3])
def test_a_session_holds_no_whole_display_and_segments_as_one_given_it(tiny_model, views):
    """The session's display and guides are mapped where read (a 512 x 512 x 900 CT's whole float32
    display was 900 MiB); its results equal those of a session given the whole display (the path before)."""
    from dataclasses import replace

    image = _ct()
    guide = image.with_array(image.array[::-1].copy())
    config = replace(FAST, views=views)
    lazy = VolumeSession(tiny_model, image, config=config, guides=[guide])
    assert isinstance(lazy.display, DisplayVolume) and isinstance(lazy._guides[0], DisplayVolume)
    whole = VolumeSession(tiny_model, image, config=config, guides=[guide], box_windows=True,
                          display=volume_to_display(image.array, image.modality))
    for session in (lazy, whole):
        session.add_box3d((10, 8, 2, 30, 28, 8), obj_id=1)
        session.propagate(progress=False)
        session.add_click((5, 18, 20), False, 1)
    assert np.array_equal(lazy.label_map().array, whole.label_map().array)
    crop = (slice(2, 8), slice(8, 28), slice(10, 30))
    assert np.array_equal(lazy.click_features(crop), whole.click_features(crop))


def test_a_label_map_is_not_copied_where_its_maker_hands_it_over():
    image = _ct()
    labels = np.zeros(image.spatial_shape, dtype=np.uint8)
    assert image.as_labels(labels, copy=False).array is labels
    assert image.as_labels(labels).array is not labels


def test_the_servers_slice_pictures_read_the_sessions_display(tiny_model):
    """The server's picture of a slice is the session's display there, rounded to uint8: one map, no
    uint8 copy of the volume (it kept one before), and the window's change is followed."""
    from medisam.serve.interactive import InteractiveSession

    image = _ct()
    served = InteractiveSession(tiny_model, image)
    for window in (None, "lung"):
        if window is not None:
            served.set_window(window)
        picture = served.display_slice(5)
        expected = np.clip(np.rint(volume_to_display(image.array, "CT", window)[5]), 0, 255).astype(np.uint8)
        assert picture.shape == (40, 44, 3) and np.array_equal(picture[..., 0], expected)
        assert served._display is served.volume.display  # the session's own display, not a second one
