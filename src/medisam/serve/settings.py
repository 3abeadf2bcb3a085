"""Server configuration: one frozen dataclass, built from CLI options or by tests."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medisam.errors import InputError

#: Longest token: it must fit a request head (``background.MAX_HEAD_BYTES``, 64 KiB) with room to spare.
MAX_TOKEN_CHARS = 4096
#: A token is visible ASCII: what every HTTP client can put in an ``Authorization`` header (a space,
#: a tab, a line break or a non-ASCII letter cannot be sent, or is trimmed, so no request would match).
TOKEN_CHARS = re.compile(r"[!-~]+")


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``create_app`` needs; the defaults are safe for a workstation.

    Attributes:
        host, port: where ``medisam serve`` listens (loopback by default).
        token: when set, every request but ``GET /healthz`` needs ``Authorization: Bearer <token>``
            (``medisam serve`` generates one when none is given).
        allowed_hosts: Host header names answered besides loopback names and ``host``
            (403 otherwise; a wildcard ``host`` with none listed answers any name).
        allowed_origins: browser origins (``https://app.example.org``) allowed to call the
            API; requests carrying any other ``Origin`` but the server's own get 403.
        model, checkpoint, device: the model loaded once and shared by all sessions.
        max_upload_bytes: largest request body accepted on ``POST /sessions`` (413 above).
        max_voxels: largest image (voxels x channels) a session may hold (413 above).
        max_sessions: open sessions at once (429 above).
        idle_timeout_s: a session unused this long is closed and its files deleted.
        session_cache_bytes: size of each session's own embedding cache (about 4 MiB per
            encoded LiteMedSAM/SAM slice; older slices are evicted first).
        max_zip_members, max_zip_bytes, max_zip_ratio: limits on zipped DICOM uploads
            (member count, total uncompressed bytes, per-member compression ratio).
        max_session_bytes: memory one session's image may hold (pixels at their dtype +
            3 bytes per voxel for labels and display, + a SAM 2 model's resized copy of every
            slice, input size squared per slice and channel; 413 above, checked from the header
            for NIfTI/NRRD/MetaImage).
        max_total_bytes: memory all sessions' images may hold together (429 above).
        max_json_bytes: largest body of every other request (JSON prompts; 413 above).
        max_points_per_request, max_points_per_object: clicks in one request, and kept for
            one object on one slice (400 above); decoder memory grows about quadratically
            with the number of points.
        header_timeout_s: a connection must send a complete request head this soon
            (after it opens, or after the previous response); else it is closed.
        body_timeout_s: longest wait for the next chunk of a request body (408 after).
        keep_alive_s: idle keep-alive connections are closed after this.
        max_connections: connections plus running requests at once (uvicorn's
            ``limit_concurrency``; 503 above).
        request_timeout_s: longest propagation; it stops between slices (results so far
            are kept; 503). Propagation also stops when the client disconnects.
        inference_slots: model calls (predict/correct/propagate) running at once across
            all sessions; the rest wait. Bounds memory (one encoder activation set per slot);
            on the 2-core test machine 4 slots gave about 1.5x the throughput of 1 slot
            (benchmarks/load_test.py), so serialising does not pay on CPU.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    model: str = "litemedsam"
    checkpoint: str | None = None
    device: str = "auto"
    max_upload_bytes: int = 1 << 30
    max_voxels: int = 1 << 27
    max_sessions: int = 8
    idle_timeout_s: float = 1800.0
    session_cache_bytes: int = 512 << 20
    max_zip_members: int = 5000
    max_zip_bytes: int = 2 << 30
    max_zip_ratio: float = 200.0
    inference_slots: int = 4
    max_json_bytes: int = 1 << 20
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_connections: int = 64
    request_timeout_s: float = 600.0
    max_session_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30
    max_points_per_request: int = 64
    max_points_per_object: int = 256

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token)
        for name in ("inference_slots", "max_upload_bytes", "max_voxels", "max_sessions", "max_zip_members",
                     "max_zip_bytes", "max_json_bytes", "max_connections", "max_session_bytes", "max_total_bytes",
                     "max_points_per_request", "max_points_per_object"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive")
        for name in ("idle_timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive")


def check_token(token: str) -> None:
    """InputError unless ``token`` can be sent in an ``Authorization: Bearer`` header and is not trivially short."""
    if len(token) < 8:
        raise InputError("token must be at least 8 characters")
    if len(token) > MAX_TOKEN_CHARS:
        raise InputError(f"token must be at most {MAX_TOKEN_CHARS} characters, got {len(token)}")
    if not TOKEN_CHARS.fullmatch(token):
        bad = next(c for c in token if not TOKEN_CHARS.fullmatch(c))
        raise InputError(f"token must be visible ASCII characters (no spaces, line breaks or accents), got {bad!r}: "
                         "clients cannot send it in an Authorization header")
