"""Every bad-input class as one runnable case: (layer, input, what medisam answers, code).

The same list drives ``tests/io/test_bad_input.py`` (each case must give its expected
message and code, in one line, without a traceback) and ``python -m tests.io.bad_input_table``
(which runs the cases and writes the table in ``docs/bad-input.md``), so the table is the
tests' own output.

Layers: ``cli`` runs ``medisam`` in process (code = exit code, message = its ``error:``
line, or ``warning`` line for an accepted input); ``api`` calls the library (code = the
exception class, or ``ok``); ``server`` talks HTTP to ``create_app`` on the tiny model
(code = HTTP status).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tests.dicom_factory import (anonymise, compress_series, damage_slice, write_ct_series, write_enhanced_ct,
                                 write_legacy_multiframe)
from tests.serve.serve_data import zip_bytes


@dataclass(frozen=True)
class Outcome:
    message: str
    code: int | str


@dataclass(frozen=True)
class Case:
    layer: str
    input: str
    run: Callable[[Path], Outcome]
    expect: str  # a substring the message must contain
    code: int | str


# ------------------------------------------------------------------- helpers
def _hu(shape=(6, 8, 10)) -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)


def _series(tmp: Path, damage: str | None = None, k: int = 3) -> Path:
    _, files = write_ct_series(tmp / "ct", _hu())
    if damage:
        damage_slice(files, k, damage)
    return tmp / "ct"


def cli(args: list[str]) -> Outcome:
    """Run ``medisam ARGS``; the message is the ``error:`` line, else the first ``warning`` line."""
    from medisam.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    lines = [ln.strip() for ln in (err.getvalue() + out.getvalue()).splitlines()]
    if "Traceback" in err.getvalue():
        return Outcome("TRACEBACK: " + err.getvalue().strip().splitlines()[-1], code)
    pick = [ln for ln in lines if ln.startswith("error:")] or [ln for ln in lines if ln.startswith("warning")]
    return Outcome(" ".join((pick[0] if pick else (lines[-1] if lines else "")).split()), code)


def api(fn: Callable[[], object]) -> Outcome:
    """Call ``fn``; a MedisamError becomes (message, class name); success gives its summary and ``ok``."""
    from medisam.errors import MedisamError

    try:
        result = fn()
    except MedisamError as exc:
        return Outcome(str(exc), type(exc).__name__)
    return Outcome(str(result), "ok")


def _segment(folder: Path, tmp: Path, *extra: str) -> Outcome:
    return cli(["segment", folder, "--slice", "1", "--box", "1,1,8,6", "-o", tmp / "mask.nii.gz",
                "--model", "litemedsam-tiny", "--device", "cpu", *extra])


def _legacy_multiframe(tmp: Path) -> Path:
    """A legacy multi-frame CT file with frame 1's position and SliceThickness, no slice spacing."""
    return write_legacy_multiframe(tmp / "mf.dcm", _hu(), ImagePositionPatient=[0, 0, 50],
                                   ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.8, 0.75],
                                   SliceThickness=2.5)


def _bad_frame_count(tmp: Path) -> Path:
    """A legacy multi-frame CT file whose NumberOfFrames is not a number (as pydicom's badVR.dcm)."""
    path = _legacy_multiframe(tmp)
    data = path.read_bytes()  # pydicom refuses to set the value: edit the element's bytes (IS, 2 bytes: "6 ")
    element = b"\x28\x00\x08\x00IS\x02\x006 "
    assert data.count(element) == 1
    path.write_bytes(data.replace(element, element[:-2] + b"1A"))
    return path


