"""``medisam samaug``: SAMAug 3-channel inputs (grey, segmentation prior, boundary prior) as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medisam.cli import checks, common
from medisam.cli.progress import step


def register(app: typer.Typer) -> None:
    app.command("samaug")(samaug)


def samaug(
    inputs: List[Path] = typer.Argument(..., help="2D images (PNG/JPEG/TIFF, DICOM, ...)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder; writes <stem>.png per input."),
    grid: str = typer.Option("auto", "--grid", help="auto | points | boxes: prompts of the everything mode "
                                                    "(auto: boxes for box-trained models such as LiteMedSAM, "
                                                    "points for SAM)."),
    points_per_side: int = common.PointsPerSideOpt,
    pred_iou_thresh: Optional[float] = typer.Option(None, "--pred-iou-thresh", help="Keep masks above this "
                                                    "predicted IoU (default 0.88 with points, 0.8 with boxes)."),
    stability_thresh: Optional[float] = typer.Option(None, "--stability-thresh", help="Keep masks above this "
                                                     "stability (default 0.95 with points, 0.7 with boxes)."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    force: bool = common.ForceOpt,
) -> None:
    """Augment images with SAM priors (SAMAug) for training other segmentation networks."""
    if output.exists() and not output.is_dir():
        raise common.InputError(f"{output} is a file; --output must be a folder")
    checks.paths_apart([*inputs, checkpoint], [("-o", output)])
    from medisam.train.samaug import image_display, samaug_config, samaug_targets

    with common.said_as_flags({"pred_iou_thresh": "--pred-iou-thresh", "stability_score_thresh": "--stability-thresh",
                               "stability_thresh": "--stability-thresh", "points_per_side": "--points-per-side"}):
        samaug_config(points_per_side, pred_iou_thresh, stability_thresh, grid)  # checked before loading
    missing = [p for p in inputs if not p.is_file()]
    if missing:  # a folder was said to be missing
        raise common.InputError(f"{missing[0]}: " + ("a folder; samaug takes 2D image files" if missing[0].is_dir()
                                                     else "no such file"))
    samaug_targets(inputs, output, force)  # before the model loads

    for path in inputs:  # a corrupt or 3D input fails here, before the model loads and any output is written
        image_display(common.read_input(path))
    with step(f"loading model {model}"):
        from medisam.models import load_model
        from medisam.predict import Predictor
        from medisam.train.samaug import samaug_files

        predictor = Predictor(load_model(model, checkpoint=checkpoint, device=device))
    written = samaug_files(inputs, output, predictor, force=force, points_per_side=points_per_side,
                           pred_iou_thresh=pred_iou_thresh, stability_thresh=stability_thresh, grid=grid)
    for path, n in written:
        typer.echo(f"wrote {path} ({n} masks)")

