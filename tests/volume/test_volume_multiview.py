"""Tri-planar (views=3) 3D-box propagation: fusion, encoder economy, geometry, switches (tiny model)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from medisam.errors import InputError, PromptError
from medisam.predict import Predictor, PropagationConfig, VolumeSession
from medisam.predict.propagation import fuse_views, views_in_vote
from medisam.predict.view_plan import ViewGrid, encodings_at_most
from medisam.predict.volume import resample_axis
from medisam.prompts import Box3D

from test_volume_session import CountingEncoder, ball_volume

#: Keep going on empty random-model masks; one margin only (fewer decoder passes).
FAST = PropagationConfig(min_area_px=0, extra_margins_mm=(), view_budget=None,  # every plane: fusion mechanics
                         encode_stride=1,  # each plane encoded (views interpolate relative to their own range)
                         view_min_agreement=0.0)  # every view votes, whatever a random model makes of it
#: A small box: 2 + 4 + 5 planes across the three views.
BOX = (5, 4, 1, 9, 7, 2)  # x0, y0, z0, x1, y1, z1


def small_volume(spacing=(1.0, 1.0, 1.0)):
    return ball_volume(shape=(4, 12, 14), radius=3.0, spacing=spacing)[0]


def label_volume(session: VolumeSession, obj_id: int) -> np.ndarray:
    out = np.zeros(session.image.array.shape, dtype=bool)
    for t, r in session.results(obj_id).items():
        session.geometry.put(out, t, r.mask, True)
    return out


def test_fused_box_is_the_majority_of_three_single_axis_sessions(tiny_model):
    image = small_volume()
    predictor = Predictor(tiny_model)
    with CountingEncoder(tiny_model) as counter:
        session = VolumeSession(tiny_model, image, predictor=predictor, config=FAST)
        session.add_box3d(BOX, obj_id=2)
        planned = session.planned_slices()
        yielded = list(session.iter_propagate())
        assert len(yielded) <= planned
        assert {r.axis for r in yielded} == {0, 1, 2}
        # every plane encoded at most once per view, and only planes in the box's range
        assert counter.calls == len(session.encoded_planes) <= 2 + 4 + 5
        ranges = {0: range(1, 3), 1: range(4, 8), 2: range(5, 10)}
        assert all(t in ranges[a] for a, t in session.encoded_planes)
        assert {a for a, _ in session.encoded_planes} == {0, 1, 2}
        labels = session.label_map()
        assert session.planned_slices() == 0 and list(session.iter_propagate()) == []
        assert session.propagate(progress=False).array.tobytes() == labels.array.tobytes()
        assert counter.calls == len(session.encoded_planes)  # nothing re-encoded
    assert labels.array.shape == image.array.shape
    assert (labels.spacing, labels.origin, labels.direction) == (image.spacing, image.origin, image.direction)
    sources = {t: r.source for t, r in session.results(2).items()}
    assert sources == {1: "prompt", 2: "fused"}  # seed: the middle slice 1 + (2 - 1) // 2
    # isotropic voxels: each view is exactly the single-axis session along that axis
    single = []
    with CountingEncoder(tiny_model) as counter:
        for axis in (0, 1, 2):
            s = VolumeSession(tiny_model, image, axis=axis, predictor=predictor, config=replace(FAST, views=1))
            s.add_box3d(BOX, obj_id=2)
            s.propagate(progress=False)
            single.append(label_volume(s, 2))
        assert counter.calls == 0  # the same planes: all embeddings reused
    expected = (single[0].astype(int) + single[1] + single[2]) >= 2
    assert np.array_equal(labels.array == 2, expected)
    outside = np.ones(image.array.shape, bool)
    outside[1:3, 4:8, 5:10] = False
    assert not labels.array[outside].any()


def test_views1_is_single_axis_and_views3_main_view_matches_it(tiny_model):
    image = small_volume(spacing=(0.8, 0.9, 2.0))
    predictor = Predictor(tiny_model)
    one = VolumeSession(tiny_model, image, predictor=predictor, config=replace(FAST, views=1))
    one.add_box3d(BOX)
    results = list(one.iter_propagate())
    assert {r.axis for r in results} == {0} and one.encoded_planes == {(0, t) for t in one.encoded_slices}
    assert {r.source for r in one.results(1).values()} <= {"prompt", "propagated"}
    three = VolumeSession(tiny_model, image, predictor=predictor, config=FAST)
    three.add_box3d(BOX)
    main = {r.slice: r.mask for r in three.iter_propagate() if r.axis == 0}
    assert {t: r.mask.tobytes() for t, r in one.results(1).items() if t in main} == \
           {t: m.tobytes() for t, m in main.items()}
    # directions other than "both" keep the box on the session's axis
    fwd = VolumeSession(tiny_model, image, predictor=predictor, config=FAST)
    fwd.add_box3d(BOX)
    assert {r.axis for r in fwd.iter_propagate("forward")} <= {0}


def test_anisotropic_views_are_stretched_to_square_pixels_and_restored(tiny_model):
    image = small_volume(spacing=(0.8, 0.9, 2.0))  # ITK x, y, z: 2 mm slices
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d(BOX)
    views = session._view_sessions(1, session.object_state(1).box3d, session.object_state(1).box_version)
    grids = [g for g, _ in views]
    assert grids[0].stretch_axis is None  # the session's axis is seen as it is
    assert [(g.axis, g.stretch_axis) for g in grids[1:]] == [(1, 0), (2, 0)]
    for grid, view in views[1:]:
        px = view.geometry.pixel_mm
        assert max(px) / min(px) < 1.3  # near-square pixels for the encoder
        assert view.geometry.plane_hw[0] == grid.size > image.array.shape[0]
    yielded = list(session.iter_propagate())
    for r in yielded:  # every result is a plane of the input grid, whatever the view
        expected = [s for a, s in enumerate(image.array.shape) if a != r.axis]
        assert r.mask.shape == tuple(expected) and r.mask.dtype == bool
    labels = session.label_map()
    assert labels.array.shape == image.array.shape and not labels.array[[0, 3]].any()


def test_corrections_after_fusion_reach_half_way_and_undo(tiny_model):
    image = ball_volume(shape=(7, 12, 14), radius=3.0, spacing=(1.0, 1.0, 1.0))[0]
    session = VolumeSession(tiny_model, image, config=FAST)
    session.add_box3d((5, 4, 0, 7, 7, 6))  # 3 columns wide: the i view's volume is (7, 12, 3), not RGB
    before = session.propagate(progress=False).array.copy()
    assert {r.source for t, r in session.results(1).items() if t != 3} == {"fused"}
    session.add_box(0, (5, 4, 8, 8))  # a correction on slice 0 re-propagates along k up to slice 1
    list(session.iter_propagate())
    sources = {t: r.source for t, r in session.results(1).items()}
    assert sources[0] == "prompt" and sources[1] == "propagated" and sources[2] == "fused"
    assert np.array_equal(session.label_map().array[2:], before[2:])
    session.undo()
    assert np.array_equal(session.label_map().array, before)  # fused result kept, not recomputed


def test_box3d_outside_the_volume_and_bad_views(tiny_model):
    session = VolumeSession(tiny_model, small_volume(), config=FAST)
    with pytest.raises(PromptError, match="outside the volume"):
        session.add_box3d((5, 4, 1, 9, 7, 4))
    assert session.object_ids == [] and session.encoded_planes == set()
    with pytest.raises(InputError, match="views"):
        PropagationConfig(views=2)


def test_view_grid_and_fusion_helpers():
    box = Box3D(3, 4, 2, 20, 30, 7)
    grid = ViewGrid.for_box((10, 40, 50), (5.0, 0.7, 0.7), 1, box)
    assert (grid.axis, grid.lo, grid.hi, grid.stretch_axis, grid.size) == (1, 4, 30, 0, 71)
    assert ViewGrid.for_box((10, 40, 50), (5.0, 0.7, 0.7), 0, box).stretch_axis is None  # (Y, X) planes square
    assert ViewGrid.for_box((10, 40, 50), (5.0, 0.7, 0.7), 1, box, square=False).stretch_axis is None
    assert ViewGrid.for_box((10, 40, 50), (5.0, 0.7, 0.7), 2, box, max_side=30).size == 30  # capped
    vb = grid.box(box, (10, 40, 50))
    assert (vb.y0, vb.y1, vb.x0, vb.x1) == (0, 26, 3, 20) and vb.z0 <= 2 * 7.1 and vb.z1 >= 8 * 7.1 - 1
    # a mask made on the stretched grid comes back as voxel fractions on the original grid
    mask = np.zeros((10, 27, 50), bool)
    mask[2:8] = True
    stretched = resample_axis(mask.astype(np.float32), 0, grid.size) >= 0.5
    back = grid.restore(stretched, (10, 40, 50))
    assert back.shape == (10, 27, 50) and np.array_equal(back >= 0.5, mask)
    assert np.array_equal(grid.restore_plane(stretched[:, 3], (10, 40, 50)) >= 0.5, mask[:, 3])
    a, b, c = (np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool), np.array([0.0, 0.6, 0.6, 0.4]))
    assert fuse_views([a, b, c]).tolist() == [True, True, True, False]


def test_a_view_that_disagrees_with_the_session_axis_is_left_out_of_the_vote():
    session = np.zeros((4, 6, 6), np.float32)
    session[1:3, 1:5, 1:5] = 1
    near = session.copy()
    near[1, 1] = 0  # differs a little: votes
    wrong = np.zeros_like(session)
    wrong[:, 5] = 0.9  # a view that segmented something else (a whole lung's coronal reformats)
    kept, agree = views_in_vote([session, near, wrong], 0.15)
    assert kept == [0, 1] and agree[0] > 0.9 and agree[1] == 0.0
    assert views_in_vote([session, near, wrong], 0.0)[0] == [0, 1, 2]
    assert fuse_views([session, near, wrong]).sum() < session.sum()  # the 2-of-3 vote it would spoil
    with pytest.raises(InputError, match="view_min_agreement"):
        PropagationConfig(view_min_agreement=1.5)


def test_views_left_out_give_their_vote_to_the_session_axis(tiny_model, caplog):
    # the random model's views disagree: with a threshold of 1, only identical views would vote,
    # so the fused box is the session axis's own propagation, and the log says which views were out
    image = small_volume()
    predictor = Predictor(tiny_model)
    one = VolumeSession(tiny_model, image, predictor=predictor, config=replace(FAST, views=1))
    one.add_box3d(BOX)
    strict = VolumeSession(tiny_model, image, predictor=predictor,
                           config=replace(FAST, view_min_agreement=1.0, view_trusted_score=0.0))
    strict.add_box3d(BOX)
    assert not strict.notices
    with caplog.at_level("WARNING", logger="medisam.predict.triplanar"):
        fused = strict.propagate(progress=False).array
    assert np.array_equal(fused, one.propagate(progress=False).array)
    assert "left out of the vote" in caplog.text
    # the same words are the session's notices, for the server and the web UI (both other views)
    assert [n.split(":")[1].strip() for n in strict.notices] == ["the j view is left out of the vote",
                                                                 "the i view is left out of the vote"]
    every = VolumeSession(tiny_model, image, predictor=predictor, config=FAST)
    every.add_box3d(BOX)
    assert not np.array_equal(every.propagate(progress=False).array, fused)  # the other views did change it
    # an unsure session axis (the random model's scores are far below 1) keeps every view in the vote
    unsure = VolumeSession(tiny_model, image, predictor=predictor,
                           config=replace(FAST, view_min_agreement=1.0, view_trusted_score=1.0))
    unsure.add_box3d(BOX)
    assert np.array_equal(unsure.propagate(progress=False).array, every.propagate(progress=False).array)
    assert not unsure.notices and not every.notices


def test_plan_lines_say_the_cost_before_the_work_and_nothing_once_done(tiny_model, capsys):
    session = VolumeSession(tiny_model, small_volume(), config=FAST)
    assert session.plan_lines() == []  # no prompt, no work
    session.add_box3d(BOX, obj_id=2)
    lines = session.plan_lines()
    assert len(lines) == 1 and lines[0].startswith("object 2: 3D box plan: 3 view(s) [k: 2, j: 4, i: 5]")
    assert lines[0].startswith(f"object 2: {session.view_plan(2).describe()}")  # then its time, where known
    forward = session.plan_lines("forward")  # one direction: along the session axis, no 3D plan
    assert len(forward) == 1 and forward[0].startswith("object 2: along k, up to ")
    session.propagate(progress=True)
    err = capsys.readouterr().err
    assert lines[0] in err  # the CLI's path prints it before the work
    bar = re.findall(r"\| (\d+)/(\d+) \[.*?(plane/s|s/plane)\]", err)  # counted in the plan's word, not "slice"
    # the bar's total is the plan's planes less each view's seed plane, and the run yields exactly that many
    # (it counted the session axis's seed only: 11 in the plan, 10 in the bar, 8 yielded)
    assert "= 11 encodings (8 planes after the views' seed planes)" in lines[0]
    assert bar and int(bar[0][1]) == int(bar[-1][0]) == session.view_plan(2).planes_after_seeds == 8, bar
    assert session.plan_lines() == []  # fused: nothing left to do


def test_plan_lines_give_the_encodings_in_time_where_the_encoder_was_measured(tiny_model, monkeypatch):
    from medisam.predict import axis_session as session_module  # where sessions put encodings in time

    asked, profile_threads = [], []
    monkeypatch.setenv("MEDISAM_THREADS", "1")  # the profile's figure must be scaled to the run's threads

    def measured(encodings, name, backend, precision, timed_ms, threads=None):
        if timed_ms is None:  # no profile for this model: the session's own timing is used
            profile_threads.append(threads)
            return None
        asked.append((encodings, name, backend, precision))
        assert timed_ms > 0  # the seed plane's encoding, timed by the session (cold: the only one)
        return f"about {encodings} s at 1000 ms per encoding"

    monkeypatch.setattr(session_module, "encoding_time", measured)
    session = VolumeSession(tiny_model, small_volume(), config=FAST)
    session.add_box3d(BOX)
    plan = session.view_plan(1)
    assert session.plan_lines() == [f"object 1: {plan.describe()}; about {plan.encoded_at_most} s at 1000 ms "
                                     "per encoding"]
    assert asked == [(plan.encoded_at_most, tiny_model.name, "torch", "fp32")]
    assert profile_threads and set(profile_threads) == {1}  # it was asked for this run's one thread


def test_runs_along_the_session_axis_say_their_cost_too(tiny_model):
    thin = small_volume()  # 1 mm apart: one plane in four first, refined to one in two
    session = VolumeSession(tiny_model, thin, config=PropagationConfig(min_area_px=0, extra_margins_mm=()))
    session.add_box(1, (2, 2, 10, 10), obj_id=3)  # a box on one slice: runs to the volume's ends at most
    slices = session.planned_slices()  # the seed's own result is done
    (line,) = session.plan_lines()
    assert line.startswith(f"object 3: along k, up to {slices} planes (1 in 4 to 1 in 2 encoded), "
                           f"at most {encodings_at_most(slices, 2)} encodings")
    session.propagate(progress=False)
    assert session.plan_lines() == []  # nothing left to do


def test_encoding_time_prefers_an_encoding_timed_in_the_session(tmp_path, monkeypatch):
    from medisam.models.speed_profile import encoding_time, write_speed_profile

    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path))  # no speed profile measured
    assert encoding_time(10, "sam-vit-b") is None  # nothing known: no time said
    assert encoding_time(10, "sam-vit-b", timed_ms=250.0) == "about 2 s at 250 ms per encoding (timed in this session)"
    assert encoding_time(600, "litemedsam", "openvino", "fp32", timed_ms=1500.0) == (
        "about 15 min at 1500 ms per encoding (timed in this session)")
    write_speed_profile({"auto": {"backend": "openvino", "precision": "fp32"}, "threads": 1,
                         "measured": {"openvino-fp32": {"encoder_ms": 1321.0, "accepted": True}}})
    # the profile, when nothing was timed
    assert encoding_time(10, "litemedsam") == "about 13 s at 1321 ms per encoding"
    # a session's own encoding (its threads, this load) wins over the one-thread calibration
    assert encoding_time(10, "litemedsam", timed_ms=640.0) == "about 6 s at 640 ms per encoding (timed in this session)"
    # a run on 2 threads: the one-thread calibration scaled, and said so; two processes share the work
    assert encoding_time(10, "litemedsam", threads=2) == (
        "about 7 s at 660 ms per encoding (1321 ms calibrated on 1 thread, scaled to 2)")
    assert encoding_time(1000, "litemedsam", threads=1, parallel=2) == (
        "about 11 min in 2 processes at 1321 ms per encoding")


def test_sam2_model_is_refused_with_a_pointer_to_sam2session():
    pytest.importorskip("sam2")
    from medisam.errors import ModelError
    from medisam.models import load_model

    with pytest.raises(ModelError, match="Sam2Session"):
        VolumeSession(load_model("sam2-tiny", device="cpu"), np.zeros((3, 16, 16), np.float32))


def test_several_objects_plan_their_shared_encodings_once(tiny_model, monkeypatch):
    """Objects share a plane's encoding: 20 boxes on one slice of a 47-slice CT planned 20 x 47 = 940
    encodings (26 min) for 37 real ones. A line in all bounds them by the axis's planes; the time is
    given there, from a warm encoding where the session has one (its first, cold one took 4.5x)."""
    from medisam.predict import axis_session as session_module

    timings = []

    def measured(encodings, name, backend, precision, timed_ms, threads=None):
        timings.append(timed_ms)
        return None if timed_ms is None else f"about {encodings} s"

    monkeypatch.setattr(session_module, "encoding_time", measured)
    thin = small_volume()
    session = VolumeSession(tiny_model, thin, config=PropagationConfig(min_area_px=0, extra_margins_mm=()))
    for obj_id in (1, 2, 3):
        session.add_box(1, (2 + obj_id, 2, 10 + obj_id, 10), obj_id=obj_id)
    lines = session.plan_lines()
    per_object = [int(re.search(r"at most (\d+) encodings", line)[1]) for line in lines[:3]]
    bound = encodings_at_most(thin.num_slices, session.encoder.stride)
    assert len(lines) == 4 and not any("about" in line for line in lines[:3])  # no time per object
    assert lines[3].startswith(f"in all, 3 objects: at most {min(sum(per_object), bound)} encodings")
    assert sum(per_object) > bound  # the sum alone would overstate them
    assert lines[3].endswith(f"about {min(sum(per_object), bound)} s")
    assert session.encoder.warm_ms is None and timings[-1] == session.encoder.timed_ms  # only the cold one yet
    session.encoder.encode(0)
    session.encoder.encode(2)
    assert session.encoder.warm_ms is not None and session.encoder.warm_ms >= session.encoder.timed_ms
    timings.clear()
    session.plan_lines()
    assert timings[0] == session.encoder.warm_ms  # a warm timing first
