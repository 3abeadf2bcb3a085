"""``medisam autosam train|predict``: prompt-free segmentation with a learned prompt generator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.cli import checks, common
from medisam.cli.progress import step

autosam_app = typer.Typer(no_args_is_help=True, help="AutoSAM: learn prompts for the frozen decoder.",
                          **common.HELP_STYLE)


def register(app: typer.Typer) -> None:
    app.add_typer(autosam_app, name="autosam")


@autosam_app.command("train")
def train(
    data: Path = typer.Argument(..., help="Dataset folder (images/+masks/, imagesTr/+labelsTr/, *.npz)."),
    output: Path = typer.Option(..., "--output", "-o", help="AutoSAM checkpoint to write (.pt)."),
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    multiclass: bool = typer.Option(False, "--multiclass", help="One output per label value (else foreground)."),
    epochs: int = typer.Option(20, "--epochs"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Minutes of training (from the first step)."),
    lr: float = typer.Option(1e-3, "--lr"),
    batch_size: int = typer.Option(4, "--batch-size"),
    val_fraction: float = typer.Option(0.2, "--val-fraction"),
    holdout_fraction: float = typer.Option(0.0, "--holdout-fraction"),
    max_cases: int = typer.Option(0, "--max-cases"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Embedding cache folder."),
    seed: int = typer.Option(0, "--seed"),
    device: str = common.DeviceOpt,
    force: bool = common.ForceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a prompt generator on frozen embeddings (Dice + BCE); keeps the best validation epoch."""
    from medisam.train.autosam import train_autosam
    from medisam.train.config import check_options, option_flag

    check_options({"epochs": epochs, "batch_size": batch_size, "max_cases": max_cases, "lr": lr,
                   "time_limit_min": time_limit, "val_fraction": val_fraction,
                   "holdout_fraction": holdout_fraction, "seed": seed}, option_flag)  # seed -1: numpy's traceback
    if output.suffix.lower() not in (".pt", ".pth"):  # as finetune's: -o model.txt or -o model was written
        raise common.InputError(f"-o {output}: an AutoSAM checkpoint is written as .pt or .pth; name it e.g. "
                                f"{output.stem}.pt")
    common.cache_folder(cache_dir)
    checks.paths_apart([data, checkpoint], [("-o", output)])
    checks.new_file(output, force)
    r = train_autosam(data, output, model=model, checkpoint=str(checkpoint) if checkpoint else None,
                      multiclass=multiclass, epochs=epochs, time_limit_min=time_limit, lr=lr,
                      batch_size=batch_size, val_fraction=val_fraction, holdout_fraction=holdout_fraction,
                      seed=seed, max_cases=max_cases, cache_dir=str(cache_dir) if cache_dir else None,
                      device=device, force=force, progress=not quiet)
    best = "n/a" if r.best_val_dice is None else f"{r.best_val_dice:.4f}"
    typer.echo(f"wrote {r.output} ({r.epochs_run} epoch(s), best val Dice {best}, {r.seconds:.0f} s)")


@autosam_app.command("predict")
def predict(
    ckpt: Path = typer.Argument(..., help="AutoSAM checkpoint from `medisam autosam train`."),
    input: Path = typer.Argument(..., help="Image, volume or DICOM file/folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Mask file (.png/.nii.gz/.npz/...)."),
    slice: Optional[int] = typer.Option(None, "--slice", help="Slice index for volumes (axis k = 0)."),
    channel: Optional[int] = common.ChannelOpt,
    series: Optional[str] = common.SeriesOpt,
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Base model weights (default ones)."),
    device: str = common.DeviceOpt,
    force: bool = common.ForceOpt,
) -> None:
    """Segment without prompts; writes a label map on the input's grid."""
    if not ckpt.is_file():
        raise common.InputError(f"{ckpt}: no such AutoSAM checkpoint")
    checks.only_for_dicom(input, series)
    checks.paths_apart([ckpt, input, checkpoint], [("-o", output)])
    checks.mask_format(output, volume=None, dicom=checks.is_dicom_input(input))
    checks.new_file(output, force)
    checks.header_checks(input, slice=slice, channel=channel, output=output)
    image = common.read_input(input, series_uid=series, channel=channel)
    checks.image_checks(image, input, slice=slice, output=output)
    if image.is_volume and slice is None:
        raise common.InputError(f"{input} is a volume of {image.spatial_shape} (Z,Y,X): pass --slice K")
    import numpy as np

    from medisam.io import write_mask
    from medisam.train.autosam import AutoSam

    with step("loading the AutoSAM model"):
        auto = AutoSam.load(ckpt, checkpoint=str(checkpoint) if checkpoint else None, device=device)
    with step("segmenting"):
        labels2d = auto.predict(image, slice=slice)
    if image.is_volume:
        full = np.zeros(image.spatial_shape, labels2d.dtype)
        full[slice] = labels2d
        labels = image.as_labels(full)
    else:
        labels = image.as_labels(labels2d)
    written = write_mask(labels, output, reference=image, force=force)
    typer.echo(f"wrote {written} ({int((labels2d > 0).sum())} foreground pixels)")