def _dynamic(tmp: Path) -> Path:
    """An Enhanced CT file with 3 positions at 2 temporal positions (TemporalPositionIndex in its dimension index)."""
    groups = [{"FrameContentSequence": {"TemporalPositionIndex": f // 3 + 1}} for f in range(6)]
    return write_enhanced_ct(tmp / "dynamic.dcm", _hu(), [(0.0, 0.0, 50.0 + 2.5 * (f % 3)) for f in range(6)],
                             frame_groups=groups, dimension_index=("TemporalPositionIndex",))


def _compressed(tmp: Path, syntax: str) -> Outcome:
    from medisam.io import read_image

    hu = _hu((4, 16, 20))
    _, files = write_ct_series(tmp / "ct", hu)
    compress_series(files, syntax)
    img = read_image(tmp / "ct")
    same = np.array_equal(img.array, hu)
    return Outcome(f"read {img.array.shape[0]} slices; voxels {'equal' if same else 'DIFFER FROM'} "
                   "the uncompressed series", "ok" if same else "wrong")


def _corrupt_j2k(tmp: Path) -> Outcome:
    import pydicom
    from pydicom.encaps import encapsulate

    _, files = write_ct_series(tmp / "ct", _hu((4, 16, 20)))
    compress_series(files, "j2k")
    ds = pydicom.dcmread(files[2])
    ds.PixelData = encapsulate([os.urandom(300)])
    ds.save_as(files[2])
    return cli(["info", tmp / "ct"])


def _nifti(tmp: Path, sform_only: bool) -> Path:
    import nibabel as nib

    shear = np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), shear)
    if sform_only:
        img.set_sform(shear, code=1)
        img.set_qform(np.eye(4), code=1)
    path = tmp / ("sform_sheared.nii.gz" if sform_only else "sheared.nii.gz")
    nib.save(img, str(path))
    return path


def _png_bomb(tmp: Path) -> Outcome:
    from PIL import Image

    path = tmp / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 Mpx of zeros: about 50 KB on disk
    return cli(["info", path])


def _anon_seg(tmp: Path, keyword: str, file_meta: bool = False) -> Outcome:
    from medisam.io import read_image, write_mask

    _, files = write_ct_series(tmp / "ct", _hu())
    anonymise(files, blank=(keyword,), file_meta=file_meta)
    img = read_image(tmp / "ct")
    return api(lambda: write_mask(np.ones(img.spatial_shape, np.uint8), tmp / "mask.dcm", reference=img))


# -------------------------------------------------------------------- server
@functools.lru_cache(maxsize=1)
def _model():
    from medisam.models import load_model

    return load_model("litemedsam-tiny", device="cpu")


def _app():
    """A fresh app each time (its lifespan deletes the session root when it ends)."""
    from medisam.serve import ServerSettings, create_app

    return create_app(ServerSettings(model="litemedsam-tiny", device="cpu", token="bad-input-token",
                                     allowed_hosts=("testserver",)), model=_model())


def upload(name: str, payload: bytes) -> Outcome:
    """POST /sessions through the app (in process); message = the JSON detail."""
    from fastapi.testclient import TestClient

    with TestClient(_app()) as tc:
        r = tc.post("/sessions", files={"file": (name, payload)}, headers={"Authorization": "Bearer bad-input-token"})
        left = tc.app.state.medisam.sessions
        detail = r.json().get("detail", "") if r.status_code >= 400 else f"session opened ({len(left)} open)"
        if r.status_code < 400:
            tc.delete(f"/sessions/{r.json()['session_id']}", headers={"Authorization": "Bearer bad-input-token"})
    return Outcome(detail, r.status_code)


def _raw_upload(body_parts: list[bytes], declared: int, pause: float) -> tuple[int | None, float]:
    """Send a multipart POST over a socket in parts with pauses; returns (HTTP status or None, seconds)."""
    from medisam.serve.background import BackgroundServer

    boundary = "medisamboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"img.npz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    app = _app()
    with BackgroundServer(app) as url:
        host, port = url.rsplit(":", 1)
        t0 = time.monotonic()
        with socket.create_connection((host.split("//")[1], int(port)), timeout=30) as s:
            s.sendall((f"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bad-input-token\r\n"
                       f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                       f"Content-Length: {declared + len(head)}\r\nConnection: close\r\n\r\n").encode() + head)
            for part in body_parts:
                time.sleep(pause)
                s.sendall(part)
            if sum(map(len, body_parts)) < declared:
                s.shutdown(socket.SHUT_WR)  # the client gives up: the rest of the body never comes
            data = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    data += chunk
        seconds = time.monotonic() - t0
        status = int(data.split()[1]) if data.startswith(b"HTTP/") else None
        if status == 201:  # close the session the upload opened
            import json

            import httpx

            sid = json.loads(data.split(b"\r\n\r\n", 1)[1])["session_id"]
            httpx.delete(f"{url}/sessions/{sid}", headers={"Authorization": "Bearer bad-input-token"})
        sessions = app.state.medisam.sessions
        leftovers = len(sessions), sum(1 for _ in sessions.root.iterdir())
    if leftovers != (0, 0):
        raise AssertionError(f"upload left {leftovers[0]} sessions and {leftovers[1]} folders behind")
    return status, seconds


def _npz_payload() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, imgs=np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    return buf.getvalue()


def _partial_upload(tmp: Path) -> Outcome:
    payload = _npz_payload()
    status, _ = _raw_upload([payload[:1000]], declared=len(payload) + 100, pause=0.0)
    return Outcome(f"answer {status or 'none'}; no session and no upload folder left behind", status or "closed")


def _slow_upload(tmp: Path) -> Outcome:
    payload = _npz_payload() + b"\r\n--medisamboundary--\r\n"
    parts = [payload[i:i + len(payload) // 8 + 1] for i in range(0, len(payload), len(payload) // 8 + 1)]
    status, seconds = _raw_upload(parts, declared=len(payload), pause=0.4)
    return Outcome(f"accepted after {seconds:.1f} s: the server sets no time limit on a request body",
                   status or "closed")


# ---------------------------------------------------------------------- cases
CASES: list[Case] = [
    Case("cli", "DICOM folder, one slice file is random bytes (`medisam info`)",
         lambda t: cli(["info", _series(t, "garbage")]), "not a readable DICOM file", 0),
    Case("cli", "DICOM folder, one slice with truncated pixel data (`medisam segment`)",
         lambda t: _segment(_series(t, "truncate"), t), "pixel data truncated", 2),
    Case("cli", "DICOM folder, one slice file deleted (`medisam segment ... --allow-gaps`)",
         lambda t: _segment(_series(t, "delete"), t, "--allow-gaps"), "gap in slice positions", 0),
    Case("cli", "DICOM folder, two files at the same position (`medisam info`)",
         lambda t: cli(["info", _series(t, "duplicate")]), "at the same slice position", 2),
    Case("cli", "DICOM folder, one slice without ImagePositionPatient (`medisam segment`)",
         lambda t: _segment(_series(t, "no-position"), t), "no ImagePositionPatient", 2),
    Case("cli", "DICOM folder, one slice with another orientation (`medisam info`)",
         lambda t: cli(["info", _series(t, "tilt")]), "mixes slice orientations", 2),
    Case("cli", "DICOM folder, uneven slice positions (`medisam info`)",
         lambda t: cli(["info", _series(t, "shift", k=5)]), "uneven slice spacing", 0),
    Case("cli", "legacy multi-frame DICOM file without a slice spacing (`medisam segment`)",
         lambda t: _segment(_legacy_multiframe(t), t), "is assumed, not known", 2),
    Case("cli", "DICOM file whose NumberOfFrames is `1A` (`medisam info`)",
         lambda t: cli(["info", _bad_frame_count(t)]), "its NumberOfFrames is '1A', not a whole number", 2),
    Case("cli", "enhanced multi-frame DICOM file, 2 time points per position (`medisam info`)",
         lambda t: cli(["info", _dynamic(t)]), "a 4D file (2 temporal positions", 2),
    Case("api", "DICOM series, RLE Lossless", lambda t: _compressed(t, "rle"), "voxels equal", "ok"),
    Case("api", "DICOM series, JPEG-LS Lossless", lambda t: _compressed(t, "jpegls"), "voxels equal", "ok"),
    Case("api", "DICOM series, JPEG 2000 Lossless", lambda t: _compressed(t, "j2k"), "voxels equal", "ok"),
    Case("api", "DICOM series, HTJ2K Lossless label", lambda t: _compressed(t, "htj2k"), "voxels equal", "ok"),
    Case("cli", "DICOM series, one JPEG 2000 frame corrupt (`medisam info`)",
         _corrupt_j2k, "JPEG 2000 Image Compression", 2),
    Case("api", "DICOM-SEG from a series with empty SOP Class UID (file meta keeps it)",
         lambda t: _anon_seg(t, "SOPClassUID"), "mask.dcm", "ok"),
    Case("api", "DICOM-SEG from a series with empty SOP Class UID, file meta blanked too",
         lambda t: _anon_seg(t, "SOPClassUID", file_meta=True), "has no SOPClassUID", "InputError"),
    Case("api", "DICOM-SEG from a series with empty Frame of Reference UID",
         lambda t: _anon_seg(t, "FrameOfReferenceUID"), "has no FrameOfReferenceUID", "InputError"),
    Case("cli", "NIfTI with a sheared affine (sform and qform) (`medisam info`)",
         lambda t: cli(["info", _nifti(t, sform_only=False)]), "affine is sheared", 2),
    Case("cli", "NIfTI with a sheared sform and an orthogonal qform (`medisam info`)",
         lambda t: cli(["info", _nifti(t, sform_only=True)]), "sform is sheared", 0),
    Case("cli", "PNG decompression bomb, 20000 x 20000 (`medisam info`)", _png_bomb, "more than the limit", 2),
    Case("server", "zip upload, member `../../evil.dcm`",
         lambda t: upload("s.zip", zip_bytes({"../../evil.dcm": b"x"})), "parent-relative", 400),
    Case("server", "zip upload, member `/etc/evil.dcm`",
         lambda t: upload("s.zip", zip_bytes({"/etc/evil.dcm": b"x"})), "absolute", 400),
    Case("server", "zip upload, symbolic link member",
         lambda t: upload("s.zip", zip_bytes({"link.dcm": b"/etc/passwd"}, ("link.dcm",))), "symbolic link", 400),
    Case("server", "zip bomb (20 MiB of zeros in one member)",
         lambda t: upload("s.zip", zip_bytes({"a.dcm": b"\0" * (20 << 20)})), "zip bomb", 413),
    Case("server", "partial upload: client stops after 1 KB of the declared body", _partial_upload,
         "no session", "closed"),
    Case("server", "slow upload: 8 parts, 0.4 s apart", _slow_upload, "accepted", 201),
]
