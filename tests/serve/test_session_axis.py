"""A server session slices a volume along its acquisition axis (as ``medisam propagate --box3d``
and the benchmark do), not along array axis 0: a volume stored with its thick axis last (spacing
(1, 1, 5) zyx) is browsed and prompted in its (Z, Y) planes of square pixels. Every "slice" of a
request and an answer is an index along the session's axis (``SessionInfo.axis``); label maps,
3D boxes and 3D clicks stay in the volume's (Z, Y, X) array order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from serve_data import disk, png_bytes

from medisam.client import decode_array, nrrd_bytes
from medisam.io import read_image
from medisam.predict import open_session
from medisam.prompts import Box3D
from medisam.serve.interactive import InteractiveSession

#: ITK order (x, y, z): x is 5 mm thick, so the zyx spacing is (1, 1, 5): slices stored last
SPACING_XYZ = (5.0, 1.0, 1.0)
BOX = [8.0, 10.0, 28.0, 30.0]  # x0, y0, x1, y1 on a (Z, Y) = (40, 36) plane


def slices_last() -> np.ndarray:
    """A (40, 36, 10) volume (Z, Y, X): an ellipsoid, round in mm, whose planes along axis 2 are (Z, Y)."""
    z, y, x = np.mgrid[:40, :36, :10]
    ball = ((z - 20) / 12.0) ** 2 + ((y - 18) / 10.0) ** 2 + ((x * 5.0 - 25) / 15.0) ** 2 <= 1
    return np.where(ball, 180, 40).astype(np.int16)


def _upload(tc, name: str, data: bytes, **form):
    return tc.post("/sessions", files={"file": (name, data, "application/octet-stream")}, data=form)


def _saved(tmp_path: Path, volume: np.ndarray, spacing=SPACING_XYZ) -> tuple[bytes, Path]:
    """The NRRD bytes the test uploads, and the same file on disk for the library's reference session."""
    data = nrrd_bytes(volume, spacing, (0.0, 0.0, 0.0))
    path = tmp_path / "vol.nrrd"
    path.write_bytes(data)
    return data, path


def test_a_slices_last_volume_is_sliced_along_axis_2_as_the_library_on_that_axis(make_client, tiny_model, tmp_path):
    """Info names axis 2; a box on slice 5 answers a (Z, Y) mask equal to ``open_session(axis=2)``'s; the
    propagated label map (Z, Y, X order) and the per-slice answers are the library's along axis 2."""
    data, path = _saved(tmp_path, slices_last())
    tc = make_client()
    info = _upload(tc, "vol.nrrd", data).json()
    assert (info["axis"], info["num_slices"], info["slice_shape"], info["pixel_mm"]) == (2, 10, [40, 36], [1.0, 1.0])
    assert info["shape"] == [40, 36, 10]  # the array as stored
    sid = info["session_id"]
    ref = open_session(tiny_model, read_image(path), axis=2)
    r = tc.post(f"/sessions/{sid}/predict", json={"slice": 5, "box": BOX})
    assert r.status_code == 200, r.text
    mask = decode_array(r.json()["mask"])
    expected = ref.add_box(5, BOX, 1).mask
    assert mask.shape == (40, 36) and expected.any() and np.array_equal(mask, expected)
    out = tc.post(f"/sessions/{sid}/propagate").json()
    ref.propagate()
    truth = ref.label_map().array
    labels = decode_array(tc.get(f"/sessions/{sid}/labels").json())
    assert labels.shape == (40, 36, 10) and np.array_equal(labels, truth)
    assert out["slices_with_labels"] == int(truth.any(axis=(0, 1)).sum())  # slices along axis 2
    one = decode_array(tc.get(f"/sessions/{sid}/labels", params={"slice": 7}).json())
    assert np.array_equal(one, truth[:, :, 7])
    assert tc.post(f"/sessions/{sid}/predict", json={"slice": 10, "box": BOX}).json()["detail"] == \
        "slice 10 out of range 0..9 along axis 2"


def test_the_upload_may_name_the_axis_and_a_bad_one_is_a_one_line_400(make_client, tmp_path):
    tc = make_client()
    data, _ = _saved(tmp_path, slices_last())
    info = _upload(tc, "vol.nrrd", data, axis="k").json()
    assert (info["axis"], info["num_slices"], info["slice_shape"], info["pixel_mm"]) == (0, 40, [36, 10], [5.0, 1.0])
    mask = decode_array(tc.post(f"/sessions/{info['session_id']}/predict",
                                json={"slice": 20, "box": [1, 5, 9, 30]}).json()["mask"])
    assert mask.shape == (36, 10)
    r = _upload(tc, "vol.nrrd", data, axis="3")
    assert r.status_code == 400 and r.json()["detail"] == "axis must be 0, 1, 2 or k, j, i; got '3'"
    png = png_bytes(disk())
    r = _upload(tc, "scan.png", png, axis="2")
    assert r.status_code == 400 and r.json()["detail"] == "axis '2' applies to volumes; a 2D image has one slice, " \
                                                          "on axis 0"
    assert _upload(tc, "scan.png", png).json()["axis"] == 0  # 2D images unchanged
    assert tc.get("/sessions").json()["open"] == 2  # the refused uploads left no session behind


