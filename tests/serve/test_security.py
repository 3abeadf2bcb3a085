"""Server security (issue 18): no server file reachable from a request, bounded work, safe defaults."""

from __future__ import annotations

import importlib.util
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


# ------------------------------------------------------------ 3. sizes from headers, bytes per session
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (8-bit grey) with a tiny, truncated image stream."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.fixture()
def decoded_frames(monkeypatch):
    """Names of the frame files the frame-folder reader decoded."""
    import medisam.io.video as video

    seen: list[str] = []
    original = video._decode_frame

    def counting(path, *args):
        seen.append(path.name)
        return original(path, *args)

    monkeypatch.setattr(video, "_decode_frame", counting)
    return seen


def test_frame_zip_is_size_checked_before_any_decode(make_client, decoded_frames):
    tc = make_client(max_voxels=1 << 20)
    small = png_bytes(disk(64))
    r = _upload(tc, "frames.zip", zip_bytes({"f1.png": _png_header_only(18000, 18000), "f2.png": small}))
    assert r.status_code == 413 and "324000000 voxels" in _detail(r).replace(",", "")
    assert decoded_frames == []
    r = _upload(tc, "frames.zip", zip_bytes({"f1.png": small, "f2.png": _png_header_only(9000, 9000)}))
    assert r.status_code == 400 and "differs from the first frame" in _detail(r)
    assert decoded_frames == ["f1.png"]  # the big second frame was never decoded


def test_video_without_a_frame_count_is_size_checked_before_decoding(tmp_path, monkeypatch):
    av = pytest.importorskip("av")
    from medisam.errors import ImageTooLargeError
    from medisam.io import read_image
    from medisam.io.video import write_video

    path = write_video(np.zeros((3, 64, 48, 3), np.uint8), tmp_path / "v.mkv")
    decoded = []
    real_open = av.open

    class Counting:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._c.__exit__(*exc)

        def decode(self, *a, **k):
            for frame in self._c.decode(*a, **k):
                decoded.append(frame)
                yield frame

    monkeypatch.setattr(av, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    with pytest.raises(ImageTooLargeError):
        read_image(path, max_voxels=64 * 48 - 1)  # one frame of one channel (a grey video's) is past it
    assert decoded == []
    assert read_image(path, max_voxels=3 * 64 * 48 * 3).array.shape[:3] == (3, 64, 48)


def test_session_bytes_are_dtype_aware_and_checked_from_the_header(make_client, tmp_path, monkeypatch):
    import medisam.serve.uploads as uploads

    reads = []
    real_read = uploads.read_image
    monkeypatch.setattr(uploads, "read_image", lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    tc = make_client(max_session_bytes=50_000)
    for dtype, expected in ((np.float64, 413), (np.uint8, 201)):  # 8000 voxels: 64 kB as float64 + 24 kB; 8 kB as uint8
        path = tmp_path / f"v-{np.dtype(dtype).name}.nrrd"
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((5, 40, 40), dtype)), str(path))
        r = _upload(tc, path.name, path.read_bytes())
        assert r.status_code == expected, r.text
        if expected == 413:
            assert "needs 88000 bytes" in _detail(r) and "limit of 50000 bytes per session" in _detail(r)
    assert len(reads) == 1  # the float64 volume was refused from its header, never decoded


def test_total_session_bytes_are_capped(make_client):
    tc = make_client(max_total_bytes=70_000)  # one 96x96 uint8 image holds 9216 * 4 = 36864 bytes
    sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]
    r = _upload(tc, "a.png", png_bytes(disk()))
    assert r.status_code == 429 and "36864" in _detail(r)
    assert tc.get("/sessions").json()["open"] == 1
    assert tc.delete(f"/sessions/{sid}").status_code == 200
    assert _upload(tc, "a.png", png_bytes(disk())).status_code == 201


# ------------------------------------------------------------ 4. safe defaults
@pytest.fixture()
def fake_server(monkeypatch):
    """Run ``medisam serve`` in process without a model or a socket; returns the settings it built."""
    import uvicorn

    import medisam.serve as serve_pkg

    built = {}

    def fake_create_app(settings, model=None):
        built["settings"] = settings
        return object()

    monkeypatch.setattr(serve_pkg, "create_app", fake_create_app)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: built.setdefault("config", self.config))
    monkeypatch.delenv("MEDISAM_TOKEN", raising=False)
    return built


def test_serve_generates_a_token_by_default_and_prints_it_once(fake_server, capsys):
    from medisam.cli import main

    assert main(["serve"]) == 0
    out = capsys.readouterr().out
    token = fake_server["settings"].token
    assert token and len(token) >= 24
    assert out.count(f"Bearer {token}") == 1 and "MEDISAM_TOKEN" in out
    config = fake_server["config"]
    assert config.timeout_keep_alive == 5.0 and config.limit_concurrency == 64
    assert main(["serve"]) == 0 and fake_server["settings"].token != token  # fresh each start


