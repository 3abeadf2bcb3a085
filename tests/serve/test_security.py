"""Server security (issue 18): no server file reachable from a request, bounded work, safe defaults."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from serve_data import ct_volume, disk, png_bytes, zip_bytes


def _upload(tc, name: str, data: bytes, **form):
    return tc.post("/sessions", files={"file": (name, data, "application/octet-stream")}, data=form)


def _detail(r) -> str:
    body = r.json()
    assert set(body) == {"detail"}, body
    return body["detail"]


def _mhd_pair(tmp_path, data_file: str | None = None) -> tuple[bytes, bytes]:
    """(header, raw) bytes of a small int16 MetaImage; ``data_file`` overrides ElementDataFile."""
    path = tmp_path / "scan.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 6, 6), 7, np.int16)), str(path))
    header = path.read_text()
    if data_file is not None:
        header = "\n".join(ln if not ln.startswith("ElementDataFile") else f"ElementDataFile = {data_file}"
                           for ln in header.splitlines()) + "\n"
    return header.encode(), (tmp_path / "scan.raw").read_bytes()


# ------------------------------------------------------------ 1. detached headers
def test_upload_cannot_name_a_server_file(make_client, tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(np.full(4 * 6 * 6, 1234, np.int16).tobytes())
    tc = make_client()
    details = []
    for target in (str(secret), str(tmp_path / "missing.raw"), "../../../../etc/passwd", "/dev/zero"):
        header, _ = _mhd_pair(tmp_path, target)
        r = _upload(tc, "scan.mhd", header)
        assert r.status_code == 400, (target, r.text)
        details.append(_detail(r).replace(repr(target), "X"))
        assert str(tmp_path) not in _detail(r).replace(repr(target), "")
    assert len(set(details)) == 1  # an existing and a missing file answer alike: no existence oracle
    assert "outside the upload" in details[0]
    header, _ = _mhd_pair(tmp_path, str(secret))  # also when zipped: the data file must be in the zip
    r = _upload(tc, "scan.zip", zip_bytes({"scan.mhd": header}))
    assert r.status_code == 400 and "outside the upload" in _detail(r)
    r = _upload(tc, "scan.nhdr", b"NRRD0004\ntype: short\ndimension: 2\nsizes: 2 2\nencoding: raw\n"
                                 b"data file: ../../../etc/hostname\n")
    assert r.status_code == 400 and "outside the upload" in _detail(r)
    assert tc.get("/sessions").json()["open"] == 0


def test_zipped_header_with_its_data_file_is_read(make_client, tmp_path):
    header, raw = _mhd_pair(tmp_path)
    r = _upload(make_client(), "scan.zip", zip_bytes({"case/scan.mhd": header, "case/scan.raw": raw}))
    assert r.status_code == 201, r.text
    assert r.json()["shape"] == [4, 6, 6]


# ------------------------------------------------------------ 2. bounded points and bodies
def _pts(n: int) -> list[list[float]]:
    rng = np.random.default_rng(n)
    return [[float(x), float(y), 1.0] for x, y in rng.integers(10, 86, (n, 2))]


def test_points_per_request_and_per_object_are_capped(make_client):
    tc = make_client(max_points_per_request=8, max_points_per_object=12)
    sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]
    r = tc.post(f"/sessions/{sid}/predict", json={"points": _pts(9)})
    assert r.status_code == 400 and "9 points in one request" in _detail(r)
    r = tc.post(f"/sessions/{sid}/points", json={"points": _pts(9)})
    assert r.status_code == 400 and "limit of 8" in _detail(r)
    assert tc.post(f"/sessions/{sid}/predict", json={"points": _pts(8)}).status_code == 200
    assert tc.post(f"/sessions/{sid}/points", json={"points": _pts(4)}).status_code == 200  # 12 kept
    r = tc.post(f"/sessions/{sid}/points", json={"points": _pts(1)})
    assert r.status_code == 400 and "13 points" in _detail(r) and "limit of 12" in _detail(r)
    assert tc.post(f"/sessions/{sid}/undo").json()["undone"] is True  # back to 8 kept
    assert tc.post(f"/sessions/{sid}/points", json={"points": _pts(4)}).status_code == 200
    assert tc.post(f"/sessions/{sid}/predict", json={"points": _pts(2)}).status_code == 200  # replaces: 2
    assert tc.post(f"/sessions/{sid}/predict", json={"points": _pts(2), "obj_id": 2}).status_code == 200


def _volume_session(tc, tmp_path, shape=(6, 48, 48)) -> str:
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume(shape)), str(path))
    r = _upload(tc, "ct.nii.gz", path.read_bytes())
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def test_volume_points_per_object_are_capped(make_client, tmp_path):
    tc = make_client(max_points_per_object=3)
    sid = _volume_session(tc, tmp_path)
    pts = [[20.0, 20.0, 1.0], [24.0, 24.0, 1.0]]
    assert tc.post(f"/sessions/{sid}/predict", json={"slice": 3, "points": pts}).status_code == 200
    assert tc.post(f"/sessions/{sid}/points", json={"slice": 3, "points": pts[:1]}).status_code == 200
    r = tc.post(f"/sessions/{sid}/points", json={"slice": 3, "points": pts[:1]})
    assert r.status_code == 400 and "4 points" in _detail(r)
    assert tc.post(f"/sessions/{sid}/points", json={"slice": 2, "points": pts}).status_code == 200  # other slice


def test_json_routes_have_a_small_body_limit(make_client):
    tc = make_client(max_json_bytes=4096)
    sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]  # uploads keep the large limit
    r = tc.post(f"/sessions/{sid}/predict", json={"box": [1, 1, 5, 5], "pad": "x" * 5000})
    assert r.status_code == 413 and "limit of 4096 bytes" in _detail(r)
    r = tc.post(f"/sessions/{sid}/points", content=b"[" * 10_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert make_client().app.state.medisam.settings.max_json_bytes == 1 << 20
