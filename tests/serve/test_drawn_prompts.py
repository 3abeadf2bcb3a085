"""RECIST line, scribble and lasso over REST: the same results as the library path, undoable,
bad shapes 400, vertex counts capped, token required (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest
from serve_data import TOKEN, ct_volume, disk

from medisam.client import Client, ServerError

SPACING = (0.8, 0.8, 2.0)  # x, y, z mm (ITK order)


def _reference(tiny_model):
    from medisam.io import MedicalImage
    from medisam.serve.interactive import InteractiveSession

    image = MedicalImage.from_array(ct_volume((10, 48, 48)), spacing=SPACING)
    return InteractiveSession(tiny_model, image)


def test_recist_is_the_lesion_3d_box_and_propagates_like_it(make_client, tiny_model):
    from medisam.predict import VolumeSession
    from medisam.prompting.shapes import recist_to_box3d

    line = (14.0, 24.0, 34.0, 24.0)  # 20 px = 16 mm long on slice 5
    b3 = recist_to_box3d(line, 5, (10, 48, 48), (2.0, 0.8, 0.8))
    # across: 0.8 * 20 = 16 px (8 each side) + 2 px margin; depth 0.8 * 16 mm = 12.8 mm -> 3 slices each side
    assert (b3.x0, b3.y0, b3.z0, b3.x1, b3.y1, b3.z1) == (12, 14, 2, 35, 33, 8)
    ref = VolumeSession(tiny_model, _reference(tiny_model).image)
    ref.add_box3d(b3)
    expected = ref.propagate(progress=False).array
    c = Client(http=make_client())
    with c.open_session(ct_volume((10, 48, 48)), spacing=SPACING) as s:
        seed = s.add_recist(5, line)
        assert seed.shape == (48, 48) and s.last_slice in range(2, 9)
        s.propagate()
        labels = s.labels()
        assert np.array_equal(labels, expected)
        assert not labels[:2].any() and not labels[9:].any()  # stays in the lesion's slices
        assert s.undo() and s.refresh()["object_ids"] == []


def test_recist_on_a_2d_image_is_the_box_around_the_line(make_client, tiny_model):
    from medisam.prompting.shapes import recist_prompt

    c = Client(http=make_client())
    with c.open_session(disk()) as s:
        got = s.add_recist(None, (30, 48, 66, 48))
        want = s.predict(box=recist_prompt((30, 48), (66, 48), (96, 96)).box.as_array())
        assert np.array_equal(got, want)


def test_scribble_adds_clicks_along_the_line_and_lasso_is_a_mask_prompt(make_client, tiny_model):
    from medisam.prompting.shapes import lasso_mask, scribble_points

    ref = _reference(tiny_model)
    poly = [(18.0, 20.0), (30.0, 20.0), (30.0, 28.0)]
    pts = scribble_points(poly, (48, 48), positive=True)
    ref_scribble = ref.add_points(4, 1, points=[(x, y, lab) for (x, y), lab in zip(pts.coords.tolist(),
                                                                                    pts.labels.tolist())]).mask
    square = [(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)]
    c = Client(http=make_client())
    with c.open_session(ct_volume((10, 48, 48)), spacing=SPACING) as s:
        assert np.array_equal(s.add_scribble(4, poly), ref_scribble)
        assert s.refresh()["undo_steps"] == 1
        lasso = s.add_lasso(6, square, obj_id=2)
        assert np.array_equal(lasso, lasso_mask(square, (48, 48)))  # a volume keeps the mask as drawn
        assert s.labels(6).max() == 2
        assert s.undo() and s.labels(6).max() == 0
        neg = s.add_scribble(4, [(20, 22)], positive=False)
        assert neg.shape == (48, 48)


@pytest.mark.parametrize("route, body, msg", [
    ("recist", {"slice": 3, "line": [5, 5, 5.2, 5.1]}, "one pixel apart"),
    ("recist", {"slice": 3, "line": [5, 5, 90, 5]}, "leaves the"),
    ("recist", {"slice": 30, "line": [5, 5, 20, 5]}, "out of range"),
    ("recist", {"slice": 3, "line": [5, 5, 20]}, "line"),
    ("scribble", {"slice": 3, "polyline": [[1, 2, 3]]}, "(x, y) vertices"),
    ("scribble", {"slice": 3, "polyline": []}, "polyline"),
    ("lasso", {"slice": 3, "polygon": [[1, 1], [2, 2]]}, "polygon"),
    ("lasso", {"slice": 3, "polygon": [[100, 100], [120, 100], [120, 120]]}, "lies outside"),
    ("lasso", {"slice": 3, "polygon": [[48, 5], [48, 13], [47.6, 9]]}, "encloses no pixel"),  # on the right edge
    ("lasso", {"slice": 3, "polygon": [[5, 5], [5, 5], [5, 5]]}, "encloses 0 square pixels"),  # one point
    ("scribble", {"slice": 3, "polyline": [[5, 5], [500, 5]]}, "scribble vertex 1 (500, 5) lies outside"),
])
def test_bad_drawn_prompts_are_one_line_400(make_client, route, body, msg):
    tc = make_client()
    with Client(http=tc).open_session(ct_volume()) as s:
        r = tc.post(f"/sessions/{s.id}/{route}", json=body)
        assert r.status_code in (400, 422), r.text
        assert msg in str(r.json()["detail"])


def test_recist_on_a_video_is_refused(make_client, tmp_path):
    pytest.importorskip("av")
    from medisam.io.video import write_video

    frames = np.stack([np.repeat(disk(64)[..., None], 3, axis=-1)] * 3)
    clip = write_video(frames, tmp_path / "clip.mp4", fps=10)
    with Client(http=make_client()).open_session(clip) as s, pytest.raises(ServerError, match="not on a video"):
        s.add_recist(1, (20, 32, 44, 32))


def test_vertex_counts_are_capped_and_the_token_is_required(make_client):
    tc = make_client(token=TOKEN, max_points_per_request=8)
    c = Client(http=tc, token=TOKEN)
    with c.open_session(ct_volume()) as s:
        many = [[float(10 + i), 20.0] for i in range(9)]
        for route, body in (("scribble", {"slice": 3, "polyline": many}),
                            ("lasso", {"slice": 3, "polygon": many})):
            r = tc.post(f"/sessions/{s.id}/{route}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 400 and "9 points in one request" in r.json()["detail"]
        for route in ("recist", "scribble", "lasso", "click3d"):
            r = tc.post(f"/sessions/{s.id}/{route}", json={}, headers={"Authorization": "Bearer wrong-token-xyz"})
            assert r.status_code == 401 and "bearer token" in r.json()["detail"]
        assert s.add_scribble(3, many[:8]).shape == (48, 48)


def _walker_reference(session, k, polyline, positive, obj_id=1):
    """The scribble's clicks as corrective clicks solved together (the walker: the volume session's
    add_clicks, the 2D session's correction of several pixels), for comparison."""
    from medisam.prompting.shapes import scribble_points

    pixels = [(int(y), int(x)) for x, y in scribble_points(polyline, session._plane_hw(), positive).coords.tolist()]
    if session.volume is None:
        session._correct2d(pixels, positive, obj_id)
    else:
        session.volume.add_clicks([(k, y, x) for y, x in pixels], positive, obj_id)
    return session.labels.copy()


