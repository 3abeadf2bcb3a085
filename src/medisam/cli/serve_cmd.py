"""``medisam serve``: run the REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

import typer

from medisam.cli import common

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    token: Optional[str] = typer.Option(None, "--token", envvar="MEDISAM_TOKEN", show_envvar=True,
                                        help="Require 'Authorization: Bearer TOKEN'. Prefer $MEDISAM_TOKEN "
                                             "(--token shows in ps). Default: a random token, printed once."),
    no_token: bool = typer.Option(False, "--no-token", help="Serve without a token (loopback only)."),
    allowed_host: List[str] = typer.Option([], "--allowed-host",
                                           help="Extra Host name clients use (repeatable; default: loopback "
                                                "names and --host)."),
    allowed_origin: List[str] = typer.Option([], "--allowed-origin",
                                             help="Browser origin allowed to call the API (repeatable)."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    max_upload_mb: int = typer.Option(1024, "--max-upload-mb", help="Largest upload in MiB (413 above)."),
    max_voxels: int = typer.Option(1 << 27, "--max-voxels", help="Largest image in voxels (413 above)."),
    max_sessions: int = typer.Option(8, "--max-sessions", help="Open sessions at once (429 above)."),
    idle_timeout: float = typer.Option(1800.0, "--idle-timeout", help="Close sessions idle this many seconds."),
) -> None:
    """Serve the session API: upload, prompt, correct, undo, propagate, download (docs at /docs)."""
    from medisam.errors import require
    from medisam.serve import ServerSettings, create_app
    from medisam.serve.auth import generate_token, is_loopback
    from medisam.serve.background import uvicorn_config

    common.listen_address(host, port)
    uvicorn = require("uvicorn", "serve")
    if no_token and token is not None:
        raise common.InputError("--no-token contradicts --token / $MEDISAM_TOKEN")
    if no_token and not is_loopback(host):
        raise common.InputError(f"refusing to listen on {host} without a token: anyone on the network could "
                                "upload images; drop --no-token")
    if getattr(ctx.get_parameter_source("token"), "name", "") == "COMMANDLINE":
        typer.echo("warning: --token is visible to other users in ps; prefer $MEDISAM_TOKEN", err=True)
    generated = token is None and not no_token
    if generated:
        token = generate_token()
    with common.said_as_flags({"max_upload_bytes": "--max-upload-mb", "max_voxels": "--max-voxels",
                               "max_sessions": "--max-sessions", "idle_timeout_s": "--idle-timeout"}):
        settings = ServerSettings(host=host, port=port, token=token, model=model,
                                  checkpoint=str(checkpoint) if checkpoint else None, device=device,
                                  max_upload_bytes=max_upload_mb << 20, max_voxels=max_voxels,
                                  max_sessions=max_sessions, idle_timeout_s=idle_timeout,
                                  allowed_hosts=tuple(allowed_host), allowed_origins=tuple(allowed_origin))
    app = create_app(settings)
    typer.echo(f"medisam serve: http://{host}:{port} (model {model}; docs at /docs)")
    if generated:  # printed once, like Jupyter's token; never logged
        typer.echo(f"    token (generated; set $MEDISAM_TOKEN to choose one): {token}\n"
                   f"    clients send: Authorization: Bearer {token}")
    elif token is None:
        typer.echo("    no token: any local process can use this server")
    level = "info" if os.environ.get("MEDISAM_DEBUG") else "warning"
    uvicorn.Server(uvicorn_config(app, host, port, settings, log_level=level)).run()
