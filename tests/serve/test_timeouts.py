"""Issue 18, item 5: slow clients are cut off, propagation stops when the client leaves or time runs out."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import SimpleITK as sitk
from serve_data import TOKEN, ct_volume

from medisam.serve.interactive import InteractiveSession


@pytest.fixture()
def live(tiny_model):
    """``live(**settings) -> url`` of a loopback uvicorn server with the hardened config."""
    from medisam.serve import ServerSettings, create_app
    from medisam.serve.background import BackgroundServer

    servers = []

    def start(**overrides):
        settings = ServerSettings(model="litemedsam-tiny", device="cpu", token=TOKEN, **overrides)
        bg = BackgroundServer(create_app(settings, model=tiny_model))
        url = bg.__enter__()
        servers.append(bg)
        return url

    yield start
    for bg in servers:
        bg.__exit__(None, None, None)


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(the server closed the connection within ``seconds``, what it sent first)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
        return True, got
    except (socket.timeout, TimeoutError):
        return False, got
    except ConnectionResetError:
        return True, got


def test_partial_request_head_is_cut_off(live):
    url = live(header_timeout_s=0.5)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the rest
        closed, _ = _closed_within(s, 5.0)
    assert closed
    with socket.create_connection((host, int(port))) as s:  # idle after connecting: the same
        closed, _ = _closed_within(s, 5.0)
    assert closed


def test_stalled_body_gets_408(live):
    url = live(body_timeout_s=0.5)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n".encode())
        s.settimeout(5.0)
        got = b""
        while b"stalled" not in got and (chunk := s.recv(4096)):
            got += chunk
    assert got.startswith(b"HTTP/1.1 408") and b"stalled" in got, got[:200]


@pytest.fixture()
def slow_propagation(monkeypatch):
    """Each propagated slice takes 0.1 s more; returns the list of slices done."""
    done: list[int] = []
    original = InteractiveSession.iter_propagate

    def slow(self, direction="both"):
        for res in original(self, direction):
            time.sleep(0.1)
            done.append(res.slice)
            yield res

    monkeypatch.setattr(InteractiveSession, "iter_propagate", slow)
    return done


def _prompted_volume(url: str, tmp_path, slices: int = 40) -> str:
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume((slices, 48, 48))), str(path))
    h = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{url}/sessions", files={"file": ("ct.nii.gz", path.read_bytes())}, headers=h, timeout=60)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    r = httpx.post(f"{url}/sessions/{sid}/predict", json={"slice": slices // 2, "box": [14, 14, 34, 34]},
                   headers=h, timeout=60)
    assert r.status_code == 200, r.text
    return sid


def test_propagation_stops_when_the_client_disconnects(live, tmp_path, slow_propagation):
    url = live()
    sid = _prompted_volume(url, tmp_path)
    h = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.6 s and closes the connection
        httpx.post(f"{url}/sessions/{sid}/propagate", json={}, headers=h, timeout=0.6)
    t0 = time.monotonic()
    assert httpx.get(f"{url}/sessions/{sid}", headers=h, timeout=30).status_code == 200  # waits for the lock
    assert time.monotonic() - t0 < 5.0  # released after the slice in progress, not after all 40
    stopped_at = len(slow_propagation)
    time.sleep(1.0)
    assert len(slow_propagation) == stopped_at < 20  # 40 planned
    assert httpx.post(f"{url}/sessions/{sid}/undo", headers=h, timeout=30).status_code == 200


def test_propagation_has_a_server_time_limit(make_client, tmp_path, slow_propagation):
    tc = make_client(request_timeout_s=0.35)
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume((30, 48, 48))), str(path))
    sid = tc.post("/sessions", files={"file": ("ct.nii.gz", path.read_bytes())}).json()["session_id"]
    assert tc.post(f"/sessions/{sid}/predict", json={"slice": 15, "box": [14, 14, 34, 34]}).status_code == 200
    r = tc.post(f"/sessions/{sid}/propagate", json={})
    assert r.status_code == 503 and "time limit of 0.35 s" in r.json()["detail"]
    assert len(slow_propagation) < 10
    assert tc.get(f"/sessions/{sid}").status_code == 200
    labels = tc.get(f"/sessions/{sid}/labels").json()
    assert labels["shape"] == [30, 48, 48]