def test_a_scribble_on_an_object_with_a_mask_corrects_it_as_clicks_in_one_undo_step(tiny_model):
    """2D image and volume: on a prompted object a scribble's clicks are walker clicks solved together
    (one walker solve), one undo step; on a new object they are point prompts (add_points)."""
    from medisam.io import MedicalImage
    from medisam.serve.interactive import InteractiveSession

    line = [(18.0, 12.0), (40.0, 30.0)]
    for image, k in ((MedicalImage.from_array(disk(64)), None),
                     (MedicalImage.from_array(ct_volume((6, 48, 48)), spacing=SPACING), 3)):
        box = (14, 10, 34, 30)
        s, ref = InteractiveSession(tiny_model, image), InteractiveSession(tiny_model, image)
        for x in (s, ref):
            if k is None:
                x.segment(None, 1, box=box)
            else:  # propagated (a scribble's first 3D click would run the propagation; test_refine3d)
                x.add_box3d(box=box, slice_range=(2, 4), obj_id=1)
                x.propagate()
        boxed, steps = s.labels.copy(), s.can_undo
        assert s.corrects(1) and not s.corrects(2)
        got = s.add_scribble(k, line, True, 1)
        want = _walker_reference(ref, k or 0, line, True)
        assert np.array_equal(s.labels, want) and np.array_equal(got.mask, want[k or 0] == 1 if k else want == 1)
        if k is None:
            assert (s.labels[boxed == 1] == 1).all()  # on a 2D image a positive scribble only adds
        assert s.can_undo == steps + 1  # the whole scribble is one step
        s.undo()
        assert np.array_equal(s.labels, boxed)
        new = s.add_scribble(k, [(20.0, 20.0), (30.0, 20.0)], True, 2)  # a new object: point prompts
        prompted = InteractiveSession(tiny_model, image)
        want2 = prompted.add_points(k, 2, points=[(20.0, 20.0, 1), (30.0, 20.0, 1)]).mask
        assert np.array_equal(new.mask, want2)


