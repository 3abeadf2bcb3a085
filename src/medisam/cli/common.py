"""Options and parsers shared by every subcommand (defined once).

Vocabulary: boolean options are plain switches (``--force``, no value); ``--axis`` takes
``k|j|i`` or ``0|1|2`` everywhere (array axes of the ``(Z, Y, X)`` volume); ``--channel``
picks one component / volume wherever images are read.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from medisam.errors import InputError, ModelError

#: typer settings of every (sub)app: plain help, so switches show no ``<bool>`` and pipe cleanly.
HELP_STYLE = {"rich_markup_mode": None, "pretty_exceptions_enable": False}

ModelOpt = typer.Option("litemedsam", "--model", "-m", help="Model name (see `medisam models`).")
CheckpointOpt = typer.Option(None, "--checkpoint", help="Weights file (default: bundled / $MEDISAM_WEIGHTS).")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N, mps.")
ForceOpt = typer.Option(False, "--force", help="Overwrite existing outputs.")
WindowOpt = typer.Option(None, "--window", help="CT window preset (abdomen, liver, lung, bone, brain, "
                                                "mediastinum, soft_tissue) or WIDTH,LEVEL.")
ChannelOpt = typer.Option(None, "--channel", help="Component of a colour / multi-channel image, or volume "
                                                  "of a 4D file (0-based).")
AxisOpt = typer.Option(None, "--axis", help="Slicing axis of a volume: k|j|i or 0|1|2 of the (Z,Y,X) array "
                                            "(default k = 0, axial for most scans).")
SeriesOpt = typer.Option(None, "--series", help="SeriesInstanceUID when a DICOM folder holds several.")
#: everything mode's default grid density (AutoMaskConfig.points_per_side; not imported here: that loads torch)
POINTS_PER_SIDE = 16
PointsPerSideOpt = typer.Option(POINTS_PER_SIDE, "--points-per-side",
                                help="Everything mode's grid density: S x S points, or box tiles down to 2/S of the "
                                     "image (or crop) side.")
MaxVoxelsOpt = typer.Option(None, "--max-voxels", help="Refuse inputs larger than this (0 = no limit).")
BackendOpt = typer.Option("auto", "--backend", help="Inference backend: auto (default), torch, onnx or openvino "
                          "(auto = the fastest measured here; see `medisam info --backends`).")
PrecisionOpt = typer.Option(None, "--precision", help="fp32, bf16 (CPU with AVX512_BF16/AMX, or CUDA), "
                                                      "fp16 (CUDA) or int8 (onnx encoder). Default: the one "
                                                      "--backend auto measured here (fp32 on a named backend).")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads (default $MEDISAM_THREADS or all available).")
ScribbleOpt = typer.Option([], "--scribble", help="x0,y0,x1,y1,...[:label]: a polyline in pixels on the prompted "
                           "slice; clicks every 8 pixels along it (at most 16), label 1 positive (default) or 0 "
                           "negative. With --box or --lasso they correct that prompt's mask as clicks do (the random "
                           "walker; volumes: 3D clicks after the propagation); else they prompt the model. "
                           "Repeatable.")
LassoOpt = typer.Option(None, "--lasso", help="x0,y0,x1,y1,x2,y2,...: a closed polygon in pixels on the prompted "
                        "slice; its inside is the object's mask prompt there.")
AllowGapsOpt = typer.Option(False, "--allow-gaps", help="Write a mask even when the input's slice geometry is "
                                                        "broken or unknown (a skipped slice, a gap, uneven positions, "
                                                        "an assumed slice spacing).")


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


@contextmanager
def said_as_flags(flags: dict[str, str]) -> Iterator[None]:
    """Settings objects (AutoMaskConfig, ServerSettings, EvalSettings, BenchConfig) check themselves and name
    their fields; a refusal from inside this block names the flags the user typed instead (``pred_iou_thresh``
    -> ``--pred-iou-thresh``): a one-off rewrite of a finished message, by the command that knows its flags.
    Unlike :func:`medisam.train.config.option_flag`, the fine-tuning options' fixed field -> flag table, which
    the library itself spells its messages with (``check_options`` takes it as ``spell``; the trainer's resume
    refusal names flags through it), so no message is rewritten afterwards."""
    try:
        yield
    except InputError as exc:
        message = str(exc)
        for field, flag in flags.items():
            message = re.sub(rf"\b{field}\b", flag, message)
        raise type(exc)(message) from None


def cache_folder(path: Optional[Path]) -> None:
    """``--cache-dir`` is a folder (made when missing), never an existing file: that failed after the
    model loaded, ``[Errno 17] File exists`` with exit 1."""
    if path is not None and path.exists() and not path.is_dir():
        raise InputError(f"--cache-dir {path} is a file; give a folder for the embedding cache")


def listen_address(host: str, port: int) -> None:
    """``--host``/``--port`` of ``serve`` and ``app``, checked before the model loads: port -1 or 70000
    printed the socket's OverflowError traceback, an unknown host name uvicorn's ``ERROR:`` line (exit 3)."""
    import socket

    if not 1 <= port <= 65535:
        raise InputError(f"--port must be 1..65535, got {port}")
    try:
        socket.getaddrinfo(host, port)
    except (socket.gaierror, UnicodeError):
        raise InputError(f"--host {host!r} is not an address or a host name this machine resolves") from None


def parse_box(text: str) -> list[float]:
    return parse_numbers(text, 4, "--box")


def parse_point(text: str) -> tuple[float, ...]:
    """``x,y`` (positive) or ``x,y,label`` with label 1 (positive) or 0 (negative)."""
    values = parse_numbers(text, (2, 3), "--point")
    if len(values) == 3 and values[2] not in (0, 1):
        raise InputError(f"--point {text!r}: the label must be 1 (positive) or 0 (negative), got {values[2]:g}")
    return tuple(values[:2]) + ((int(values[2]),) if len(values) == 3 else (1,))


def parse_vertices(text: str, minimum: int, what: str) -> list[tuple[float, float]]:
    """``"x0,y0,x1,y1,..."`` -> ``[(x0, y0), (x1, y1), ...]``, at least ``minimum`` vertices."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{what} {text!r} must be comma-separated numbers x0,y0,x1,y1,...") from None
    if len(values) % 2 or len(values) < 2 * minimum:
        raise InputError(f"{what} {text!r} needs x,y pairs: at least {minimum} vertices, got {len(values)} numbers")
    return list(zip(values[0::2], values[1::2]))


