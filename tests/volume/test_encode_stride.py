"""Interpolated embeddings between encoded planes (``PropagationConfig.encode_stride``, tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage
from medisam.predict import Predictor, PropagationConfig, VolumeSession
from medisam.predict.cache import EmbeddingCache
from medisam.predict.encoder import PlaneEncoder
from medisam.predict.propagation import auto_stride
from test_volume_session import CountingEncoder


def _planes(n: int = 7, size: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(0, 255, (size, size, 3)).astype(np.float32) for _ in range(n)]


def _volume(spacing_z: float, n: int = 9) -> MedicalImage:
    zz, yy, xx = np.mgrid[:n, :32, :32]
    inside = ((yy - 16) / 8.0) ** 2 + ((xx - 16) / 8.0) ** 2 <= 1
    array = (inside * 300 + np.random.default_rng(0).normal(0, 10, inside.shape)).astype(np.float32)
    return MedicalImage(array, (1.0, 1.0, spacing_z), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "MR")


def test_auto_stride_interpolates_thin_planes_only():
    assert auto_stride(1.0) == 2 and auto_stride(0.5) == 2
    assert auto_stride(2.5) == 1 and auto_stride(0.0) == 1
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError, match="encode_stride"):
            PropagationConfig(encode_stride=bad)
        with pytest.raises(InputError, match="encode_batch"):
            PropagationConfig(encode_batch=bad)


def test_interpolated_plane_is_the_mean_of_its_encoded_neighbours(tiny_model):
    planes = _planes()
    predictor = Predictor(tiny_model, cache=EmbeddingCache())
    encoder = PlaneEncoder(predictor, 0, lambda t: planes[t], len(planes), size_cache=True, count=len(planes), stride=2)
    with CountingEncoder(tiny_model) as counter:
        encoder.encode(3, interpolate=True)
        got = predictor.get_image_embedding().clone()
        assert counter.calls == 2 and encoder.encoded == {2, 4} and encoder.interpolated == {3}
        encoder.encode(2)
        low = predictor.get_image_embedding()
        encoder.encode(4)
        high = predictor.get_image_embedding()
        assert counter.calls == 2  # the anchors were cached
        assert torch.allclose(got, (low + high) / 2, atol=1e-6)  # torch.lerp: equal to rounding
        encoder.encode(6, interpolate=True)  # on the stride: encoded itself
        encoder.encode(5, interpolate=True)  # between 4 and 6
        assert counter.calls == 3 and encoder.encoded == {2, 4, 6}
        encoder.encode(3)  # asked for itself (a prompt): a real encoding, not the interpolation
        assert counter.calls == 4 and 3 in encoder.encoded
        assert not torch.allclose(predictor.get_image_embedding(), got)
    short = PlaneEncoder(predictor, 0, lambda t: planes[t], 4, size_cache=False, count=4, stride=2)
    assert short.anchors(3) is None  # no plane above it to interpolate towards
    assert short.anchors(1) == (0, 2)
    # stride 3 over 12 planes: past the last multiple (9) the planes lean on the last plane (11),
    # so a run encodes 0, 3, 6, 9, 11: at most ceil(12 / 3) + 1 planes and the seed
    coarse = PlaneEncoder(predictor, 0, lambda t: planes[t], 12, size_cache=False, count=12, stride=3)
    assert [coarse.anchors(t) for t in (1, 5, 9, 10, 11)] == [(0, 3), (3, 6), None, (9, 11), None]


def test_a_shared_cache_does_not_hide_the_planes_an_interpolation_used(tiny_model):
    """A second session on the same predictor finds the interpolations made by the first: it
    encodes nothing, yet reports the same planes used (``own``, ``visited``) as a fresh run. The
    benchmarks count ``own`` as what each variant would encode alone; before stop 43 a later
    variant sharing the cache missed the anchors of interpolations already cached (a BraTS run:
    101 planes against 122 for the same masks)."""
    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1, refine_below_dice=None)
    predictor = Predictor(tiny_model, cache=EmbeddingCache())

    def run() -> VolumeSession:
        session = VolumeSession(tiny_model, _volume(1.0), predictor=predictor, config=config)
        session.add_box3d((8, 8, 1, 24, 24, 5))  # slices 1..5: planes 1 and 5 lean on anchors 0 and 6, outside
        session.propagate(progress=False)
        return session

    first = run()
    with CountingEncoder(tiny_model) as counter:
        second = run()
    assert counter.calls == 0 and second.encoded_slices == set()  # everything came from the shared cache
    assert first.encoder.own == {0, 2, 3, 4, 6}  # the seed (3), the stride's planes and the anchors outside
    assert second.encoder.own == first.encoder.own and second.visited_slices == first.visited_slices
    # the cache holds what was encoded, not the interpolations (planes 1 and 5): they are made again
    assert len(predictor.cache) == len(first.encoder.own) and predictor.cache.nbytes == 5 * _embedding_bytes(predictor)
    assert np.array_equal(second.label_map().array, first.label_map().array)


def _embedding_bytes(predictor: Predictor) -> int:
    embedding = predictor.get_image_embedding()
    return embedding.element_size() * embedding.nelement()


def test_propagation_on_thin_slices_encodes_every_other_plane(tiny_model):
    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1, refine_below_dice=None)  # the stride alone
    with CountingEncoder(tiny_model) as counter:
        thin = VolumeSession(tiny_model, _volume(1.0), config=config)
        thin.add_box(4, (8, 8, 24, 24))
        labels = thin.propagate(progress=False)
    assert labels.array.shape == (9, 32, 32)
    assert thin.visited_slices == set(range(9))
    assert thin.encoded_slices == {0, 2, 4, 6, 8} and counter.calls == 5
    assert thin.encoder.interpolated == {1, 3, 5, 7}
    with CountingEncoder(tiny_model) as counter:
        thick = VolumeSession(tiny_model, _volume(3.0), config=config)  # 3 mm apart: every plane
        thick.add_box(4, (8, 8, 24, 24))
        thick.propagate(progress=False)
    assert thick.encoded_slices == set(range(9)) and counter.calls == 9
    exact = VolumeSession(tiny_model, _volume(1.0), config=PropagationConfig(min_area_px=0, extra_margins_mm=(),
                                                                              views=1, encode_stride=1))
    exact.add_box(3, (8, 8, 24, 24))
    exact.propagate(progress=False)
    assert exact.encoded_slices == set(range(9)) and not exact.encoder.interpolated
    thin.add_box(3, (8, 8, 24, 24), obj_id=2)  # a prompt on an interpolated plane: encoded itself
    assert 3 in thin.encoded_slices


def test_coarse_anchors_and_their_refinement(tiny_model):
    planes = _planes(12)
    predictor = Predictor(tiny_model, cache=EmbeddingCache())
    encoder = PlaneEncoder(predictor, 0, lambda t: planes[t], 12, size_cache=False, count=12, stride=2, coarse=4)
    coarse = [(0, 4), (0, 4), (0, 4), None, (8, 11), (8, 11), None]  # past the last multiple: the last plane
    assert [encoder.anchors(t) for t in (1, 2, 3, 4, 9, 10, 11)] == coarse
    assert [encoder.anchors(t, fine=True) for t in (1, 2, 3, 9, 10)] == [(0, 2), None, (2, 4), (8, 10), None]
    assert [encoder.refinable(t) for t in (1, 2, 3, 4, 8, 11)] == [True, True, True, False, False, False]
    assert [encoder.interval(t) for t in (0, 3, 4, 7, 11)] == [0, 0, 4, 4, 8]
    plain = PlaneEncoder(predictor, 0, lambda t: planes[t], 12, size_cache=False, count=12, stride=2)
    assert plain.coarse == 2 and not plain.refinable(3)  # no coarse stride: nothing to refine
    assert PropagationConfig().coarse_stride(2) == 4 and PropagationConfig().coarse_stride(1) == 1
    assert PropagationConfig(refine_below_dice=None).coarse_stride(2) == 2
    assert PropagationConfig(encode_stride=2).coarse_stride(2) == 2  # an explicit stride is kept
    with pytest.raises(InputError, match="refine_below_dice"):
        PropagationConfig(refine_below_dice=1.5)


def test_thin_slices_start_coarse_and_refine_where_the_mask_moves_fast(tiny_model, monkeypatch):
    from medisam.predict import axis_runs

    config = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1)
    calm = VolumeSession(tiny_model, _volume(1.0), config=replace_dice(config, 0.0))  # never refined
    calm.add_box(4, (8, 8, 24, 24))
    calm.propagate(progress=False)
    assert calm.encoded_slices == {0, 4, 8} and calm.encoder.interpolated == {1, 2, 3, 5, 6, 7}

    asked: list[int] = []

    def fast_at_5(s, t, previous, mask, obj_id):  # noqa: ANN001, ANN202 - the rule's signature
        if not s.encoder_of(obj_id).refinable(t):  # as the rule: only planes whose fine embedding differs
            return False
        asked.append(t)
        return t == 5

    monkeypatch.setattr(axis_runs, "_too_fast", fast_at_5)
    with CountingEncoder(tiny_model) as counter:
        session = VolumeSession(tiny_model, _volume(1.0), config=config)
        session.add_box(4, (8, 8, 24, 24))
        session.propagate(progress=False)
    assert set(asked) == {1, 2, 3, 5}  # asked on coarse planes; 6 and 7 follow 5's refinement unasked
    assert session.encoded_slices == {0, 4, 6, 8} and counter.calls == 4  # 6: the plane 5 was refined to
    fixed = VolumeSession(tiny_model, _volume(1.0), config=replace_dice(config, None))
    fixed.add_box(4, (8, 8, 24, 24))
    fixed.propagate(progress=False)
    for t in (5, 6, 7):  # the refined planes are decoded from the fine planes, as the fixed stride does
        assert np.array_equal(session.model_results(1)[t].mask, fixed.model_results(1)[t].mask)


def replace_dice(config: PropagationConfig, dice: float | None) -> PropagationConfig:
    from dataclasses import replace

    return replace(config, refine_below_dice=dice)


def test_plan_counts_the_planes_and_the_encodings_of_an_interpolating_view():
    from dataclasses import replace

    from medisam.predict.view_plan import plan_views
    from medisam.prompts import Box3D

    plan = plan_views((155, 240, 240), (1.0, 1.0, 1.0), 0, Box3D(50, 50, 20, 150, 150, 120))
    assert plan.encoded_at_most == plan.planes == 151
    assert "= 151 encodings (148 planes after the views' seed planes) vs 101" in plan.describe()
    strided = replace(plan, strides=(2, 1, 1))
    assert strided.encoded_at_most == 53 + 25 + 25
    assert "k: 101 (1 in 2 encoded)" in strided.describe()
    assert "151 planes (148 after the views' seed planes), at most 103 encodings" in strided.describe()
    from medisam.predict.view_plan import plan_for

    single = plan_for(PropagationConfig(views=1), (155, 240, 240), (1.0, 1.0, 1.0), 0, Box3D(50, 50, 20, 150, 150, 120))
    assert "k: 101 (1 in 4 to 1 in 2 encoded)" in single.describe()  # coarse first; the cost stays the upper bound
    assert single.encoded_at_most == 53
    fixed = plan_for(PropagationConfig(views=1, refine_below_dice=None), (155, 240, 240), (1.0, 1.0, 1.0), 0,
                     Box3D(50, 50, 20, 150, 150, 120))
    assert "k: 101 (1 in 2 encoded)" in fixed.describe()


def test_the_cache_grows_to_the_planes_within_the_memory_budget(tiny_model, monkeypatch):
    """A session's cache is sized for every plane it may visit, but not past its share of the
    machine (encoder.cache_budget): past it, least recently used planes are evicted."""
    from medisam.predict import encoder as encoder_module

    planes = _planes()
    predictor = Predictor(tiny_model, cache=EmbeddingCache(max_bytes=1))
    PlaneEncoder(predictor, 0, lambda t: planes[t], 1000, size_cache=True, count=len(planes)).encode(0)
    one = _embedding_bytes(predictor)
    assert predictor.cache.max_bytes == 1002 * one  # planes + 2
    assert encoder_module.cache_budget() >= 1 << 20  # this machine's quarter (or no limit)
    monkeypatch.setattr(encoder_module, "cache_budget", lambda: 3 * one)
    capped = Predictor(tiny_model, cache=EmbeddingCache(max_bytes=1))
    encoder = PlaneEncoder(capped, 0, lambda t: planes[t], 1000, size_cache=True, count=len(planes))
    for t in range(len(planes)):
        encoder.encode(t)
    assert capped.cache.max_bytes == 3 * one and len(capped.cache) == 3 and capped.cache.nbytes == 3 * one
