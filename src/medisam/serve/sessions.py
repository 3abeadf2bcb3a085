"""The server's session registry: bounded count, idle expiry, one lock and one folder per session.

Each :class:`ServerSession` owns a private temporary folder (mode 0700) holding the
upload (and, for DICOM, the files DICOM-SEG output refers to); the folder is deleted
when the session is closed or expires. Session ids are random (``secrets``), so one
client cannot guess another's.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from medisam.errors import MedisamError
from medisam.memory import release_memory
from medisam.serve.interactive import InteractiveSession

log = logging.getLogger(__name__)


class TooManySessions(MedisamError):
    """The server holds its maximum number of sessions (HTTP 429)."""


class SessionNotFound(MedisamError):
    """No open session has this id (HTTP 404)."""


@dataclass
class ServerSession:
    """One client's image, interactive state, lock and private folder."""

    id: str
    workdir: Path
    filename: str
    state: InteractiveSession | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.state = None
        release_memory()  # the session's arrays and embeddings are freed: give the pages back


class SessionRegistry:
    """Thread-safe map id -> session with a size limit and idle expiry."""

    def __init__(self, max_sessions: int, idle_timeout_s: float, clock=time.monotonic):  # noqa: ANN001
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._sessions: dict[str, ServerSession] = {}
        self._lock = threading.Lock()
        self.root = Path(tempfile.mkdtemp(prefix="medisam-serve-"))
        self.root.chmod(0o700)

    def reserve(self, filename: str) -> ServerSession:
        """Create an empty session with its private folder, or raise TooManySessions."""
        self.expire_idle()
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                raise TooManySessions(f"the server already holds {self.max_sessions} sessions; "
                                      "close one (DELETE /sessions/{id}) or wait for idle ones to expire")
            sid = secrets.token_urlsafe(16)
            workdir = Path(tempfile.mkdtemp(prefix="s-", dir=self.root))
            workdir.chmod(0o700)
            session = ServerSession(sid, workdir, filename)
            session.last_used = self._clock()
            self._sessions[sid] = session
        return session

    def get(self, sid: str) -> ServerSession:
        """The open session ``sid`` (marks it used), or SessionNotFound."""
        self.expire_idle()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None or session.state is None:
                raise SessionNotFound(f"no open session {sid!r} (closed, expired or never created)")
            session.last_used = self._clock()
            return session

    def close(self, sid: str) -> None:
        """Close a session and delete its files (waits for a request that holds its lock)."""
        with self._lock:
            session = self._sessions.pop(sid, None)
        if session is None:
            raise SessionNotFound(f"no open session {sid!r} (closed, expired or never created)")
        with session.lock:
            session.cleanup()

    def discard(self, session: ServerSession) -> None:
        """Drop a session whose creation failed."""
        with self._lock:
            self._sessions.pop(session.id, None)
        session.cleanup()

    def expire_idle(self) -> int:
        """Close sessions idle longer than the timeout (skipping busy ones); returns how many."""
        now = self._clock()
        with self._lock:
            stale = [s for s in self._sessions.values()
                     if now - s.last_used > self.idle_timeout_s and not s.lock.locked()]
            for s in stale:
                del self._sessions[s.id]
        for s in stale:
            with s.lock:
                s.cleanup()
            log.info("session %s expired after %.0f s idle", s.id[:6], self.idle_timeout_s)
        return len(stale)

    def __len__(self) -> int:
        return len(self._sessions)

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)
