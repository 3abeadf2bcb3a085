"""ASGI middleware: bearer-token check and request-body size limit.

Both run before any route (and before multipart parsing), so an unauthenticated or
oversized upload is refused without being read.
"""

from __future__ import annotations

import hmac
import json
from typing import Awaitable, Callable

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths reachable without the token (liveness probes).
PUBLIC_PATHS = frozenset({"/healthz"})
#: Paths whose POST body is an upload (the large limit); every other body gets the small one.
UPLOAD_PATHS = frozenset({"/sessions"})


async def _json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class TokenAuth:
    """Require ``Authorization: Bearer <token>`` on every HTTP path except :data:`PUBLIC_PATHS`.

    The comparison is constant-time (``hmac.compare_digest``) on bytes.
    """

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self.expected):
            return await _json(send, 401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                               [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies above a limit with 413 (by Content-Length, and while streaming).

    ``upload_bytes`` applies to ``POST`` on :data:`UPLOAD_PATHS`, ``max_bytes`` (small) to
    every other request, so a JSON route never parses a huge body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = max_bytes if upload_bytes is None else upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope.get("method") == "POST" and scope.get("path") in UPLOAD_PATHS
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
        exceeded = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:  # stop feeding the body: the app sees a disconnect
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers to a cut-off body (a parse error, usually), the client gets 413.
            nonlocal replaced
            if exceeded:
                if not replaced and message["type"] == "http.response.start":
                    replaced = True
                    await _json(send, 413, msg)
                return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not replaced:
            await _json(send, 413, msg)
