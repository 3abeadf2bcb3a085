"""``medisam app``: the Gradio web UI (open a file, click/box, propagate, undo, download)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from medisam.cli import common


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)


def app_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(7860, "--port", help="TCP port."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    max_voxels: int = typer.Option(1 << 27, "--max-voxels", help="Refuse larger images (0 = no limit)."),
) -> None:
    """Open the web UI in a browser at http://HOST:PORT."""
    from medisam.app import build_ui
    from medisam.errors import require
    from medisam.models import load_model

    require("gradio", "app")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_ui(load_model(model, checkpoint=checkpoint, device=device), max_voxels or None)
    typer.echo(f"medisam app: http://{host}:{port} (model {model})")
    demo.queue().launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=True)
