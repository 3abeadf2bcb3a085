"""VolumeSession: API, state, undo, axes, geometry, encoder economy, bad input (tiny model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from medisam.errors import InputError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.predict import Predictor, PropagationConfig, SliceResult, VolumeSession
from medisam.predict.propagation import box_around, interior_point, stop_reason
from medisam.predict.volume import SliceGeometry, parse_axis


def ball_volume(shape=(6, 32, 40), radius=6.0, spacing=(0.8, 0.9, 2.0)):
    """A bright ellipsoid in a noisy volume with non-trivial geometry (spacing in ITK x,y,z)."""
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    c = [s / 2 for s in shape]
    inside = ((zz - c[0]) / (radius / 2)) ** 2 + ((yy - c[1]) / radius) ** 2 + ((xx - c[2]) / radius) ** 2 <= 1
    rng = np.random.default_rng(0)
    array = (inside * 300 + rng.normal(0, 10, shape)).astype(np.float32)
    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    return MedicalImage(array, spacing, (10.0, -5.0, 3.0), direction, "MR"), inside


#: Random tiny-model masks may vanish: keep going; one margin only (fewer decoder passes).
FAST = PropagationConfig(min_area_px=0, extra_margins_mm=())


class CountingEncoder:
    """Wraps model.encode to count images encoded (batch rows)."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self._orig = model.encode

    def __enter__(self):
        def encode(tensor):
            self.calls += tensor.shape[0]
            return self._orig(tensor)

        self.model.encode = encode
        return self

    def __exit__(self, *exc):
        self.model.encode = self._orig


def test_box3d_propagation_geometry_and_encoder_economy(tiny_model):
    image, _ = ball_volume()
    # default rules (several margins, re-acquire, clip to the box) along k only; the tri-planar
    # default (views=3) is tested in test_volume_multiview.py
    config = PropagationConfig(views=1)
    with CountingEncoder(tiny_model) as counter:
        session = VolumeSession(tiny_model, image, config=config)
        first = session.add_box3d((14, 10, 1, 26, 22, 4), obj_id=3)
        assert isinstance(first, SliceResult) and first.slice == 2 and first.source == "prompt"
        labels = session.propagate(progress=False)
        assert counter.calls == len(session.encoded_slices) <= 4
        assert session.encoded_slices <= set(range(1, 5))  # only slices in range are encoded
        assert session.propagate(progress=False).array.tobytes() == labels.array.tobytes()
        assert counter.calls == len(session.encoded_slices)  # nothing re-encoded
    assert labels.kind == "labels" and labels.array.shape == image.array.shape
    assert (labels.spacing, labels.origin, labels.direction) == (image.spacing, image.origin, image.direction)
    assert set(np.unique(labels.array)) <= {0, 3}
    outside = np.ones(image.array.shape, bool)
    outside[1:5, 10:23, 14:27] = False
    assert not labels.array[outside].any()  # stays inside the 3D box (range and x/y clip)


def test_each_slice_encoded_once_with_batching(tiny_model):
    image, _ = ball_volume()
    with CountingEncoder(tiny_model) as counter:
        session = VolumeSession(tiny_model, image, config=replace(FAST, encode_batch=4))
        session.add_mask(3, np.pad(np.ones((10, 10), bool), ((11, 11), (15, 15))))
        list(session.iter_propagate())
        assert counter.calls == len(session.encoded_slices) <= image.array.shape[0]


def test_pairs_of_planes_give_the_same_3d_box_result_and_encodings(tiny_model):
    image, _ = ball_volume()
    results, rows = {}, {}
    for batch in (1, 2):
        calls: list[int] = []  # rows of each encoder call
        original = tiny_model.encode
        tiny_model.encode = lambda x: calls.append(x.shape[0]) or original(x)
        try:
            session = VolumeSession(tiny_model, image, predictor=Predictor(tiny_model),
                                    config=PropagationConfig(encode_batch=batch))
            session.add_box3d((14, 10, 1, 26, 22, 5))
            results[batch] = session.propagate(progress=False).array
        finally:
            tiny_model.encode = original
        rows[batch] = sum(calls)
        assert max(calls) == batch  # pairs where a run has two planes left to encode
    assert np.array_equal(results[1], results[2])
    assert rows[1] == rows[2]  # a 3D box's runs never stop early: no plane encoded in vain