def parse_scribble(text: str) -> tuple[list[tuple[float, float]], bool]:
    """``x0,y0,x1,y1,...[:label]`` (a polyline in pixels; label 1 positive, the default, or 0
    negative) -> (vertices, positive)."""
    line, sep, label = text.partition(":")
    if sep and label.strip() not in ("0", "1"):
        raise InputError(f"--scribble {text!r}: the label after ':' is 1 (positive) or 0 (negative)")
    return parse_vertices(line, 1, "--scribble"), label.strip() != "0"


def parse_lasso(text: str) -> list[tuple[float, float]]:
    """``x0,y0,x1,y1,x2,y2,...``: a closed polygon in pixels, at least 3 vertices."""
    return parse_vertices(text, 3, "--lasso")


def drawn_prompts(scribbles: list, lasso: Optional[list], shape_hw: tuple[int, int]):  # noqa: ANN201
    """Parsed ``--scribble`` and ``--lasso`` on an ``(H, W)`` plane -> (clicks ``(x, y, label)``,
    the lasso's ``(H, W)`` bool mask or None), through :mod:`medisam.prompting.shapes` as every
    other client; a vertex off the plane is a one-line error naming the option."""
    from medisam.cli.checks import named
    from medisam.prompting.shapes import lasso_mask, scribble_points

    clicks: list[tuple[float, float, int]] = []
    for vertices, positive in scribbles:
        with named("--scribble"):
            pts = scribble_points(vertices, shape_hw, positive)
        clicks += [(float(x), float(y), int(lab)) for (x, y), lab in zip(pts.coords.tolist(), pts.labels.tolist())]
    if lasso is None:
        return clicks, None
    with named("--lasso"):
        return clicks, lasso_mask(lasso, shape_hw)


def parse_window(text: Optional[str]) -> str | tuple[float, float] | None:
    """A preset name or ``WIDTH,LEVEL``, checked now (not after the model loaded):
    :func:`medisam.io.window.parse_window` with the option's name in its messages."""
    from medisam.io.window import parse_window as parse

    return parse(text, "--window")


def box_window(array, modality: str, region: Optional[tuple]) -> Optional[tuple[float, float]]:  # noqa: ANN001
    """:func:`medisam.io.intensity.ct_box_window` (a CT in HU prompted without ``--window`` is windowed on
    the prompt box's voxels), said on stderr when it chose one."""
    from medisam.io.intensity import ct_box_window

    window = ct_box_window(array, modality, region)
    if window is not None:
        typer.echo(f"window: width {window[0]:.0f}, level {window[1]:.0f} (the prompt box's voxels, 0.5-99.5 "
                   "percentiles, at least 400 HU wide; --window sets one)", err=True)
    return window


