"""``medisam finetune``: adapt a model to a labelled dataset (full, decoder, adapter or LoRA)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.cli import checks, common



def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


def finetune(
    data: Path = typer.Argument(..., help="Dataset folder: images/+masks/, imagesTr/+labelsTr/ or *.npz."),
    output: Path = typer.Option(..., "--output", "-o",
                                help="Checkpoint to write (.pt); config and state go beside it."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Base model (default litemedsam)."),
    checkpoint: Optional[Path] = common.CheckpointOpt,
    mode: Optional[str] = typer.Option(None, "--mode", help="full | decoder | adapter | lora (default decoder)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 10)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit",
                                               help="Stop after this many minutes of training (from the first step)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Cases held out for validation (0.2)."),
    holdout_fraction: Optional[float] = typer.Option(None, "--holdout-fraction",
                                                     help="Cases set aside as an untouched test split (0)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per step (4)."),
    accumulate: Optional[int] = typer.Option(None, "--accumulate", help="Gradient accumulation steps (1)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (1e-4)."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="cosine | onecycle."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping patience in epochs (5; 0 = off)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt strategies, comma-separated (box-jitter10)."),
    targets: Optional[str] = typer.Option(None, "--targets", help="label | component | instance."),
    targets_per_image: Optional[int] = typer.Option(None, "--targets-per-image",
                                                    help="Objects per image per step (8)."),
    max_slices: Optional[int] = typer.Option(None, "--max-slices", help="Labelled slices per volume (8; 0 = all)."),
    max_cases: Optional[int] = typer.Option(None, "--max-cases", help="Read at most this many cases (0 = all)."),
    train_decoder: Optional[bool] = typer.Option(None, "--train-decoder/--frozen-decoder",
                                                 help="Adapter/LoRA modes: also train the mask decoder."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoder mode embedding cache folder."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for split, prompts and initialisation (0)."),
    window: Optional[str] = common.WindowOpt,
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N | mps."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON file of configuration values."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint's saved training state."),
    force: bool = common.ForceOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune a SAM-family model; the checkpoint loads with --model BASE --checkpoint CKPT."""
    from medisam.train.config import FinetuneConfig, check_options, config_path_for, option_flag, state_path_for
    from medisam.train.trainer import finetune as run

    outputs = [("-o", output), ("the state beside -o", state_path_for(output)),
               ("the config beside -o", config_path_for(output))]
    checks.paths_apart([data, checkpoint, config_file], outputs)
    common.cache_folder(cache_dir)
    values = FinetuneConfig.read_overlay(config_file) if config_file else {}
    if resume is not None:  # the run's own settings under the file's and the flags (a change is refused)
        from medisam.train.trainer import saved_settings

        values = {**(saved_settings(resume) or {}), **values}
    given = {"model": model, "checkpoint": str(checkpoint) if checkpoint else None, "mode": mode,
             "epochs": epochs, "time_limit_min": time_limit, "val_fraction": val_fraction,
             "holdout_fraction": holdout_fraction, "batch_size": batch_size, "accumulate": accumulate,
             "lr": lr, "schedule": schedule, "patience": patience, "prompt": prompt, "targets": targets,
             "targets_per_image": targets_per_image, "max_slices": max_slices, "max_cases": max_cases,
             "train_decoder": train_decoder, "cache_dir": str(cache_dir) if cache_dir else None,
             "seed": seed, "window": window, "device": device}
    flags = {k: v for k, v in given.items() if v is not None}
    check_options(flags, option_flag)  # in the words the user typed; the config file's keys are checked below
    values.update(flags)
    values.update(data=str(data), output=str(output))
    config = FinetuneConfig.from_dict(values)
    result = run(config, force=force, resume=resume, progress=not quiet)
    best = "n/a" if result.best_val_dice is None else f"{result.best_val_dice:.4f}"
    if result.base_val_dice is not None:
        worse = "; WORSE: the checkpoint holds the base weights" if result.kept_base else "; WORSE"
        best += f" ({result.base_val_dice:.4f} before training{worse if result.worse_than_base else ''})"
    typer.echo(f"wrote {result.output} (mode {config.mode}, {result.epochs_run} epoch(s), stopped: "
               f"{result.stopped}, best val Dice {best}, {result.seconds:.0f} s); "
               f"config {config_path_for(output)}")
    if result.test_cases:  # the cases to test on: in the checkpoint's meta too ("split")
        typer.echo(f"held out for testing (never trained or validated on): {len(result.test_cases)} case(s): "
                   f"{', '.join(result.test_cases)}")

