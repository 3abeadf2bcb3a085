"""What a hostile or careless client sends: each request gets a 4xx with one short line, never a 500
or a silent misreading (docs/threat-model.md)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from serve_data import ct_volume, disk, png_bytes

JSON = {"content-type": "application/json"}


def _upload(tc, name: str, data: bytes, **form) -> str:
    r = tc.post("/sessions", files={"file": (name, data, "application/octet-stream")}, data=form)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def _nii(volume: np.ndarray) -> bytes:
    """An uncompressed NIfTI of a ``(Z, Y, X)`` volume."""
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "v.nii")
        sitk.WriteImage(sitk.GetImageFromArray(volume), path)
        with open(path, "rb") as f:
            return f.read()


def _refused(r, status: int = 400) -> str:
    """The one-line ``detail`` of a refusal with ``status``."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"detail"} and "\n" not in body["detail"]
    return body["detail"]


def test_mask_prompt_data_that_is_not_zlib_is_400(make_client):
    tc = make_client()
    sid = _upload(tc, "d.png", png_bytes(disk()))
    mask = {"shape": [96, 96], "dtype": "uint8", "data": "aGVsbG8="}  # base64 of b"hello": not zlib (was a 500)
    assert "cannot be decoded" in _refused(tc.post(f"/sessions/{sid}/predict", json={"mask": mask}))


@pytest.mark.parametrize("label", ["NaN", "Infinity", "-Infinity", "1e308", "1e20", "123456789012345678901234567890",
                                   "0.5", "0.9999999"])
@pytest.mark.parametrize("route", ["predict", "points"])
def test_point_label_other_than_0_or_1_is_400(make_client, route, label):
    """NaN/inf/huge labels were 500s (int() in Points.of); 0.5 was read as a negative click."""
    tc = make_client()
    sid = _upload(tc, "d.png", png_bytes(disk()))
    r = tc.post(f"/sessions/{sid}/{route}", content=f'{{"points": [[40, 40, {label}]]}}'.encode(), headers=JSON)
    assert "point labels must be 0" in _refused(r)
    ok = tc.post(f"/sessions/{sid}/{route}", json={"points": [[40, 40, 1.0], [10, 10, 0]]})
    assert ok.status_code == 200, ok.text  # 1.0 and 0 stay valid labels


def test_point_label_on_a_volume_is_checked_too(make_client):
    tc = make_client()
    sid = _upload(tc, "v.nii", _nii(ct_volume()), modality="CT")
    r = tc.post(f"/sessions/{sid}/points", content=b'{"slice": 3, "points": [[20, 20, NaN]]}', headers=JSON)
    assert "point labels must be 0" in _refused(r)


@pytest.mark.parametrize("window", ["1e-300,0", "5e-324,0", "1e308,1e308", "400,1e308", "1e308,-1e308"])
def test_window_the_float32_display_cannot_hold_is_400(make_client, window):
    """Such a window made every display pixel NaN or inf: a 200 with a null score and an empty mask."""
    tc = make_client()
    sid = _upload(tc, "d.png", png_bytes(disk()))
    assert "outside what the display can compute" in _refused(tc.post(f"/sessions/{sid}/window",
                                                                       json={"window": window}))
    r = tc.post("/sessions", files={"file": ("d.png", png_bytes(disk()))}, data={"window": window})
    assert "outside what the display can compute" in _refused(r)
    assert tc.get("/sessions").json()["open"] == 1  # the refused upload left no session
    assert tc.post(f"/sessions/{sid}/window", json={"window": "0.001,0.5"}).status_code == 200  # small but real


def test_labels_json_nested_past_the_recursion_limit_is_400(make_client):
    tc = make_client()
    sid = _upload(tc, "d.png", png_bytes(disk()))
    r = tc.get(f"/sessions/{sid}/mask", params={"format": "dcm", "labels": "[" * 5000})
    assert "nested too deeply" in _refused(r)


@pytest.mark.parametrize("what", ["window", "sid", "format"])
def test_an_error_quoting_a_huge_input_is_cut_short(make_client, what):
    """The detail quoted the whole input: 100 kB of a window name, 10 kB of a session id or a format."""
    tc = make_client()
    sid = _upload(tc, "d.png", png_bytes(disk()))
    if what == "window":
        r = tc.post(f"/sessions/{sid}/window", json={"window": "x" * 100_000})
    elif what == "sid":
        r = tc.get("/sessions/" + "a" * 10_000)
    else:
        r = tc.get(f"/sessions/{sid}/mask", params={"format": "n" * 10_000})
    detail = _refused(r, 404 if what == "sid" else 400)
    assert len(detail) <= 500 and "characters cut" in detail


def test_guide_larger_than_the_json_limit_is_accepted(make_client):
    """A guide is an upload as large as the session's volume; it had the 1 MiB JSON limit (413)."""
    tc = make_client(max_json_bytes=64 << 10)
    volume = np.random.default_rng(0).normal(0, 100, (8, 48, 48)).astype(np.float32)
    data = _nii(volume)
    assert len(data) > 64 << 10
    sid = _upload(tc, "v.nii", data)
    r = tc.post(f"/sessions/{sid}/guides", files={"file": ("g.nii", data)})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["guides"] == 1
    huge = tc.post(f"/sessions/{sid}/predict", json={"slice": 1, "box": [1, 1, 9, 9], "pad": "x" * (70 << 10)})
    assert "larger than the limit" in _refused(huge, 413)  # JSON routes keep the small limit


@pytest.mark.parametrize("route,body", [
    ("predict", {"slice": True, "box": [10, 10, 38, 38]}),
    ("box3d", {"box": [5, 5, 30, 30], "slice_range": [True, 3]}),
    ("click3d", {"zyx": [True, 20, 20]}),
    ("recist", {"slice": False, "line": [10, 10, 30, 30]}),
])
def test_boolean_where_an_index_is_expected_is_400(make_client, route, body):
    """``"slice": true`` was read as slice 1."""
    tc = make_client()
    sid = _upload(tc, "v.nii", _nii(ct_volume()), modality="CT")
    assert "not a boolean" in _refused(tc.post(f"/sessions/{sid}/{route}", json=body))


def test_propagate_without_a_body_propagates_both_ways(make_client):
    """Every field of /propagate has a default, so a bare POST (as /undo and /reset take) works; it was a 400
    reading "invalid request: : Field required"."""
    tc = make_client()
    sid = _upload(tc, "v.nii", _nii(ct_volume()), modality="CT")
    r = tc.post(f"/sessions/{sid}/predict", json={"slice": 3, "box": [10, 10, 40, 40]})
    assert r.status_code == 200, r.text
    r = tc.post(f"/sessions/{sid}/propagate")
    assert r.status_code == 200, r.text
    assert r.json()["slices_with_labels"] >= 1


def test_a_missing_json_body_is_named_in_the_refusal(make_client):
    tc = make_client()
    sid = _upload(tc, "v.nii", _nii(ct_volume()), modality="CT")
    detail = _refused(tc.post(f"/sessions/{sid}/predict"))
    assert detail.startswith("invalid request: the JSON body: ") and ": : " not in detail