def test_serve_takes_the_token_from_the_environment(fake_server, capsys, monkeypatch):
    from medisam.cli import main

    monkeypatch.setenv("MEDISAM_TOKEN", "env-token-123456")
    assert main(["serve"]) == 0
    captured = capsys.readouterr()
    assert fake_server["settings"].token == "env-token-123456"
    assert "env-token-123456" not in captured.out + captured.err and "visible" not in captured.err
    monkeypatch.delenv("MEDISAM_TOKEN")
    assert main(["serve", "--token", "cli-token-123456"]) == 0
    assert "prefer $MEDISAM_TOKEN" in capsys.readouterr().err


def test_serve_without_token_only_on_loopback(fake_server, capsys):
    from medisam.cli import main

    assert main(["serve", "--no-token"]) == 0 and fake_server["settings"].token is None
    assert main(["serve", "--no-token", "--host", "0.0.0.0"]) == 2
    assert "without a token" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0"]) == 0 and fake_server["settings"].token  # generated


@pytest.mark.parametrize("headers,status", [
    ({"Host": "attacker.example"}, 403),  # DNS rebinding: a foreign name resolving to 127.0.0.1
    ({"Host": "attacker.example:8000"}, 403),
    ({"Origin": "http://attacker.example"}, 403),  # a cross-site form post from a browser
    ({"Origin": "null"}, 403),
    ({"Origin": "http://testserver"}, 200),  # same origin (the /docs page)
    ({"Host": "localhost:8000"}, 200),
    ({"Host": "127.0.0.1"}, 200),
    ({"Host": "[::1]:8000"}, 200),
])
def test_host_allowlist_and_foreign_origin(make_client, headers, status):
    tc = make_client()
    r = tc.post("/sessions", files={"file": ("a.png", png_bytes(disk()), "image/png")}, headers=headers)
    assert r.status_code == (201 if status == 200 else status), r.text
    if status == 403:
        assert "not allowed" in _detail(r) or "cross-origin" in _detail(r)


def test_allowed_origin_and_wildcard_bind(make_client):
    tc = make_client(allowed_origins=("https://viewer.example.org",))
    assert tc.get("/capabilities", headers={"Origin": "https://viewer.example.org"}).status_code == 200
    assert tc.get("/capabilities", headers={"Origin": "https://other.example.org"}).status_code == 403
    wide = make_client(host="0.0.0.0", allowed_hosts=())
    assert wide.get("/capabilities", headers={"Host": "scanner-room-3"}).status_code == 200


def test_app_off_loopback_requires_a_login(monkeypatch, capsys):
    import medisam.app as app_pkg
    import medisam.models as models
    from medisam.cli import main

    pytest.importorskip("gradio")
    launched = {}

    class FakeUI:
        def queue(self):
            return self

        def launch(self, **kw):
            launched.update(kw)

    monkeypatch.setattr(app_pkg, "build_ui", lambda *a, **k: FakeUI())
    monkeypatch.setattr(models, "load_model", lambda *a, **k: None)
    monkeypatch.delenv("MEDISAM_TOKEN", raising=False)
    assert main(["app"]) == 0 and launched["auth"] is None
    assert main(["app", "--host", "0.0.0.0"]) == 0
    user, password = launched["auth"]
    assert user == "medisam" and len(password) >= 24 and password in capsys.readouterr().out
    monkeypatch.setenv("MEDISAM_TOKEN", "app-token-123456")
    assert main(["app", "--host", "0.0.0.0"]) == 0 and launched["auth"] == ("medisam", "app-token-123456")
    assert "app-token-123456" not in capsys.readouterr().out