def test_a_box_with_a_mask_on_a_volume_slice_is_refused_and_changes_nothing(tiny_model):
    """On a volume a box replaced the mask (a lasso) it came with, silently: it is refused in one line
    (as ``medisam propagate --lasso --box``); a mask with points is their mask prompt; on a 2D image a
    box with a mask stays allowed (both go to the model)."""
    from medisam.errors import PromptError
    from medisam.io import MedicalImage
    from medisam.serve.interactive import InteractiveSession

    s = _reference(tiny_model)
    lasso = np.zeros((48, 48), bool)
    lasso[14:30, 12:32] = True
    with pytest.raises(PromptError, match="a box or a mask"):
        s.segment(4, 1, box=(10, 10, 36, 34), mask=lasso)
    assert s.can_undo == 0 and not s.labels.any()
    res = s.segment(4, 1, mask=lasso, points=[(20, 20, 1)])
    assert s.can_undo == 1 and res.mask.any()
    flat = InteractiveSession(tiny_model, MedicalImage.from_array(disk(64)))
    assert flat.segment(None, 1, box=(14, 10, 34, 30), mask=disk(64, (32, 32), 10) > 0).mask.any()


def test_a_2d_scribble_honouring_none_of_its_clicks_is_a_one_line_400(make_client, monkeypatch):
    """Over REST a 2D scribble the walker honours none of the clicks of is refused, naming why,
    and changes nothing: no undo step, the same mask."""
    import medisam.serve.interactive as interactive

    monkeypatch.setattr(interactive, "correct_2d", lambda *args, **kwargs: None)
    with Client(http=make_client()).open_session(disk(64)) as s:
        s.predict(None, box=(14, 10, 34, 30))
        before, steps = s.labels(None), s.refresh()["undo_steps"]
        with pytest.raises(ServerError, match="scribble changed nothing") as err:
            s.add_scribble(None, [(18.0, 12.0), (40.0, 30.0)])
        assert err.value.status == 400
        assert s.refresh()["undo_steps"] == steps and np.array_equal(s.labels(None), before)


@pytest.mark.parametrize("volume", [True, False])
def test_the_found_box_comes_with_a_click_alone_not_with_the_scribble_that_corrects_it(make_client, tiny_model,
                                                                                      monkeypatch, volume):
    import dataclasses

    # as LiteMedSAM: points alone are answered with a box searched around them (the tiny model answers them itself)
    monkeypatch.setattr(tiny_model, "spec", dataclasses.replace(tiny_model.spec, box_from_points=True))
    image, k, click = (ct_volume((10, 48, 48)), 4, (24, 24, 1)) if volume else (disk(), None, (48, 48, 1))
    c = Client(http=make_client())
    with c.open_session(image, spacing=SPACING if volume else None) as s:
        s.predict(k, points=[click])
        found = s.last_found_box
        assert found is not None and found[0] <= click[0] < found[2] and found[1] <= click[1] < found[3]
        if volume:
            s.propagate()  # a volume's clicks correct its propagated result
        mask = s.add_scribble(k, [(click[0] - 3, click[1]), (click[0] + 3, click[1])], positive=False)
        assert s.last_found_box is None  # a correction (the random walker) was answered with no box
        assert not mask[click[1], click[0]]
        s.undo()
        assert s.add_points(k, points=[(click[0] + 2, click[1], 1)]) is not None  # a second click searches again
        assert s.last_found_box is not None