def test_a_3d_box_from_a_box_and_slice_range_and_a_3d_click_as_the_library_on_axis_2(make_client, tiny_model,
                                                                                    tmp_path):
    """The 2D box and its slice range are a slice's pixels and slices along axis 2: the library's 3D box
    ``x = 3..7, y = 8..27, z = 10..29``; a 3D click's ``zyx`` stays a voxel of the (Z, Y, X) array."""
    data, path = _saved(tmp_path, slices_last())
    tc = make_client()
    sid = _upload(tc, "vol.nrrd", data).json()["session_id"]
    r = tc.post(f"/sessions/{sid}/box3d", json={"box": BOX, "slice_range": [3, 7]})
    assert r.status_code == 200, r.text
    ref = open_session(tiny_model, read_image(path), axis=2)
    seed = ref.add_box3d(Box3D(3, 8, 10, 7, 27, 29), 1)
    assert r.json()["slice"] == seed.slice and np.array_equal(decode_array(r.json()["mask"]), seed.mask)
    tc.post(f"/sessions/{sid}/propagate")
    ref.propagate()
    click = tc.post(f"/sessions/{sid}/click3d", json={"zyx": [20, 18, 5], "positive": True}).json()
    done = ref.add_click((20, 18, 5), True, 1)
    assert (click["slice"], click["rejected"]) == (done.slice, done.rejected) and done.slice == 5
    labels = decode_array(tc.get(f"/sessions/{sid}/labels").json())
    assert np.array_equal(labels, ref.label_map().array)
    r = tc.post(f"/sessions/{sid}/box3d", json={"box": BOX, "slice_range": [3, 7], "slice": 8})
    assert r.status_code == 400 and r.json()["detail"] == "the box was drawn on slice 8, outside its slice range 3..7"


def test_recist_and_scribbles_on_axis_2_are_those_of_the_same_planes_stored_slices_first(tiny_model, tmp_path):
    """Axis 2 of the slices-last volume and axis 0 of its transpose (slices first) show the same planes: a
    RECIST line gives the same lesion box (z extent from its length in mm) and a scribble the same clicks,
    each in its own array's order."""
    vol = slices_last()
    last = read_image(_write(tmp_path / "last.nrrd", vol, SPACING_XYZ))
    first = read_image(_write(tmp_path / "first.nrrd", np.ascontiguousarray(np.moveaxis(vol, 2, 0)),
                              (1.0, 1.0, 5.0)))
    a, b = InteractiveSession(tiny_model, last), InteractiveSession(tiny_model, first)
    assert (a.axis, b.axis) == (2, 0) and a.slice_shape == b.slice_shape == (40, 36)
    assert np.array_equal(a.display_slice(5), b.display_slice(5))
    line = (10.0, 12.0, 26.0, 24.0)
    a.add_recist(5, line, 1)
    b.add_recist(5, line, 1)
    ba, bb = a.volume.object_state(1).box3d, b.volume.object_state(1).box3d
    # the transpose's (x, y, z) are the slices-last volume's (y, z, x)
    assert (ba.x0, ba.y0, ba.z0, ba.x1, ba.y1, ba.z1) == (bb.z0, bb.x0, bb.y0, bb.z1, bb.x1, bb.y1)
    assert ba.x0 < 5 < ba.x1 and ba.x1 - ba.x0 < ba.y1 - ba.y0  # across the 5 mm slices: fewer of them
    for s in (a, b):
        s.reset()
        s.segment(5, 2, box=BOX)
        s.propagate()
    assert np.array_equal(a.labels, np.moveaxis(b.labels, 0, 2))
    polyline = [[12.0, 20.0], [24.0, 20.0]]
    for s in (a, b):
        s.add_scribble(5, polyline, True, 2)
    assert np.array_equal(a.labels, np.moveaxis(b.labels, 0, 2))
    assert np.array_equal(a.labels_slice(5), b.labels_slice(5))


def _write(path: Path, volume: np.ndarray, spacing) -> Path:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(nrrd_bytes(volume, spacing, (0.0, 0.0, 0.0)))
    return path
