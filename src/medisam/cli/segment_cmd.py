"""``medisam segment``: box/point prompts on a 2D image or one slice -> label map file."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medisam.cli import common


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)


def segment(
    input: Path = typer.Argument(..., help="Image, volume (NIfTI/NRRD/MHA), DICOM file/folder or npz."),
    output: Path = typer.Option(..., "--output", "-o", help="Mask file: .nii.gz/.nrrd/.mha/.png/.npz/.dcm (DICOM-SEG)."),
    box: List[str] = typer.Option([], "--box", help="x0,y0,x1,y1 in pixels (x = column); repeat for label 1, 2, ..."),
    point: List[str] = typer.Option([], "--point", help="x,y[,label] (label 1 positive, 0 negative); repeatable."),
    slice: Optional[int] = typer.Option(None, "--slice", help="Slice index for volumes (along --axis)."),
    axis: int = typer.Option(0, "--axis", help="Array axis to slice: 0 = k (axial for most scans), 1 = j, 2 = i."),
    series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID when a folder holds several."),
    window: Optional[str] = common.WindowOpt,
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    backend: str = common.BackendOpt,
    precision: str = common.PrecisionOpt,
    threads: Optional[int] = common.ThreadsOpt,
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write an overlay PNG for people."),
    max_voxels: Optional[int] = common.MaxVoxelsOpt,
    allow_gaps: bool = common.AllowGapsOpt,
    force: bool = common.ForceOpt,
) -> None:
    """Segment objects from box/point prompts; the i-th --box gets label i."""
    from medisam.io import read_image, write_mask, write_overlay_png
    from medisam.io.intensity import to_display
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.predict.segment import segment_image

    runtime = common.model_options(backend, precision, threads)
    boxes = [common.parse_box(b) for b in box]
    points = [common.parse_point(p) for p in point] or None
    win = common.parse_window(window)
    common.check_output(output, force)
    if overlay is not None:
        common.check_output(overlay, force)
    image = read_image(input, series_uid=series, **common.read_options(max_voxels))
    common.check_geometry(image, allow_gaps)
    if image.is_volume and slice is None:
        raise common.InputError(f"{input} is a volume of {image.spatial_shape} (Z,Y,X): pass --slice K")
    net = load_model(model, checkpoint=checkpoint, device=device, **runtime)
    if (backend, precision, threads) != ("torch", "fp32", None):
        typer.echo(common.describe_model(net), err=True)
    predictor = Predictor(net)
    labels = segment_image(predictor, image, boxes, points, slice=slice, window=win, axis=axis)
    written = write_mask(labels, output, reference=image, force=force)
    n = int((labels.array > 0).sum())
    typer.echo(f"wrote {written} ({len(boxes) or 1} object(s), {n} foreground pixels)")
    if overlay is not None:
        pixels = image.slice2d(slice or 0, axis) if image.is_volume else image.array
        label2d = labels.slice2d(slice or 0, axis) if image.is_volume else labels.array
        write_overlay_png(to_display(pixels, image.modality, win), label2d, overlay, force=force)
        typer.echo(f"wrote {overlay}")
