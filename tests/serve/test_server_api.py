"""REST API through FastAPI's TestClient on the tiny random model: auth, limits, errors, formats."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
from serve_data import TOKEN, ct_volume, disk, png_bytes, write_ct_series, zip_bytes

from medisam.client import Client, ServerError, encode_array


def _upload(tc, name: str, data: bytes, **form):
    return tc.post("/sessions", files={"file": (name, data, "application/octet-stream")}, data=form)


def _detail(r) -> str:
    body = r.json()
    assert set(body) == {"detail"}
    return body["detail"]


# ---------------------------------------------------------------- service
def test_healthz_capabilities_and_openapi(make_client):
    tc = make_client()
    assert tc.get("/healthz").json() == {"status": "ok"}
    caps = tc.get("/capabilities").json()
    assert caps["model"] == "litemedsam-tiny" and caps["auth"] is False
    assert {".nii.gz", ".png", ".zip", ".nrrd"} <= set(caps["input_formats"])
    assert {"nii.gz", "png", "dcm"} <= set(caps["output_formats"])
    assert caps["limits"]["max_sessions"] == 8
    counts = {k: v for k, v in caps["limits"].items() if k != "idle_timeout_s"}  # bytes and counts: JSON integers
    assert all(type(v) is int for v in counts.values()), counts
    paths = tc.get("/openapi.json").json()["paths"]
    assert {"/sessions", "/sessions/{sid}/predict", "/sessions/{sid}/mask", "/sessions/{sid}/propagate"} <= set(paths)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-xyz", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "])
def test_missing_or_wrong_token_is_401(make_client, header):
    tc = make_client(token=TOKEN)
    headers = {} if header is None else {"Authorization": header}
    for method, url in (("GET", "/capabilities"), ("POST", "/sessions"), ("GET", "/sessions/abc")):
        r = tc.request(method, url, headers=headers)
        assert r.status_code == 401, (method, url)
        assert "bearer token" in _detail(r)
        assert r.headers["www-authenticate"] == "Bearer"
    for public in ("/healthz", "/docs", "/openapi.json"):  # no data there; see test_docs_errors.py
        assert tc.get(public).status_code == 200


def test_right_token_is_accepted(make_client):
    tc = make_client(token=TOKEN)
    assert tc.get("/capabilities", headers={"Authorization": f"Bearer {TOKEN}"}).json()["auth"] is True
    c = Client(http=tc, token=TOKEN)
    assert c.segment(disk(), box=(20, 20, 76, 76)).shape == (96, 96)


def test_short_token_refused():
    from medisam.errors import InputError
    from medisam.serve import ServerSettings

    with pytest.raises(InputError, match="at least 8"):
        ServerSettings(token="abc")


# ------------------------------------------------------------------ uploads
@pytest.mark.parametrize("name,data,match", [
    ("scan.png", b"this is not a png at all", "png"),
    ("scan.nii.gz", b"\x1f\x8b garbage", "nii"),
    ("scan.exe", b"MZ...", "unsupported upload type"),
    ("noextension", b"data", "unsupported upload type"),
    ("empty.png", b"", "empty"),
    ("series.zip", b"PK\x03\x04 broken", "zip"),
])
def test_malformed_upload_is_400(make_client, name, data, match):
    tc = make_client()
    r = _upload(tc, name, data)
    assert r.status_code == 400
    detail = _detail(r)
    assert match in detail.lower()
    assert "/tmp" not in detail and "medisam-serve" not in detail  # no server path leaks
    assert tc.get("/sessions").json()["open"] == 0  # the failed session was discarded


def test_missing_file_field_is_400(make_client):
    r = make_client().post("/sessions", data={"modality": "CT"})
    assert r.status_code == 400 and "file" in _detail(r)


def test_oversized_upload_is_413_by_header_and_by_stream(make_client):
    tc = make_client(max_upload_bytes=10_000)
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8))
    assert len(big) > 100_000
    r = _upload(tc, "big.png", big)
    assert r.status_code == 413 and "limit of" in _detail(r)
    small_enough = png_bytes(np.random.default_rng(0).integers(0, 255, (120, 120), dtype=np.uint8))
    r = _upload(tc, "mid.png", small_enough)  # under the body limit, over the file limit
    assert r.status_code == 413 and "limit of 10000 bytes" in _detail(r)

    boundary = "medisamtestboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = tc.post("/sessions", content=chunks(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "request body is larger" in _detail(r)
    assert tc.get("/sessions").json()["open"] == 0


def test_voxel_limit_is_413(make_client):
    tc = make_client(max_voxels=1000)
    r = _upload(tc, "a.png", png_bytes(disk()))
    assert r.status_code == 413
    detail = _detail(r)
    assert "9216 voxels" in detail and "1000" in detail and "max_voxels" not in detail


def test_too_many_sessions_is_429_until_one_closes(make_client):
    tc = make_client(max_sessions=2)
    ids = [_upload(tc, "a.png", png_bytes(disk())).json()["session_id"] for _ in range(2)]
    r = _upload(tc, "a.png", png_bytes(disk()))
    assert r.status_code == 429 and "2 sessions" in _detail(r)
    assert tc.delete(f"/sessions/{ids[0]}").status_code == 200
    assert _upload(tc, "a.png", png_bytes(disk())).status_code == 201


def test_idle_session_expires_and_its_files_are_deleted(make_client):
    tc = make_client(idle_timeout_s=0.3)
    sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]
    ctx = tc.app.state.medisam
    workdir = ctx.sessions._sessions[sid].workdir
    assert workdir.is_dir() and (workdir.stat().st_mode & 0o777) == 0o700
    assert [p.name for p in workdir.iterdir()] == ["upload.png"]  # server-chosen name
    time.sleep(0.5)
    r = tc.get(f"/sessions/{sid}")
    assert r.status_code == 404 and "expired" in _detail(r)
    assert not workdir.exists()


def test_unknown_session_is_404(make_client):
    tc = make_client()
    for method, url, kw in (("GET", "/sessions/nope", {}), ("DELETE", "/sessions/nope", {}),
                            ("POST", "/sessions/nope/predict", {"json": {"box": [1, 1, 5, 5]}}),
                            ("GET", "/sessions/nope/mask", {}), ("POST", "/sessions/nope/undo", {})):
        r = tc.request(method, url, **kw)
        assert r.status_code == 404, url
        assert "no open session" in _detail(r)


def test_closing_deletes_the_private_folder(make_client):
    tc = make_client()
    sid = _upload(tc, "../../etc/passwd.png", png_bytes(disk())).json()["session_id"]
    workdir = tc.app.state.medisam.sessions._sessions[sid].workdir
    assert workdir.parent == tc.app.state.medisam.sessions.root  # the client's name did not choose a path
    assert tc.delete(f"/sessions/{sid}").json() == {"closed": sid}
    assert not workdir.exists()
    assert tc.get(f"/sessions/{sid}").status_code == 404


# --------------------------------------------------------------------- zips
def test_zip_traversal_absolute_and_symlink_members_are_rejected(make_client, tmp_path):
    tc = make_client()
    for members, links, match in (
        ({"../../evil.dcm": b"x" * 10}, (), "parent-relative"),
        ({"ok/../../evil.dcm": b"x"}, (), "parent-relative"),
        ({"/etc/evil.dcm": b"x"}, (), "absolute"),
        ({"C:/evil.dcm": b"x"}, (), "absolute"),
        ({"link.dcm": b"/etc/passwd"}, ("link.dcm",), "symbolic link"),
    ):
        r = _upload(tc, "series.zip", zip_bytes(members, links))
        assert r.status_code == 400, members
        assert match in _detail(r)
    assert not (tmp_path.parent / "evil.dcm").exists()
    root = tc.app.state.medisam.sessions.root
    assert not any(root.iterdir())  # nothing left behind


def test_zip_bomb_is_413(make_client):
    tc = make_client()
    r = _upload(tc, "series.zip", zip_bytes({"a.dcm": b"\0" * (20 << 20)}))
    assert r.status_code == 413 and "zip bomb" in _detail(r)
    tc2 = make_client(max_zip_bytes=1 << 20)
    r = _upload(tc2, "series.zip", zip_bytes({f"{i}.dcm": os.urandom(300_000) for i in range(4)}))
    assert r.status_code == 413 and "unpacks to" in _detail(r)
    tc3 = make_client(max_zip_members=3)
    r = _upload(tc3, "series.zip", zip_bytes({f"{i}.dcm": b"x" for i in range(4)}))
    assert r.status_code == 413 and "4 files" in _detail(r)


def test_zipped_dicom_series_round_trips_to_dicom_seg(make_client, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("highdicom")
    hu = ct_volume()
    files = write_ct_series(tmp_path / "series", hu)
    payload = zip_bytes({f"study/series/{p.name}": p.read_bytes() for p in files})
    c = Client(http=make_client())
    with c.open_session(payload and _write(tmp_path / "series.zip", payload)) as s:
        assert s.info["format"] == "dicom" and s.info["dicom"] and s.info["shape"] == list(hu.shape)
        assert s.info["spacing"] == pytest.approx([0.8, 0.8, 2.5])
        mask = s.predict(slice=3, box=(10, 10, 38, 38))
        seg = pydicom.dcmread(io.BytesIO(s.download("dcm")))
        assert seg.Modality == "SEG"
        assert mask.any()  # the tiny model segments this box
        assert int(seg.NumberOfFrames) >= 1
        named = pydicom.dcmread(io.BytesIO(s.download("dcm", labels={1: "liver"})))
        item = named.SegmentSequence[0]
        assert item.SegmentLabel == "liver" and item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
        assert list(item.RecommendedDisplayCIELabValue) == [41661, 41167, 40792]
        with pytest.raises(ServerError, match="close matches: liver") as err:
            s.download("dcm", labels={1: "livr"})
        assert err.value.status == 400


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# ----------------------------------------------------------- predictions
def test_predict_points_undo_and_labels(make_client):
    c = Client(http=make_client())
    with c.open_session(disk()) as s:
        first = s.predict(box=(20, 20, 76, 76))
        assert first.shape == (96, 96) and first.dtype == bool
        assert np.array_equal(s.labels() > 0, first)
        second = s.add_points(points=[(48, 48, 1), (5, 5, 0)])
        assert np.array_equal(s.labels() > 0, second)
        assert s.undo() is True
        assert np.array_equal(s.labels() > 0, first)
        assert s.undo() is True and not s.labels().any()
        assert s.undo() is False
        s.predict(box=(20, 20, 76, 76), obj_id=3)
        assert set(np.unique(s.labels())) <= {0, 3}
        assert s.refresh()["object_ids"] in ([3], [])


def test_server_mask_equals_library_segment_image(make_client, tiny_model):
    from medisam.io import MedicalImage
    from medisam.predict import Predictor
    from medisam.predict.segment import segment_image

    img = disk()
    box = (20, 20, 76, 76)
    expected = segment_image(Predictor(tiny_model), MedicalImage.from_array(img), [box]).array > 0
    assert np.array_equal(Client(http=make_client()).segment(img, box=box), expected)


def test_mask_prompt_and_prompt_errors(make_client):
    c = Client(http=make_client())
    with c.open_session(disk()) as s:
        m = np.zeros((96, 96), bool)
        m[30:60, 30:60] = True
        assert s.predict(mask=m).shape == (96, 96)
        for kwargs, status, match in (
            ({"box": (0, 0, 200, 50)}, 400, "outside"),
            ({"box": (50, 50, 10, 10)}, 400, "inverted"),
            ({}, 400, "at least one prompt"),
            ({"points": [(10, 10, 7)]}, 400, "0 (negative) or 1"),
            ({"box": (1, 1, 9, 9), "slice": 2}, 400, "2D image"),
            ({"mask": np.zeros((5, 5), bool)}, 400, "does not match"),
            ({"box": (1, 1, 9, 9), "obj_id": 0}, 400, "obj_id"),
            ({"box": (1, 1, 9, 9), "obj_id": True}, 400, "obj_id"),  # was taken as object 1
        ):
            with pytest.raises(ServerError) as err:
                s.predict(**kwargs)
            assert err.value.status == status and match in err.value.detail, kwargs
        r = c._http.post(f"/sessions/{s.id}/predict",  # NaN read as True: it was the whole image
                         json={"mask": encode_array(np.full((96, 96), np.nan, np.float32))})
        assert r.status_code == 400 and "NaN" in r.json()["detail"]
    r = c._http.post("/sessions/x/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_download_formats_round_trip_2d(make_client, tmp_path):
    from medisam.io import read_image

    c = Client(http=make_client())
    with c.open_session(_write(tmp_path / "in.png", png_bytes(disk()))) as s:
        s.predict(box=(20, 20, 76, 76), obj_id=2)
        labels = s.labels()
        assert labels.max() == 2
        for fmt in ("png", "nii.gz", "nrrd", "mha"):
            path = tmp_path / f"mask.{fmt}"
            s.download(fmt, path)
            back = read_image(path).array
            assert np.array_equal(np.squeeze(back), labels), fmt
        with np.load(io.BytesIO(s.download("npz"))) as npz:  # CVPR24 layout: segs + spacing
            assert np.array_equal(npz["segs"], labels)
        with pytest.raises(ServerError, match="DICOM") as err:
            s.download("dcm")
        assert "/tmp" not in err.value.detail and "medisam-serve" not in err.value.detail
        detail = err.value.detail
        assert "reference=" not in detail and "write the mask as .nii.gz" in detail, detail
        with pytest.raises(ServerError, match="unknown format"):
            s.download("exe")


def test_volume_upload_geometry_propagation_and_nifti_round_trip(make_client, tmp_path):
    from medisam.io import read_image

    vol = ct_volume()
    direction = (0, 1, 0, 1, 0, 0, 0, 0, 1)  # i along y, j along x: a non-trivial orientation
    c = Client(http=make_client())
    with c.open_session(vol, spacing=(0.7, 0.9, 2.0), origin=(10.0, -20.0, 30.0), direction=direction,
                        modality="CT") as s:
        assert s.info["is_volume"] and s.info["shape"] == list(vol.shape) and s.info["modality"] == "CT"
        assert s.info["spacing"] == pytest.approx([0.7, 0.9, 2.0])
        assert s.info["origin"] == pytest.approx([10.0, -20.0, 30.0])
        assert s.info["direction"] == pytest.approx(direction)
        with pytest.raises(ServerError, match="give slice"):
            s.predict(box=(10, 10, 38, 38))
        mask = s.predict(slice=3, box=(10, 10, 38, 38))
        assert mask.shape == vol.shape[1:]
        if not mask.any():
            pytest.skip("tiny random model gave an empty seed mask")
        result = s.propagate()
        labels = s.labels()
        assert labels.shape == vol.shape
        assert result["slices_with_labels"] == int((labels.reshape(len(labels), -1) > 0).any(1).sum())
        assert np.array_equal(labels[3] > 0, mask)
        s.download("nii.gz", tmp_path / "m.nii.gz")
        back = read_image(tmp_path / "m.nii.gz")
        assert np.array_equal(back.array, labels)
        assert back.spacing == pytest.approx((0.7, 0.9, 2.0)) and back.origin == pytest.approx((10.0, -20.0, 30.0))
        assert back.direction == pytest.approx(direction)
        with pytest.raises(ServerError, match="slice=K"):
            s.download("png")
        s.download("png", tmp_path / "s3.png", slice=3)
        assert np.array_equal(read_image(tmp_path / "s3.png").array, labels[3])


def test_propagate_on_2d_image_is_400(make_client):
    c = Client(http=make_client())
    with c.open_session(disk()) as s:
        s.predict(box=(20, 20, 76, 76))
        with pytest.raises(ServerError) as err:
            s.propagate()
        assert err.value.status == 400 and "2D image" in err.value.detail


def test_video_upload_predict_and_track(make_client, tmp_path):
    pytest.importorskip("av")
    from medisam.io.video import write_video

    frames = np.stack([np.repeat(disk(64, center=(24 + 3 * t, 32), radius=12)[..., None], 3, axis=-1)
                       for t in range(5)])
    clip = write_video(frames, tmp_path / "clip.mp4", fps=10)
    c = Client(http=make_client())
    with c.open_session(clip) as s:
        assert s.info["is_video"] and s.info["num_slices"] == 5
        mask = s.predict(slice=2, box=(8, 16, 48, 48))
        assert mask.shape == (64, 64)
        if not mask.any():
            pytest.skip("tiny random model gave an empty mask")
        s.propagate()
        labels = s.labels()
        assert labels.shape == (5, 64, 64) and np.array_equal(labels[2] > 0, mask)
        assert len(s.download("nii.gz")) > 0


@pytest.mark.parametrize("volume", [False, True])
def test_reset_and_remove_object_over_rest_undo_exactly(make_client, volume):
    """``POST /reset`` and ``DELETE /objects/{id}`` (the API had them, REST did not): one undo step
    each, and undo brings the label map back exactly (a volume's propagated slices included)."""
    from serve_data import ct_volume

    c = Client(http=make_client())
    image = ct_volume((6, 48, 48)) if volume else disk()
    with c.open_session(image) as s:
        s.predict(slice=2 if volume else None, box=(12, 12, 36, 36), obj_id=1)
        s.predict(slice=2 if volume else None, box=(30, 30, 46, 46), obj_id=2)
        if volume:
            s.propagate()
        before = s.labels()
        assert set(np.unique(before)) >= {1, 2}
        s.remove_object(1)
        assert not (s.labels() == 1).any() and (s.labels() == 2).any()
        assert s.undo() and np.array_equal(s.labels(), before)
        s.reset()
        assert not s.labels().any()
        assert s.undo() and np.array_equal(s.labels(), before)
        with pytest.raises(ServerError, match="no object 7"):
            s.remove_object(7)
        r = c._http.delete(f"/sessions/{s.id}/objects/x")
        assert r.status_code == 400 and "obj_id" in r.json()["detail"]