def box_region(boxes: list, leading: tuple = ()) -> Optional[tuple]:
    """Index slices of the pixels in the union of ``boxes`` (``x0, y0, x1, y1``), after ``leading``
    indices (a slice number); None without a box."""
    if not boxes:
        return None
    x0, y0 = (max(int(min(b[i] for b in boxes)), 0) for i in (0, 1))
    x1, y1 = (math.ceil(max(b[i] for b in boxes)) + 1 for i in (2, 3))
    return (*leading, slice(y0, y1), slice(x0, x1))


def parse_axis(text: Optional[str]) -> Optional[int]:
    """``k|j|i`` or ``0|1|2`` (also ``z|y|x``) -> array axis; ``None`` stays ``None`` (not given)."""
    from medisam.io.medical_image import AXIS_NAMES

    if text is None:
        return None
    key = str(text).strip().lower()
    if key not in AXIS_NAMES:
        raise InputError(f"--axis must be k, j, i or 0, 1, 2; got {text!r}")
    return AXIS_NAMES[key]


def read_options(max_voxels: Optional[int]) -> dict:
    """``--max-voxels`` -> ``read_image`` keyword arguments (absent: default, 0: no limit)."""
    if max_voxels is None:
        return {}
    return {"max_voxels": None if max_voxels == 0 else max_voxels}


def read_input(path: Path, **kwargs):  # noqa: ANN201 - a MedicalImage
    """``medisam.io.read_image`` with the C libraries' own stderr lines held (libpng, MetaIO, OpenCV's
    TIFF reader print them before medisam's one ``error:`` line): dropped when the read fails, the
    error says it; passed on when it succeeds. A CLI process reads on one thread; the server does not
    do this (stderr is the process's, shared by its threads). ``MEDISAM_DEBUG`` shows them as they come."""
    import os
    import sys
    import tempfile

    from medisam.io import read_image

    if os.environ.get("MEDISAM_DEBUG"):
        return read_image(path, **kwargs)
    sys.stderr.flush()
    real = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            image = read_image(path, **kwargs)
        finally:
            sys.stderr.flush()
            os.dup2(real, 2)
            os.close(real)
        held.seek(0)
        said = held.read()
    if said:
        os.write(2, said)
    return image


def model_options(backend: str, precision: Optional[str], threads: Optional[int]) -> dict:
    """``--backend/--precision/--threads`` -> ``load_model`` keyword arguments.

    Checked before any input is read, so a typo fails at once with a one-line error.
    """
    from medisam.models.backends import BACKENDS
    from medisam.models.precision import PRECISIONS

    if backend not in (*BACKENDS, "auto"):
        raise ModelError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKENDS)} or auto")
    if precision is not None and precision not in PRECISIONS:
        raise ModelError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    return {"backend": backend, "precision": precision, "threads": threads}


def load(model: str, checkpoint: Optional[Path], device: str, runtime: dict):
    """Load a model with a progress line; name how it runs when --backend/--precision/--threads were set."""
    from medisam.cli.progress import step

    with step(f"loading model {model}"):
        from medisam.models import load_model

        net = load_model(model, checkpoint=checkpoint, device=device, **runtime)
    if (runtime["backend"], runtime["precision"] or "fp32", runtime["threads"]) != ("torch", "fp32", None):
        typer.echo(describe_model(net), err=True)
    return net


def describe_model(model) -> str:
    """One line naming the model and how it runs (backend, precision, device)."""
    return (f"model {model.name}: backend {getattr(model, 'backend', 'torch')}, "
            f"precision {getattr(model, 'precision', 'fp32')}, device {model.device}")


LabelNameOpt = typer.Option([], "--label-name", help="DICOM-SEG segment name with SNOMED CT codes and colour, e.g. "
                            "liver; V=name names label V, a bare name the next object; repeatable.")
LabelsOpt = typer.Option(None, "--labels", help="DICOM-SEG segment meanings: JSON mapping label value -> name or "
                         "{name, category, type, color} (docs/dicom_seg.md).")


def segment_meanings(names: list[str], labels: Optional[Path], output: Path, first_label: int = 1) -> dict:
    """``--label-name``/``--labels`` -> label value -> SegmentMeaning (checked before any pixel is read)."""
    if not names and labels is None:
        return {}
    if not output.name.lower().endswith(".dcm"):
        raise InputError("--label-name/--labels name DICOM-SEG segments; write -o *.dcm or drop them")
    from medisam.io.segment_meaning import from_options

    return from_options(names, labels, first_label)
