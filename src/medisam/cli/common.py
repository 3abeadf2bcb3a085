"""Options and parsers shared by every subcommand (defined once)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.errors import InputError, OutputExistsError

ModelOpt = typer.Option("litemedsam", "--model", "-m", help="Model name (see `medisam models`).")
CheckpointOpt = typer.Option(None, "--checkpoint", help="Weights file (default: bundled / $MEDISAM_WEIGHTS).")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps.")
ForceOpt = typer.Option(False, "--force", help="Overwrite existing outputs.")
WindowOpt = typer.Option(None, "--window", help="CT window preset (abdomen, liver, lung, bone, brain, "
                                                "mediastinum, soft_tissue) or WIDTH,LEVEL.")
MaxVoxelsOpt = typer.Option(None, "--max-voxels", help="Refuse inputs larger than this (0 = no limit).")


def parse_numbers(text: str, count: int | tuple[int, ...], what: str) -> list[float]:
    """Parse ``"a,b,c"`` into floats, requiring ``count`` values (one-line error otherwise)."""
    counts = (count,) if isinstance(count, int) else count
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{what} {text!r} must be comma-separated numbers") from None
    if len(values) not in counts:
        raise InputError(f"{what} {text!r} needs {' or '.join(map(str, counts))} numbers")
    return values


def parse_box(text: str) -> list[float]:
    return parse_numbers(text, 4, "--box")


def parse_point(text: str) -> tuple[float, ...]:
    """``x,y`` (positive) or ``x,y,label`` with label 1 (positive) or 0 (negative)."""
    values = parse_numbers(text, (2, 3), "--point")
    return tuple(values[:2]) + ((int(values[2]),) if len(values) == 3 else (1,))


def parse_window(text: Optional[str]) -> str | tuple[float, float] | None:
    """A preset name or ``WIDTH,LEVEL``."""
    if text is None or "," not in text:
        return text
    width, level = parse_numbers(text, 2, "--window")
    return (width, level)


def read_options(max_voxels: Optional[int]) -> dict:
    """``--max-voxels`` -> ``read_image`` keyword arguments (absent: default, 0: no limit)."""
    if max_voxels is None:
        return {}
    return {"max_voxels": None if max_voxels == 0 else max_voxels}


def check_output(path: Path, force: bool) -> Path:
    """Refuse an existing output unless ``--force`` (checked before any work is done)."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite")
    return path