def test_a_mask_drawn_past_a_3d_box_is_kept_within_the_box(tiny_model):
    image, _ = ball_volume()
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d((10, 8, 1, 30, 24, 4), obj_id=1)  # x 10..30, y 8..24, slices 1..4
    lasso = np.zeros((32, 40), bool)
    lasso[4:28, 6:36] = True  # reaches past the box on every side
    r = session.add_mask(3, lasso, obj_id=1)
    inside = np.zeros_like(lasso)
    inside[8:25, 10:31] = True
    assert np.array_equal(r.mask, lasso & inside)  # clipped as the model's results in the box are
    session.propagate(progress=False)
    labels = session.label_map().array
    assert labels[3].any() and not (labels[3].astype(bool) & ~inside).any()


def test_seed_mask_corrections_undo_remove_reset(tiny_model):
    image, _ = ball_volume()
    session = VolumeSession(tiny_model, image, config=FAST)
    seed = np.zeros((32, 40), bool)
    seed[11:21, 14:26] = True
    r = session.add_mask(3, seed, obj_id=1)
    assert r.score == 1.0 and np.array_equal(r.mask, seed)
    first = [res.slice for res in session.iter_propagate()]
    assert first[0] == 4 and set(first) <= {0, 1, 2, 4, 5}
    assert list(session.iter_propagate()) == []  # nothing left to compute
    # a correction on slice 0 re-propagates from it only up to half way to the seed at 3
    session.add_box(0, (8, 8, 24, 24), obj_id=1)
    assert sorted(res.slice for res in session.iter_propagate()) == [1]
    assert np.array_equal(session.label_map().array[3], seed.astype(np.uint8))
    session.undo()  # back to the single seed: earlier results reused, nothing recomputed
    assert list(session.iter_propagate()) == []
    assert np.array_equal(session.results(1)[3].mask, seed) and 0 not in session.object_state(1).seeds
    session.add_mask(2, seed, obj_id=2)
    assert session.object_ids == [1, 2]
    session.remove_object(1)
    assert session.object_ids == [2]
    list(session.iter_propagate())
    assert set(np.unique(session.label_map().array)) <= {0, 2}
    labels = session.label_map().array
    session.reset()
    assert session.object_ids == [] and not session.label_map().array.any()
    session.undo()  # the propagated label map comes back whole, nothing to recompute (was the seed slice alone)
    assert session.object_ids == [2] and session.planned_slices() == 0
    assert np.array_equal(session.label_map().array, labels)
    with pytest.raises(PromptError, match="no object 7"):
        session.remove_object(7)


def test_directions_and_points(tiny_model):
    image, _ = ball_volume()
    session = VolumeSession(tiny_model, image, config=FAST)
    seed = np.zeros((32, 40), bool)
    seed[11:21, 14:26] = True
    session.add_mask(2, seed)
    forward = [r.slice for r in session.iter_propagate("forward")]
    assert forward and forward == list(range(3, 3 + len(forward)))  # in order, stops when empty
    backward = [r.slice for r in session.iter_propagate("backward")]
    assert backward and backward == list(range(1, 1 - len(backward), -1))
    r = session.add_points(4, [(20, 16), (2, 2, 0)])
    assert r.slice == 4 and r.mask.shape == (32, 40)
    assert session.object_state(1).seeds[4].points.coords.shape == (2, 2)
    with pytest.raises(InputError, match="direction"):
        list(session.iter_propagate("sideways"))


@pytest.mark.parametrize("axis,index,plane_hw", [(0, 3, (32, 40)), ("j", 16, (6, 40)), (2, 20, (6, 32))])
def test_any_axis(tiny_model, axis, index, plane_hw):
    image, _ = ball_volume()
    session = VolumeSession(tiny_model, image, axis=axis, config=FAST)
    assert session.plane_hw == plane_hw
    seed = np.zeros(plane_hw, bool)
    seed[2:4, 5:15] = True
    session.add_mask(index, seed)
    labels = session.label_map().array
    assert np.array_equal(np.take(labels, index, axis=parse_axis(axis)) > 0, seed)
    assert labels.sum() == seed.sum()


def test_box3d_on_other_axes_maps_to_plane():
    g = SliceGeometry((10, 40, 48), 2, (2.0, 0.9, 0.8))
    from medisam.prompts import Box3D

    box, lo, hi = g.box3d_to_plane(Box3D(18, 14, 3, 30, 26, 7))
    assert (lo, hi) == (18, 30) and (box.x0, box.y0, box.x1, box.y1) == (14, 3, 27, 8)
    assert g.pixel_mm == (0.9, 2.0)  # plane x = j (0.9 mm), plane y = k (2 mm)


