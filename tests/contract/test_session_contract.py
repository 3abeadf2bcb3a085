"""Every session implementation runs the same script of calls with the same observable behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from contract_data import SHAPE, disk_volume

from medisam.errors import InputError, PromptError
from medisam.predict import Session, SliceResult, ViewProgress
from medisam.predict.contract import paint_order

BOX = (6, 8, 24, 25)
BOX3D = (6, 8, 1, 26, 24, 4)


def _prompt_state(s: Session) -> dict:
    """Everything the prompts say, comparable with ==."""
    out = {}
    for obj_id in s.object_ids:
        for t in range(s.num_slices):
            p = s.slice_prompts(t, obj_id)
            if p is not None:
                out[(obj_id, t)] = (None if p.box is None else tuple(p.box.as_array()),
                                    None if p.points is None else p.points.coords.tobytes(),
                                    None if p.mask is None else p.mask.tobytes())
    return out


def _break_model_once(name: str, s: Session, monkeypatch) -> None:
    """Make the model raise on its next prompt (and work again afterwards)."""
    target, attr = (s.predictor, "add_new_points_or_box") if name == "sam2" else (s.predictor, "predict")
    original = getattr(target, attr)
    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model failed midway")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, attr, boom)


def test_one_script_same_behaviour(session):
    name, s = session
    assert isinstance(s, Session) and s.num_slices == SHAPE[0] and s.plane_hw == SHAPE[1:]
    r = s.add_box(2, BOX, obj_id=1)
    assert isinstance(r, SliceResult) and (r.slice, r.obj_id, r.source, r.axis) == (2, 1, "prompt", 0)
    assert r.mask.shape == SHAPE[1:] and r.mask.dtype == bool
    s.add_points(2, [(15, 16, 1)], obj_id=1)
    s.add_box(2, (5, 7, 25, 26), obj_id=1)  # a box replaces the box and keeps the clicks
    p = s.slice_prompts(2, 1)
    assert tuple(p.box.as_array()) == (5, 7, 25, 26) and len(p.points.coords) == 1
    assert s.found_box(2, 1) is None  # a drawn box: no box was searched for
    _, masks = disk_volume()
    r = s.add_mask(4, masks[4], obj_id=2)
    assert np.array_equal(r.mask, masks[4]) and s.slice_prompts(4, 2).box is None
    assert s.object_ids == [1, 2] and s.can_undo == 4

    planned = s.planned_slices()
    items = list(s.iter_propagate())
    results = [i for i in items if isinstance(i, SliceResult)]
    assert 0 < len(items) <= planned and all(isinstance(i, (SliceResult, ViewProgress)) for i in items)
    assert all(r.axis == 0 and 0 <= r.slice < SHAPE[0] for r in results)  # session-axis slices only
    labels = s.label_map().array
    assert labels.shape == SHAPE and set(np.unique(labels)) <= {0, 1, 2}
    sizes = {o: sum(int(r.mask.sum()) for r in s.results(o).values()) for o in s.object_ids}
    top = paint_order(sizes)[-1]  # the smaller object is on top where objects overlap
    for t, r in s.results(top).items():
        assert np.array_equal(labels[t] == top, r.mask)
    assert s.can_undo == 4  # propagation is not an undo step

    s.clear_slice(4, obj_id=2)  # its only prompt: the object goes
    assert s.object_ids == [1]
    s.undo()
    assert s.object_ids == [1, 2] and np.array_equal(s.slice_prompts(4, 2).mask, masks[4])
    propagated = {t: r.mask for t, r in s.results(1).items()}
    s.remove_object(1)
    s.undo()
    assert s.object_ids == [1, 2] and len(s.slice_prompts(2, 1).points.coords) == 1
    if name.startswith("volume"):  # undoing a removal brings the results back, not the prompts alone
        assert {t: r.mask.tobytes() for t, r in s.results(1).items()} == {t: m.tobytes() for t, m in propagated.items()}

    before, steps = _prompt_state(s), s.can_undo
    with s.step():  # several calls, one undo step
        s.add_box(1, BOX, obj_id=3)
        s.add_points(1, [(12, 15, 1)], obj_id=3)
    assert s.can_undo == steps + 1 and s.object_ids == [1, 2, 3]
    s.undo()
    assert _prompt_state(s) == before and s.can_undo == steps
    with pytest.raises(PromptError):  # all or nothing
        with s.step():
            s.add_box(0, BOX, obj_id=4)
            s.add_box(0, (1, 1, 99, 5), obj_id=4)
    assert _prompt_state(s) == before and s.can_undo == steps

    r = s.add_box3d(BOX3D, obj_id=5)
    assert r.slice == 2 and r.obj_id == 5
    plan = s.plan_lines()  # the coming work's cost in words, before it (CLI, server, web UI)
    assert isinstance(plan, list) and all(isinstance(line, str) for line in plan)
    said = {"volume-views1": None, "volume-views3": "object 5: 3D box plan: ", "sam2": "SAM 2 tracks 3 object(s) in 2",
            "tracking-video": "tracking 3 object(s) over 6 frame(s)"}[name]
    if name.startswith("volume"):  # runs along the session axis say their cost too, a line per object with work
        axis = [line for line in plan if ": along k, up to " in line and " encodings" in line]
        # (views3: objects 1 and 2 kept their results through the undos; 5, the 3D box, is tri-planar)
        assert (axis or name == "volume-views3") and all(line.startswith("object ") for line in axis)
        plan = [line for line in plan if line not in axis]
    assert plan == [] if said is None else (len(plan) == 1 and plan[0].startswith(said))
    s.propagate(progress=False)
    # nothing was left out of a vote here; a video's tracks may end (the random model's noise masks are lost)
    assert [n for n in s.notices if not (name == "tracking-video" and " lost (no longer seen) at frame " in n)] == []
    labels = s.label_map().array
    assert set(s.results(5)) <= set(range(1, 5)) and not (labels[[0, 5]] == 5).any()
    s.reset()
    assert s.object_ids == [] and not s.label_map().array.any()
    s.undo()
    assert s.object_ids == [1, 2, 5]
    with pytest.raises(PromptError, match="no object 7"):
        s.remove_object(7)
    with pytest.raises(InputError, match="direction"):
        next(iter(s.iter_propagate("sideways")))


def test_add_box3d_is_all_or_nothing(session, monkeypatch):
    name, s = session
    s.add_box(2, BOX, obj_id=1)
    s.add_points(3, [(15, 16, 1)], obj_id=1)
    s.add_box(3, BOX, obj_id=2)
    before, steps, labels = _prompt_state(s), s.can_undo, s.label_map().array.copy()
    _break_model_once(name, s, monkeypatch)
    with pytest.raises(RuntimeError, match="midway"):
        s.add_box3d(BOX3D, obj_id=1)  # would replace object 1's prompts
    assert _prompt_state(s) == before and s.can_undo == steps
    assert np.array_equal(s.label_map().array, labels)
    assert s.add_box3d(BOX3D, obj_id=1).slice == 2  # and the session still works
    assert set(_prompt_state(s)) == {(1, 2), (2, 3)}