# ------------------------------------------------------------ 6. leftovers
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_server_killed_with_sigkill_leaves_a_root_the_next_start_sweeps(make_client, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    code = ("import os, signal\n"
            "from medisam.serve.sessions import SessionRegistry\n"
            "reg = SessionRegistry(2, 60)\n"
            "(reg.reserve('x.dcm').workdir / 'patient.dcm').write_bytes(b'PHI')\n"
            "print(reg.root, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9
    killed_root = tmp_path / os.path.basename(proc.stdout.strip())
    assert killed_root.is_dir() and any(killed_root.rglob("patient.dcm"))
    alive = tmp_path / f"medisam-serve-{os.getpid()}-live"  # a running server's root is kept
    alive.mkdir()
    legacy_old, legacy_new = tmp_path / "medisam-serve-abc123", tmp_path / "medisam-serve-def456"
    legacy_old.mkdir(), legacy_new.mkdir()
    os.utime(legacy_old, (0, 0))
    dead = tmp_path / f"medisam-serve-{_dead_pid()}-zzz"
    dead.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tc = make_client()
    root = tc.app.state.medisam.sessions.root
    assert root.name.startswith(f"medisam-serve-{os.getpid()}-")
    assert not killed_root.exists() and not dead.exists() and not legacy_old.exists()
    assert alive.is_dir() and legacy_new.is_dir()


def test_unused_zip_members_are_deleted_after_reading(make_client, tmp_path):
    pytest.importorskip("pydicom")
    from serve_data import write_ct_series

    files = write_ct_series(tmp_path / "series", ct_volume())
    members = {f"s/{p.name}": p.read_bytes() for p in files}
    members["s/junk.bin"] = np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8).tobytes()
    tc = make_client()
    r = _upload(tc, "series.zip", zip_bytes(members))
    assert r.status_code == 201, r.text
    workdir = tc.app.state.medisam.sessions._sessions[r.json()["session_id"]].workdir
    left = sorted(p.name for p in workdir.rglob("*") if p.is_file())
    assert len(left) == len(files) and "junk.bin" not in left  # the series stays for DICOM-SEG
    if importlib.util.find_spec("highdicom"):  # DICOM-SEG still finds its source instances
        sid = r.json()["session_id"]
        assert tc.post(f"/sessions/{sid}/predict", json={"slice": 3, "box": [14, 14, 34, 34]}).status_code == 200
        assert tc.get(f"/sessions/{sid}/mask", params={"format": "dcm"}).status_code == 200
    header, raw = _mhd_pair(tmp_path)
    r = _upload(tc, "scan.zip", zip_bytes({"scan.mhd": header, "scan.raw": raw, "notes.txt": b"x" * 1000}))
    workdir = tc.app.state.medisam.sessions._sessions[r.json()["session_id"]].workdir
    assert [p for p in workdir.rglob("*") if p.is_file()] == []  # read into memory: nothing kept


def test_stale_writer_temp_folders_are_swept_beside_outputs(tmp_path):
    import os

    from medisam.io import MedicalImage, write_mask

    old, fresh = tmp_path / ".medisam-tmp-killed", tmp_path / ".medisam-tmp-running"
    old.mkdir(), fresh.mkdir()
    os.utime(old, (0, 0))
    write_mask(MedicalImage.from_array(np.zeros((8, 8), np.uint8)), tmp_path / "mask.png")
    assert not old.exists() and fresh.exists() and (tmp_path / "mask.png").exists()


# ------------------------------------------------------------ 7. small holes
@pytest.mark.parametrize("shape", [[2**70, 2], [96, 2**70], [2**40, 2**40], [96, 96, 1], [0, 96]])
def test_absurd_mask_prompt_shape_is_400(make_client, shape):
    tc = make_client()
    sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]
    mask = {"shape": shape, "dtype": "uint8", "data": ""}
    r = tc.post(f"/sessions/{sid}/predict", json={"mask": mask})
    assert r.status_code == 400, r.text
    assert "mask" in _detail(r)


def test_request_racing_a_delete_is_404_not_500(make_client, monkeypatch):
    import medisam.serve.routes as routes

    tc = make_client()
    real = routes._session

    def racing(request, sid):  # the DELETE lands between the lookup and the lock
        session = real(request, sid)
        tc.app.state.medisam.sessions.close(sid)
        return session

    monkeypatch.setattr(routes, "_session", racing)
    for method, route, kw in (("POST", "predict", {"json": {"box": [20, 20, 70, 70]}}), ("POST", "undo", {}),
                              ("GET", "mask", {}), ("POST", "propagate", {"json": {}})):
        sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]
        url = f"/sessions/{sid}/{route}"
        r = tc.request(method, url, **kw)
        assert r.status_code == 404, (url, r.text)
        assert "was closed" in _detail(r)


@pytest.mark.parametrize("window", ["nan,40", "400,nan", "inf,40", "0,40", "-400,40"])
def test_non_finite_or_empty_window_is_400(make_client, window):
    tc = make_client()
    r = _upload(tc, "a.png", png_bytes(disk()), window=window)
    assert r.status_code == 400 and "finite WIDTH > 0" in _detail(r)
    sid = _upload(tc, "a.png", png_bytes(disk())).json()["session_id"]
    r = tc.post(f"/sessions/{sid}/window", json={"window": window})
    assert r.status_code == 400 and "finite WIDTH > 0" in _detail(r)


def test_empty_or_code_carrying_checkpoint_gives_one_line(tmp_path):
    import collections

    import torch

    from medisam.errors import ModelError, first_line
    from medisam.models.checkpoint import read_checkpoint

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty \(0 bytes\)") as err:
        read_checkpoint(empty)
    assert "\n" not in str(err.value)
    pickled = tmp_path / "objects.pt"
    torch.save({"model": collections.OrderedDict(), "extra": _Opaque()}, pickled)
    with pytest.raises(ModelError) as err:
        read_checkpoint(pickled)
    msg = str(err.value)
    assert "\n" not in msg and "weights_only" not in msg and "False" not in msg and "weights only" in msg
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(pickled.read_bytes()[:40])
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        read_checkpoint(truncated)
    assert first_line(EOFError()) == "EOFError" and first_line(ValueError("\n\n second\nthird")) == "second"


class _Opaque:
    """A class torch's weights-only unpickler refuses."""


def test_web_ui_upload_cannot_name_a_server_file(tmp_path, tiny_model):
    from medisam.app.state import AppState
    from medisam.errors import InputError

    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(4 * 6 * 6 * 2))
    upload_dir = tmp_path / "gradio-upload"
    upload_dir.mkdir()
    header, _ = _mhd_pair(tmp_path, str(secret))
    (upload_dir / "scan.mhd").write_bytes(header)
    with pytest.raises(InputError, match="outside the upload"):
        AppState(tiny_model).open(upload_dir / "scan.mhd")
