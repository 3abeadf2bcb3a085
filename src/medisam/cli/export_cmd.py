"""``medisam export onnx``: the encoder and prompt-decoder ONNX graphs plus metadata.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.cli import checks, common
from medisam.cli.progress import step
from medisam.errors import InputError

#: ``medisam.export.onnx_export.MIN_OPSET`` (a test keeps them equal), here to refuse ``--opset 5`` before torch loads.
FIRST_OPSET = 12

export_app = typer.Typer(no_args_is_help=True, help="Export a model for other runtimes.", **common.HELP_STYLE)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


@export_app.command("onnx")
def onnx(
    output: Path = typer.Option(..., "--output", "-o",
                                help="Output folder (encoder.onnx, decoder.onnx, metadata.json)."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    opset: int = typer.Option(17, "--opset", help="ONNX opset version (12 to the exporter's highest: 20 with "
                              "torch 2.14)."),
    force: bool = common.ForceOpt,
) -> None:
    """Export the image encoder and the prompt encoder + mask decoder to ONNX (CPU, fp32)."""
    from medisam.errors import OutputExistsError

    checks.paths_apart([checkpoint], [("-o", output)])
    if output.exists() and not output.is_dir():  # before the exporter's imports (it was said after them)
        raise OutputExistsError(f"{output} exists and is not a folder")
    checks.new_folder(output, force=True, option="-o")  # a broken link, /proc/x: said before torch loads
    if opset < FIRST_OPSET:  # the top opset is torch's exporter's: told after its import, below
        raise InputError(f"--opset {opset} is not supported: the graphs export at opsets {FIRST_OPSET}.. up to "
                         "torch's exporter's highest (default 17)")
    with step("loading the exporter"):  # refusals inside the step: no "done" line before the error
        from medisam.export.onnx_export import (DECODER_FILE, ENCODER_FILE, METADATA_FILE, check_opset,
                                                export_onnx)
        from medisam.models import get_spec, load_model

        check_opset(opset)  # before the model loads
        get_spec(model)
        checks.checkpoint_file(checkpoint)
        existing = [output / f for f in (ENCODER_FILE, DECODER_FILE, METADATA_FILE) if (output / f).exists()]
        if existing and not force:  # checked before loading anything
            raise OutputExistsError(f"{existing[0]} exists; pass --force to overwrite")
    with step(f"loading model {model}"):
        loaded = load_model(model, checkpoint=checkpoint, device="cpu", backend="torch")
    with step("exporting to ONNX"):
        result = export_onnx(loaded, output, force=force, opset=opset)
    for path in (result.encoder, result.decoder, result.metadata):
        typer.echo(f"wrote {path}")
