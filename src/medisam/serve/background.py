"""Run the server with uvicorn: the hardened config ``medisam serve`` uses, and a background thread.

:func:`uvicorn_config` applies the connection limits of :class:`ServerSettings`: a
deadline for each request head (slow-header clients are disconnected), the keep-alive
timeout, a cap on the request head size and ``limit_concurrency``.
"""

from __future__ import annotations

import socket
import threading
import time

from medisam.errors import require
from medisam.serve.settings import ServerSettings

#: Largest request head (request line + headers) accepted, bytes.
MAX_HEAD_BYTES = 64 << 10


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _timed_protocol(header_timeout_s: float):  # noqa: ANN202 - a uvicorn protocol class
    """uvicorn's h11 protocol, closing a connection that does not send a full request head in time."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineH11(H11Protocol):
        _head_timer = None
        _waiting_cycle = None

        def _arm(self) -> None:
            self._disarm()
            self._waiting_cycle = self.cycle
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.cycle is self._waiting_cycle and not self.transport.is_closing():
                self.transport.close()  # no complete request head arrived in time

        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._waiting_cycle:
                self._disarm()  # a new request head was parsed

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is not None and self.cycle.response_complete:
                self._arm()

        def connection_lost(self, exc) -> None:  # noqa: ANN001
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadlineH11


def uvicorn_config(app, host: str, port: int, settings: ServerSettings | None = None,  # noqa: ANN001
                   log_level: str = "warning"):  # noqa: ANN201 - uvicorn.Config
    """The uvicorn config for ``app`` with the timeouts and limits of ``settings``."""
    uvicorn = require("uvicorn", "serve")
    s = settings or ServerSettings()
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                          http=_timed_protocol(s.header_timeout_s), timeout_keep_alive=s.keep_alive_s,
                          limit_concurrency=s.max_connections, h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                          timeout_graceful_shutdown=5)


class BackgroundServer:
    """``with BackgroundServer(app) as url:`` serves ``app`` with uvicorn in a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 30.0):  # noqa: ANN001
        uvicorn = require("uvicorn", "serve")
        self.host, self.port = host, port or free_port(host)
        ctx = getattr(getattr(app, "state", None), "medisam", None)
        config = uvicorn_config(app, self.host, self.port, getattr(ctx, "settings", None))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="medisam-serve", daemon=True)
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
