"""``medisam serve``: run the REST API (FastAPI + uvicorn)."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Optional

import typer

from medisam.cli import common

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    token: Optional[str] = typer.Option(None, "--token", envvar="MEDISAM_TOKEN",
                                        help="Require 'Authorization: Bearer TOKEN' (or set $MEDISAM_TOKEN)."),
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

    uvicorn = require("uvicorn", "serve")
    if not _is_loopback(host) and token is None:
        raise common.InputError(f"refusing to listen on {host} without --token: anyone on the network could "
                                "upload images; pass --token (or $MEDISAM_TOKEN)")
    settings = ServerSettings(host=host, port=port, token=token, model=model,
                              checkpoint=str(checkpoint) if checkpoint else None, device=device,
                              max_upload_bytes=max_upload_mb << 20, max_voxels=max_voxels,
                              max_sessions=max_sessions, idle_timeout_s=idle_timeout)
    app = create_app(settings)
    typer.echo(f"medisam serve: http://{host}:{port} (model {model}; docs at /docs"
               f"{'; token required' if token else ''})")
    uvicorn.run(app, host=host, port=port, log_level="info" if os.environ.get("MEDISAM_DEBUG") else "warning")
