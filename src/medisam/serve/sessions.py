"""The server's session registry: bounded count, idle expiry, one lock and one folder per session.

Each :class:`ServerSession` owns a private temporary folder (mode 0700) holding the
upload (and, for DICOM, the files DICOM-SEG output refers to); the folder is deleted
when the session is closed or expires. Session ids are random (``secrets``), so one
client cannot guess another's.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from medisam.errors import MedisamError
from medisam.io.atomic import sweep_owned_dirs
from medisam.memory import release_memory
from medisam.serve.interactive import InteractiveSession

log = logging.getLogger(__name__)

#: Prefix of a server's private temporary root; the owning process id follows.
ROOT_PREFIX = "medisam-serve-"
#: Roots of the older form (no pid in the name) untouched this long are swept (seconds).
LEGACY_ROOT_AGE_S = 24 * 3600.0


class TooManySessions(MedisamError):
    """The server holds its maximum number of sessions (HTTP 429)."""


class ServerFull(TooManySessions):
    """The open sessions already hold the server's total image memory (HTTP 429)."""


class SessionNotFound(MedisamError):
    """No open session has this id (HTTP 404)."""


class WorkTimeout(MedisamError):
    """A request's model work ran past the server's time limit and was stopped (HTTP 503)."""


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
    nbytes: int = 0  # memory the session's image holds (see uploads.session_bytes)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @contextlib.contextmanager
    def locked(self) -> Iterator[InteractiveSession]:
        """Hold the session's lock and yield its state; SessionNotFound if it was closed meanwhile
        (a DELETE or expiry that won the race for the lock)."""
        with self.lock:
            if self.state is None:
                raise SessionNotFound(f"session {self.id!r} was closed while this request waited for it")
            yield self.state

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.state = None
        gc.collect()  # a session's objects refer to each other (a SAM 2 session's undo store): free them now,
        release_memory()  # not at some later collection; then give the pages back


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _newest_mtime(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [p.stat().st_mtime for p in folder.iterdir()]
    return max(times)


def sweep_stale_roots(tmp: Path, legacy_age_s: float = LEGACY_ROOT_AGE_S) -> int:
    """Delete this user's ``medisam-serve-<pid>-*`` folders in ``tmp`` whose server process is dead.

    Such a folder is what a killed server (``kill -9``, power loss) leaves: patient uploads.
    Folders of the older unnamed form (no pid) are deleted when nothing in them changed for
    ``legacy_age_s``. Returns how many folders were deleted.
    """
    def is_stale(folder: Path, _st: os.stat_result) -> bool:
        m = re.fullmatch(re.escape(ROOT_PREFIX) + r"(\d+)-\w+", folder.name)
        if m is not None:
            return not _pid_alive(int(m.group(1)))
        return time.time() - _newest_mtime(folder) > legacy_age_s

    removed = sweep_owned_dirs(tmp, ROOT_PREFIX, is_stale)
    if removed:
        log.warning("removed %d folder(s) left by server processes that no longer run", removed)
    return removed


class SessionRegistry:
    """Thread-safe map id -> session with a size limit and idle expiry."""

    def __init__(self, max_sessions: int, idle_timeout_s: float, clock=time.monotonic):  # noqa: ANN001
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._sessions: dict[str, ServerSession] = {}
        self._lock = threading.Lock()
        sweep_stale_roots(Path(tempfile.gettempdir()))
        self.root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))  # the pid marks the owner
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

    def claim_bytes(self, session: ServerSession, nbytes: int, max_total: int) -> None:
        """Account ``nbytes`` to ``session``; ServerFull when all sessions together would exceed ``max_total``."""
        with self._lock:
            others = sum(s.nbytes for s in self._sessions.values() if s is not session)
            if others + nbytes > max_total:
                raise ServerFull(f"the open sessions hold {others} bytes of images; this one needs {nbytes} more, "
                                 f"over the server's total of {max_total}: close a session or try later")
            session.nbytes = nbytes

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
