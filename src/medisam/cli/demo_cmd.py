"""``medisam demo``: segment the bundled real CT samples and report Dice against their labels."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.cli import common
from medisam.cli.progress import step


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    output: Path = typer.Option(Path("medisam-demo"), "--output", "-o", help="Output folder."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    force: bool = common.ForceOpt,
) -> None:
    """Box-prompt each bundled sample (box = ground-truth extent + 5 px), write mask + overlay, print Dice."""
    if output.exists() and not output.is_dir():  # found after the model had run on the first sample
        raise common.InputError(f"-o {output} is a file; the demo writes a folder")
    with step(f"segmenting the bundled samples with {model}"):
        from medisam.demo import run_demo

        results = run_demo(output, model=model, checkpoint=checkpoint, device=device, force=force)
    for r in results:
        typer.echo(f"{r.name:<28} box={tuple(round(v) for v in r.box)}  Dice={r.dice:.4f}  "
                   f"mask={r.mask_path}  overlay={r.overlay_path}")
    mean = sum(r.dice for r in results) / len(results)
    typer.echo(f"mean Dice over {len(results)} bundled samples: {mean:.4f} ({model})")
