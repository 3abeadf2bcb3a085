"""Options and parsers shared by every subcommand (defined once)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.errors import InputError, ModelError, OutputExistsError

ModelOpt = typer.Option("litemedsam", "--model", "-m", help="Model name (see `medisam models`).")
CheckpointOpt = typer.Option(None, "--checkpoint", help="Weights file (default: bundled / $MEDISAM_WEIGHTS).")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps.")
ForceOpt = typer.Option(False, "--force", help="Overwrite existing outputs.")
WindowOpt = typer.Option(None, "--window", help="CT window preset (abdomen, liver, lung, bone, brain, "
                                                "mediastinum, soft_tissue) or WIDTH,LEVEL.")
MaxVoxelsOpt = typer.Option(None, "--max-voxels", help="Refuse inputs larger than this (0 = no limit).")
BackendOpt = typer.Option("auto", "--backend", help="Inference backend: auto (default), torch, onnx or openvino "
                                                     "(auto = the fastest measured here; see `medisam info --backends`).")
PrecisionOpt = typer.Option("fp32", "--precision", help="fp32, bf16 (CPU with AVX512_BF16/AMX, or CUDA), "
                                                        "fp16 (CUDA) or int8 (onnx encoder).")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads (default $MEDISAM_THREADS or all available).")


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


def model_options(backend: str, precision: str, threads: Optional[int]) -> dict:
    """``--backend/--precision/--threads`` -> ``load_model`` keyword arguments.

    Checked before any input is read, so a typo fails at once with a one-line error.
    """
    from medisam.models.backends import BACKENDS
    from medisam.models.precision import PRECISIONS

    if backend not in (*BACKENDS, "auto"):
        raise ModelError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)} or auto")
    if precision not in PRECISIONS:
        raise ModelError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    return {"backend": backend, "precision": precision, "threads": threads}


def describe_model(model) -> str:
    """One line naming the model and how it runs (backend, precision, device)."""
    return (f"model {model.name}: backend {getattr(model, 'backend', 'torch')}, "
            f"precision {getattr(model, 'precision', 'fp32')}, device {model.device}")


def check_output(path: Path, force: bool) -> Path:
    """Refuse an existing output unless ``--force`` (checked before any work is done)."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite")
    return path
