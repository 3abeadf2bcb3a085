"""SliceResult keeps its mask's bounding box, not its plane: same mask out, memory of the object."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from medisam.errors import InputError
from medisam.predict import SliceResult, VolumeSession


def _blob_mask(rng: np.random.Generator, shape=(300, 400)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    r, c = rng.integers(0, shape[0] - 20), rng.integers(0, shape[1] - 30)
    mask[r:r + rng.integers(1, 20), c:c + rng.integers(1, 30)] = rng.random() < 2  # a filled rectangle
    mask[r + 2, c] = False
    return mask


def test_the_mask_comes_back_equal_and_only_its_box_is_held():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = _blob_mask(rng)
        r = SliceResult(3, 2, mask, 0.9)
        assert r.mask.dtype == bool and np.array_equal(r.mask, mask) and r.area == int(mask.sum())
        rows, cols = np.nonzero(mask)
        assert r.window == (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        assert r.nbytes == r.crop.nbytes <= 20 * 30 < mask.nbytes
    empty = SliceResult(0, 1, np.zeros((5, 7), dtype=np.uint8), 0.0)
    assert empty.area == 0 and empty.mask.shape == (5, 7) and not empty.mask.any() and empty.nbytes == 0


def test_the_result_is_immutable_and_its_mask_read_only():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:6] = True
    r = SliceResult(0, 1, mask, 1.0)
    mask[:] = False  # the caller's array is copied, not kept
    assert r.area == 9
    with pytest.raises(ValueError):
        r.mask[0, 0] = True
    with pytest.raises(AttributeError):
        r.score = 0.5  # type: ignore[misc]
    with pytest.raises(InputError, match="one plane"):
        SliceResult(0, 1, np.zeros((2, 3, 4), dtype=bool), 1.0)


def test_part_paint_replace_and_pickle_agree_with_the_whole_plane():
    rng = np.random.default_rng(1)
    for _ in range(30):
        mask = _blob_mask(rng, (60, 80))
        r = SliceResult(4, 3, mask, 0.7, np.ones((8, 8), np.float32), "fused", None, 1)
        r0, c0 = rng.integers(0, 60), rng.integers(0, 80)
        rows, cols = slice(r0, rng.integers(r0, 61)), slice(c0, rng.integers(c0, 81))
        assert np.array_equal(r.part(rows, cols), mask[rows, cols])
        plane = rng.integers(0, 3, size=(60, 80)).astype(np.uint16)
        expected = plane.copy()
        expected[mask & (plane == 0)] = 7
        r.paint(plane, 7, where=plane == 0)
        assert np.array_equal(plane, expected)
        moved = r.replace(slice=9, score=0.1)
        assert (moved.slice, moved.score, moved.source, moved.axis) == (9, 0.1, "fused", 1)
        assert np.array_equal(moved.mask, mask) and moved.low_res_logits is r.low_res_logits
        with pytest.raises(TypeError, match="no field"):
            r.replace(colour=1)
        back = pickle.loads(pickle.dumps(r))
        assert len(pickle.dumps(r)) < mask.nbytes  # the crop travels, not the plane
        assert np.array_equal(back.mask, mask) and (back.slice, back.obj_id, back.source) == (4, 3, "fused")


def test_a_session_of_small_objects_holds_memory_for_the_objects_not_the_planes(tiny_model):
    """Objects of 8 x 8 pixels drawn on every slice of 256 x 256 planes: the session keeps 64 bytes
    per object and slice (a plane would be 65,536), and paints the same label map."""
    vol = np.zeros((6, 256, 256), dtype=np.float32)
    session = VolumeSession(tiny_model, vol)
    truth = np.zeros(vol.shape, dtype=np.uint8)
    for obj_id in range(1, 7):
        y, x = 20 + 35 * obj_id, 10 + 30 * obj_id
        truth[:, y:y + 8, x:x + 8] = obj_id
        for t in range(vol.shape[0]):
            session.add_mask(t, truth[t] == obj_id, obj_id=obj_id)
    session.propagate(progress=False)
    kept = [r for run in session.store.runs.values() for r in run.results]
    assert len(kept) == 36 and all(r.crop.shape == (8, 8) for r in kept)
    assert session.store.retained_bytes() == 36 * 64
    assert np.array_equal(np.asarray(session.label_map().array), truth)
