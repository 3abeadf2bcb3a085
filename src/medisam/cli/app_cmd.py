"""``medisam app``: the Gradio web UI (open a file, click/box, propagate, undo, download)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator, Optional

import typer

from medisam.cli import common


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)


def app_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default; any other "
                                                         "address requires a login)."),
    port: int = typer.Option(7860, "--port", help="TCP port."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    max_voxels: int = typer.Option(1 << 27, "--max-voxels", help="Refuse larger images (0 = no limit)."),
) -> None:
    """Open the web UI in a browser at http://HOST:PORT.

    Off loopback the UI asks for a login: user ``medisam``, password $MEDISAM_TOKEN (or a
    random one printed once).
    """
    from medisam.app import build_ui
    from medisam.errors import require
    from medisam.models import load_model
    from medisam.serve.auth import TOKEN_ENV, generate_token, is_loopback

    common.listen_address(host, port)
    if max_voxels < 0:  # -1 started a UI that refused every image
        raise common.InputError(f"--max-voxels must be >= 0 (0 = no limit), got {max_voxels}")
    require("gradio", "app")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = None
    if not is_loopback(host):
        password = os.environ.get(TOKEN_ENV) or generate_token()
        auth = ("medisam", password)
    demo = build_ui(load_model(model, checkpoint=checkpoint, device=device), max_voxels or None)
    typer.echo(f"medisam app: http://{host}:{port} (model {model})")
    if auth is not None and not os.environ.get(TOKEN_ENV):
        typer.echo(f"    login: medisam / {auth[1]} (generated; set ${TOKEN_ENV} to choose one)")
    elif auth is not None:
        typer.echo(f"    login: medisam / ${TOKEN_ENV}")
    with patient_startup_check():
        demo.queue().launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=True,
                            auth=auth)


@contextlib.contextmanager
def patient_startup_check(seconds: float = 30.0) -> Iterator[None]:
    """Give Gradio's check of its own new server ``seconds``: it sends one HEAD request with a 3 s timeout
    and, when a busy machine answers late, stops the app with a traceback ("When localhost is not
    accessible, a shareable link must be created"; a hunt saw it twice at a load of 8 on 2 cores)."""
    import gradio.networking as networking

    quick = networking.url_ok

    def patient(url: str) -> bool:
        deadline = time.monotonic() + seconds
        while not quick(url):
            if time.monotonic() > deadline:
                return False
        return True

    networking.url_ok = patient
    try:
        yield
    finally:
        networking.url_ok = quick