def test_propagation_helpers():
    mask = np.zeros((20, 30), bool)
    mask[5:10, 10:20] = True
    b = box_around(mask, (2.0, 1.0))
    assert (b.x0, b.y0, b.x1, b.y1) == (8, 4, 22, 11)
    from medisam.prompts import Box

    clipped = box_around(mask, (5.0, 5.0), clip=Box(9, 3, 21, 12))
    assert (clipped.x0, clipped.y0, clipped.x1, clipped.y1) == (9, 3, 21, 12)
    assert box_around(np.zeros((4, 4), bool), (1, 1)) is None
    x, y = interior_point(mask)
    assert mask[int(y), int(x)]
    cfg = PropagationConfig(min_score=0.5, min_area_ratio=0.2)
    assert stop_reason(mask, 0.9, 40, cfg) is None
    assert stop_reason(mask, 0.1, 40, cfg) == "low score"
    assert stop_reason(mask, 0.9, 1000, cfg) == "area collapse"
    assert stop_reason(np.zeros_like(mask), 0.9, 40, cfg) == "empty"


def test_bad_inputs(tiny_model, tiny_sam):
    image, _ = ball_volume()
    with pytest.raises(InputError, match="medisam segment"):
        VolumeSession(tiny_model, np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="medisam segment"):
        VolumeSession(tiny_model, MedicalImage.from_array(np.zeros((32, 32), np.uint8)))
    with pytest.raises(InputError, match="channel"):
        VolumeSession(tiny_model, np.zeros((2, 4, 32, 32), np.float32))
    with pytest.raises(InputError, match="axis"):
        VolumeSession(tiny_model, image, axis=3)
    with pytest.raises(InputError, match="another model"):
        VolumeSession(tiny_model, image, predictor=Predictor(tiny_sam))
    session = VolumeSession(tiny_model, image)
    with pytest.raises(PromptError, match="out of range"):
        session.add_box(6, (1, 1, 5, 5))
    with pytest.raises(PromptError, match="outside"):
        session.add_box(2, (1, 1, 60, 5))
    with pytest.raises(PromptError, match="outside"):
        session.add_points(2, [(100, 3)])
    with pytest.raises(PromptError, match="outside the volume"):
        session.add_box3d((0, 0, 0, 39, 31, 6))
    with pytest.raises(PromptError, match="inverted"):
        session.add_box3d((0, 0, 4, 10, 10, 3))
    with pytest.raises(PromptError, match="6 numbers"):
        session.add_box3d((0, 0, 4, 10, 10))
    with pytest.raises(PromptError, match="object id"):
        session.add_box(2, (1, 1, 5, 5), obj_id=0)
    with pytest.raises(PromptError, match="does not match"):
        session.add_mask(2, np.ones((5, 5), bool))
    with pytest.raises(InputError, match="nothing to undo"):
        session.undo()
    assert session.object_ids == []  # failed prompts leave no state
    session.add_box3d((14, 10, 1, 26, 22, 4))
    with pytest.raises(PromptError, match="slice range 1..4"):
        session.add_box(5, (14, 10, 26, 22))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_planes_box_and_pixels_map_back_to_the_volumes_voxels(axis):
    """plane_box3d is box3d_to_plane's converse (inclusive), voxel maps a plane pixel to its (z, y, x), and
    labelled_slices counts slices along the axis: the server's and web UI's slices of any axis."""
    from medisam.prompts import Box3D

    g = SliceGeometry((6, 7, 8), axis, (1.0, 1.0, 5.0))
    b3 = Box3D(1, 2, 3, 5, 4, 4)
    box, lo, hi = g.box3d_to_plane(b3)
    assert g.plane_box3d(int(box.x0), int(box.y0), lo, int(box.x1) - 1, int(box.y1) - 1, hi) == b3
    labels = np.zeros((6, 7, 8), np.uint8)
    labels[g.voxel(2, 3, 1)] = 4
    assert g.take(labels, 2)[1, 3] == 4
    assert g.labelled_slices(labels).tolist() == [k == 2 for k in range(g.num_slices)]
    assert not g.labelled_slices(labels, 5).any()
