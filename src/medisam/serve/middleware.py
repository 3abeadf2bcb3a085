"""ASGI middleware: bearer-token check, Host/Origin check and request-body size limit.

Both run before any route (and before multipart parsing), so an unauthenticated or
oversized upload is refused without being read.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from typing import Awaitable, Callable

from medisam.serve.auth import split_host
from medisam.serve.docs import ASSETS, DOCS_PATHS

log = logging.getLogger(__name__)

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths reachable without the token: the liveness probe and the API docs (page, spec, assets).
PUBLIC_PATHS = frozenset({"/healthz"}) | DOCS_PATHS
PUBLIC_PREFIXES = (ASSETS + "/",)
#: Paths whose POST body is an upload (the large limit): a session's image and its guide channels
#: (a guide is a volume as large as the session's; under the small JSON limit every guide over 1 MiB
#: was a 413). Every other body gets the small one.
UPLOAD_PATHS = re.compile(r"/sessions(/[^/]+/guides)?")


async def _json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class TokenAuth:
    """Require ``Authorization: Bearer <token>`` on every HTTP path except :data:`PUBLIC_PATHS`.

    The scheme is matched case-insensitively (RFC 7235: ``bearer`` and ``BEARER`` are ``Bearer``;
    they were 401s) with one or more spaces before the token; the token itself is compared in
    constant time (``hmac.compare_digest``) on bytes.
    """

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.expected = token.encode()

    def authorized(self, given: bytes) -> bool:
        """Whether the ``Authorization`` header value ``given`` carries the token."""
        scheme, _, credentials = given.partition(b" ")
        return hmac.compare_digest(credentials.lstrip(b" "), self.expected) and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if not self.authorized(given):
            return await _json(send, 401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                               [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


#: What a listed origin's browser may send cross-site (answered to its CORS preflight).
CORS_METHODS = b"GET, POST, DELETE, OPTIONS"
CORS_HEADERS = b"authorization, content-type"
#: Response headers a listed origin's script may read besides the simple ones (a download's file name).
CORS_EXPOSE = b"content-disposition, www-authenticate"
CORS_MAX_AGE_S = 600


class HostGuard:
    """Refuse (403) a Host header outside ``allowed`` (DNS rebinding) and a foreign ``Origin``.

    ``allowed`` of ``None`` accepts any Host. A request with an ``Origin`` header (browsers
    send it on cross-site POSTs) is served only when that origin is the server itself
    (same scheme-less host and port as the Host header) or listed in ``origins``. A listed
    origin gets CORS: its preflight (``OPTIONS`` with ``Access-Control-Request-Method``, sent
    without credentials) is answered 204 here, before the token check, and every answer to it
    carries ``Access-Control-Allow-Origin``; without them a browser refuses to send the token
    or to show the answer, so ``--allowed-origin`` allowed nothing (the preflight was a 401).
    """

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None, origins: frozenset[str] = frozenset()):
        self.app = app
        self.allowed = allowed
        self.origins = frozenset(o.lower().rstrip("/") for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1")
        name, port = split_host(host)
        if not name or (self.allowed is not None and name not in self.allowed):
            return await _json(send, 403, f"host {host!r} is not allowed (allowed: "
                                          f"{', '.join(sorted(self.allowed or ())) or 'any'}; see --allowed-host)")
        origin = headers.get(b"origin")
        if origin is None:
            return await self.app(scope, receive, send)
        text = origin.decode("latin-1").lower().rstrip("/")
        _, _, where = text.partition("://")
        if bool(where) and split_host(where) == (name, port or split_host(where)[1]):
            return await self.app(scope, receive, send)  # the server's own page: no CORS needed
        if text not in self.origins:
            return await _json(send, 403, f"cross-origin request from {text!r} refused")
        cors = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers:
            return await _preflight(send, cors)
        await self.app(scope, receive, _with_headers(send, [*cors, (b"access-control-expose-headers", CORS_EXPOSE)]))


async def _preflight(send: Send, cors: list[tuple[bytes, bytes]]) -> None:
    """The 204 answer to a listed origin's CORS preflight."""
    await send({"type": "http.response.start", "status": 204,
                "headers": [*cors, (b"access-control-allow-methods", CORS_METHODS),
                            (b"access-control-allow-headers", CORS_HEADERS),
                            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode())]})
    await send({"type": "http.response.body", "body": b""})


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that adds ``extra`` headers to the response start."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)
    return sending


class BodyLimit:
    """Refuse request bodies above a size limit (413) or that stall (408).

    ``upload_bytes`` applies to ``POST`` on :data:`UPLOAD_PATHS`, ``max_bytes`` (small) to
    every other request, so a JSON route never parses a huge body. The size is checked by
    Content-Length and while streaming; ``idle_s`` bounds the wait for each body chunk (a
    client that sends part of a body and stops gets 408 instead of holding a worker).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None, idle_s: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = max_bytes if upload_bytes is None else upload_bytes
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope.get("method") == "POST" and UPLOAD_PATHS.fullmatch(scope.get("path", "")) is not None
        limit = self.upload_bytes if upload else self.max_bytes
        msg = f"request body is larger than the limit of {limit} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    return await _json(send, 400, "invalid Content-Length header")
                if too_big:
                    return await _json(send, 413, msg)
        seen = 0
        body_done = False
        refusal: tuple[int, str] | None = None  # set when the body is cut off: (status, detail)
        replaced = False

        async def guarded_receive() -> Message:
            nonlocal seen, body_done, refusal
            if refusal is not None:  # stop feeding the body: the app sees a disconnect
                return {"type": "http.disconnect"}
            if body_done or self.idle_s is None:
                message = await receive()  # after the body: only a disconnect can come
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.idle_s)
                except asyncio.TimeoutError:
                    refusal = (408, f"request body stalled for more than {self.idle_s:g} s")
                    return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    refusal = (413, msg)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers to a cut-off body (a parse error, usually), the client gets the refusal.
            nonlocal replaced
            if refusal is not None:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await _json(send, *refusal)
                return
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None and not replaced:
            await _json(send, *refusal)


class CatchAll:
    """Answer any unexpected exception with a JSON 500 (one generic line, no internals).

    Without it the exception reaches the server, which logs it and drops the connection
    when the response was already started. The traceback goes to the server log only.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _json(send, 500, "internal server error: the server log has the details")
