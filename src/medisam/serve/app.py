"""``create_app(settings)``: the FastAPI application factory behind ``medisam serve``.

The model is loaded once and shared; each session gets its own embedding cache, lock and
private folder. Errors a client causes come back as JSON ``{"detail": "..."}`` with
400 (bad input or prompt), 401 (token), 404 (unknown session), 413 (too large), 429 (too
many sessions) or 501 (feature not installed); nothing in a request names a server path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import AsyncIterator

from medisam.errors import InputError, MedisamError, MissingExtraError, ModelError, OutputExistsError, require
from medisam.models.promptable import PromptableModel
from medisam.predict import EmbeddingCache
from medisam.serve.settings import ServerSettings
from medisam.serve.sessions import SessionNotFound, SessionRegistry, TooManySessions, WorkTimeout
from medisam.serve.uploads import UploadTooLarge

log = logging.getLogger(__name__)

#: Error class -> HTTP status (the first match in order wins).
STATUS_OF = (
    (UploadTooLarge, 413), (TooManySessions, 429), (SessionNotFound, 404), (MissingExtraError, 501),
    (WorkTimeout, 503),
    (OutputExistsError, 409), (ModelError, 500), (InputError, 400), (MedisamError, 400),
)


#: Longest ``detail`` sent back: an error that quotes a huge input (a 100 kB window name, a 10 kB
#: session id or format) is cut in the middle, keeping its start and its advice.
MAX_DETAIL_CHARS = 500


def short_detail(message: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``message`` on one line and at most about ``limit`` characters (the middle cut out, saying how much)."""
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    if len(message) <= limit:
        return message
    keep = limit // 2 - 20
    return f"{message[:keep]} [...{len(message) - 2 * keep} characters cut...] {message[-keep:]}"


def scrub_paths(message: str, root) -> str:  # noqa: ANN001
    """Replace any server path under the sessions folder ``root`` by its file name."""
    for r in {str(root), os.path.realpath(root)}:
        message = re.sub(re.escape(r) + r"[^\s:'\"]*", lambda m: os.path.basename(m.group(0)) or "upload", message)
    return message


@dataclass
class ServerContext:
    """What the routes share: settings, the model and the session registry."""

    settings: ServerSettings
    model: PromptableModel
    sessions: SessionRegistry
    inference: threading.BoundedSemaphore = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.inference is None:
            self.inference = threading.BoundedSemaphore(self.settings.inference_slots)

    def new_cache(self) -> EmbeddingCache:
        return EmbeddingCache(max_bytes=self.settings.session_cache_bytes)


def create_app(settings: ServerSettings | None = None, model: PromptableModel | None = None):  # noqa: ANN201
    """Build the FastAPI app; ``model`` overrides loading ``settings.model`` (tests pass one in)."""
    fastapi = require("fastapi", "serve")
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from medisam import __version__
    from medisam.serve.auth import allowed_host_names
    from medisam.serve.docs import add_docs
    from medisam.serve.middleware import BodyLimit, CatchAll, HostGuard, TokenAuth
    from medisam.serve.routes import router

    settings = settings or ServerSettings()
    if model is None:
        from medisam.models import load_model

        model = load_model(settings.model, checkpoint=settings.checkpoint, device=settings.device)
    ctx = ServerContext(settings, model, SessionRegistry(settings.max_sessions, settings.idle_timeout_s))

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:  # noqa: ANN001
        async def sweep() -> None:
            while True:
                await asyncio.sleep(min(30.0, settings.idle_timeout_s / 2))
                await asyncio.to_thread(ctx.sessions.expire_idle)

        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()
            ctx.sessions.close_all()

    app = fastapi.FastAPI(
        title="medisam", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
        description="Segment Anything for medical images: upload an image, volume or video, prompt "
                    "slices with boxes/points/masks, propagate in 3D, download the mask.")
    app.state.medisam = ctx

    @app.exception_handler(MedisamError)
    async def _medisam_error(request, exc: MedisamError):  # noqa: ANN001, ANN202
        status = next(code for cls, code in STATUS_OF if isinstance(exc, cls))
        if status >= 500 and not isinstance(exc, WorkTimeout):
            log.error("request failed: %s", exc)
        return JSONResponse({"detail": short_detail(scrub_paths(str(exc), ctx.sessions.root))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):  # noqa: ANN001, ANN202
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(v) for v in err.get("loc", ()) if v != "body") or "the JSON body"
            parts.append(f"{where}: {err.get('msg')}")
        return JSONResponse({"detail": short_detail("invalid request: " + "; ".join(parts))}, status_code=400)

    app.include_router(router)
    add_docs(app, bearer=settings.token is not None)
    app.add_middleware(CatchAll)  # innermost: a crash becomes a JSON 500 before the other middleware
    app.add_middleware(BodyLimit, max_bytes=settings.max_json_bytes, idle_s=settings.body_timeout_s,
                       upload_bytes=settings.max_upload_bytes + (64 << 10))  # multipart overhead
    if settings.token is not None:
        app.add_middleware(TokenAuth, token=settings.token)
    app.add_middleware(HostGuard, allowed=allowed_host_names(settings.host, tuple(settings.allowed_hosts)),
                       origins=frozenset(settings.allowed_origins))  # added last = runs first
    return app
