"""Checks every command runs before loading a model: paths, output formats, prompt geometry.

All of them are cheap (no pixels decoded, no torch imported) and raise a one-line
:class:`~medisam.errors.InputError` / :class:`~medisam.errors.PromptError`, so a mistake
is reported in a second instead of after the model loaded and the image was encoded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from medisam.errors import InputError, MedisamError, PromptError

Named = Sequence[tuple[str, Optional[Path]]]


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def paths_apart(inputs: Iterable[Optional[Path]], outputs: Named) -> None:
    """Refuse an output that is an input, holds an input or lies in an input folder; or two equal outputs.

    ``outputs`` are ``(option name, path)`` pairs such as ``("-o", out)``, ``("--overlay", png)``;
    ``None`` paths are skipped. Links are followed (``resolve``/``samefile``).
    """
    ins = [_resolved(p) for p in inputs if p is not None]
    outs = [(name, _resolved(p)) for name, p in outputs if p is not None]
    for name, out in outs:
        for inp in ins:
            if _same(out, inp):
                raise InputError(f"{name} {out} is an input; choose another path (inputs are never overwritten)")
            if inp in out.parents:
                raise InputError(f"{name} {out} lies inside the input folder {inp}; choose a path outside it")
            if out in inp.parents:
                raise InputError(f"{name} {out} holds the input {inp}; choose another folder")
    for i, (name, out) in enumerate(outs):
        for other, out2 in outs[i + 1:]:
            if out == out2:
                raise InputError(f"{name} and {other} are the same path {out}; give each output its own")


#: Library keyword spellings in error messages -> the CLI flags that set them.
FLAG_NAMES = (("force=True", "--force"), ("resume=True", "--resume"), ("max_voxels=None", "--max-voxels 0"),
              ("max_pixels=None", "--max-voxels 0"), ("box or point (boxes=, points=)", "--box or --point"),
              ("slice=K", "--slice K"), ("workers must", "--workers must"), ("series_uid=...", "--series UID"))


def cli_message(message: str) -> str:
    """A library error message in CLI words (``pass force=True`` reads ``pass --force``)."""
    for keyword, flag in FLAG_NAMES:
        if flag not in message:  # some messages name both already
            message = message.replace(keyword, flag)
    return message


@contextlib.contextmanager
def named(option: str) -> Iterator[None]:
    """Prefix a library check's one-line error with the option it concerns (``-o``, ``--overlay``)."""
    try:
        yield
    except MedisamError as exc:
        raise type(exc)(f"{option} {cli_message(str(exc))}") from None


def new_file(path: Optional[Path], force: bool, option: str = "-o") -> None:
    """An output file: not a folder, and existing only with ``--force`` (:func:`check_output`)."""
    from medisam.io.atomic import check_output

    if path is not None:
        with named(option):
            check_output(path, force=force)


def new_folder(path: Optional[Path], force: bool, option: str = "-o") -> None:
    """An output folder: not a file, and not holding files unless ``--force`` (:func:`check_output`)."""
    from medisam.io.atomic import check_output

    if path is not None:
        with named(option):
            check_output(path, force=force, folder=True)


def mask_format(path: Path, *, volume: Optional[bool], dicom: Optional[bool]) -> str:
    """The mask writer's extension for ``path``; refuses formats that cannot hold the result.

    ``volume``/``dicom``: whether the input is a volume / read from DICOM (None: not known yet).
    """
    from medisam.io.write_mask import mask_extension

    ext = mask_extension(path)
    if ext == ".png" and volume:
        raise InputError(f"-o {path}: a PNG holds one 2D mask but the input is a volume; "
                         "use .nii.gz, .nrrd, .mha, .npz or .dcm")
    if ext == ".dcm" and dicom is False:
        raise InputError(f"-o {path}: DICOM-SEG output needs a DICOM input; use .nii.gz, .nrrd, .mha or .npz")
    return ext


def dicom_seg_reference(output: Path, image) -> str:  # noqa: ANN001 - a MedicalImage
    """:func:`mask_format` on a read image, and a ``.dcm`` output refused now (before the model runs)
    where ``image`` cannot take a DICOM-SEG (:func:`medisam.io.write_seg.seg_reference_problem`)."""
    ext = mask_format(output, volume=image.is_volume, dicom=bool(image.source.get("dicom_files")))
    if ext == ".dcm":
        from medisam.io.write_seg import seg_reference_problem

        problem = seg_reference_problem(image)
        if problem is not None:
            raise InputError(f"-o {output}: {problem}")
    return ext


def readable_input(input: Path) -> None:
    """The input exists and has a reader (:func:`medisam.io.read.input_reader`; no pixel read), told
    before the outputs are looked at: ``propagate clip.gif -o masks`` said the folder ``masks`` was an
    unsupported mask format."""
    from medisam.io.read import input_reader

    input_reader(Path(input))


def is_dicom_input(path: Path) -> bool:
    """A folder (DICOM series) or a file with the DICOM preamble."""
    from medisam.io.read_dicom import is_dicom_file

    path = Path(path)
    return path.is_dir() or (path.is_file() and is_dicom_file(path))


def only_for_dicom(input: Path, series: Optional[str]) -> None:
    """``--series`` means something for DICOM folders only."""
    if series is not None and not Path(input).is_dir():
        raise InputError(f"--series picks a series in a DICOM folder; {input} is a file")


def plane(shape: Sequence[int], slice: Optional[int], axis: Optional[int], input: Path) -> tuple[int, int]:
    """``(height, width)`` of the prompted plane; checks --slice/--axis against the image shape."""
    if len(shape) == 2:
        if slice is not None:
            raise InputError(f"--slice {slice}: {input} is a 2D image ({shape[1]}x{shape[0]}); drop --slice")
        if axis is not None:
            raise InputError(f"--axis: {input} is a 2D image; drop --axis")
        return int(shape[0]), int(shape[1])
    a = axis or 0
    if slice is None:
        raise InputError(f"{input} is a volume of {tuple(shape)} (Z,Y,X): pass --slice 0..{shape[a] - 1}")
    if not 0 <= slice < shape[a]:
        raise InputError(f"--slice {slice} is out of range 0..{shape[a] - 1} along axis {'kji'[a]} of {input}")
    h, w = [int(s) for i, s in enumerate(shape) if i != a]
    return h, w


def prompts_inside(boxes: Sequence, points: Optional[Sequence], height: int, width: int) -> None:
    """Every box well formed and inside the plane, every point inside it."""
    from medisam.prompts import Box, Points

    for b in boxes:
        Box.of(b).check_inside(height, width)
    if points:
        Points.of(points).check_inside(height, width)


def channel_choice(channel: Optional[int], channels: int, input: Path) -> None:
    """``--channel`` against the number of components/volumes the header reports."""
    if channel is None:
        if channels not in (1, 3, 4):  # grey or colour read as is; anything else needs a choice
            raise InputError(f"{input} has {channels} channels/volumes; choose one with --channel 0..{channels - 1}")
        return
    if channel < 0 or channel >= max(channels, 1) or (channels == 1 and channel != 0):
        raise InputError(f"--channel {channel} is out of range: {input} has {channels} channel(s) "
                         f"(0..{channels - 1})")


def header_checks(input: Path, *, boxes: Sequence = (), points: Optional[Sequence] = None,
                  slice: Optional[int] = None, axis: Optional[int] = None, channel: Optional[int] = None,
                  output: Optional[Path] = None) -> None:
    """All checks the file header allows, before any pixel is decoded (no-op for other formats)."""
    from medisam.io.header import read_header

    header = read_header(input)
    if header is None:
        return
    channel_choice(channel, header.channels, input)
    if output is not None:
        mask_format(output, volume=header.is_volume, dicom=False)
    if boxes or points:
        h, w = plane(header.shape, slice, axis, input)
        prompts_inside(boxes, points, h, w)


def image_checks(image, input: Path, *, boxes: Sequence = (), points: Optional[Sequence] = None,
                 slice: Optional[int] = None, axis: Optional[int] = None, output: Optional[Path] = None) -> None:
    """The same checks on a read image (formats without a cheap header), still before the model."""
    if output is not None:
        dicom_seg_reference(output, image)
    if boxes or points or slice is not None:
        h, w = plane(image.spatial_shape, slice, axis, input)
        if boxes or points:
            prompts_inside(boxes, points, h, w)


def not_prompted(boxes: Sequence, points: Optional[Sequence]) -> None:
    if not boxes and not points:
        raise PromptError("give at least one --box or --point (or --scribble, --lasso, --mask)")
    if not boxes:  # with a box, negative points refine its mask (they were refused, naming the box as missing)
        positive_point(points)


def positive_point(points: Optional[Sequence]) -> None:
    """Points alone need a positive one: negative points say only where the object is not (a box-trained
    model's points are answered with a box searched around the positive ones, medisam.predict.point_box)."""
    if points and not any(int(p[2]) == 1 for p in points):
        raise PromptError("every --point is negative (label 0): add a positive point (x,y) on the object, or a --box")


def window_units(window, image, input: Path) -> None:  # noqa: ANN001 - parse_window's value, a MedicalImage
    """Print a ``warning:`` line when a named ``--window`` (a CT preset in Hounsfield units) is given an
    image that is not in HU (the rule and the sentence: :func:`medisam.io.window.hu_window_warning`,
    which the server and the web UI give too)."""
    from medisam.io.window import hu_window_warning

    line = hu_window_warning(window, image, input.name, what="--window", instead="leave --window out")
    if line is not None:
        print(f"warning: {line}", file=sys.stderr)


def geometry(image, allow_gaps: bool) -> None:  # noqa: ANN001 - a MedicalImage
    """Refuse a volume whose slice geometry the reader flagged (gaps, skipped files, uneven
    positions), unless ``--allow-gaps``: then print each problem as a ``warning:`` line."""
    problems = image.geometry_warnings
    if not problems:
        return
    if not allow_gaps:
        raise InputError(f"{'; '.join(problems)}; a mask written against this volume would be misplaced: "
                         "fix the series, or pass --allow-gaps to write it anyway")
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)


def checkpoint_file(checkpoint: Optional[Path]) -> None:
    """``--checkpoint`` exists and looks like a torch.save file (not a PNG, a text file, a cut-short zip):
    :func:`medisam.models.checkpoint.check_checkpoint_file`, told before the model's load and its
    progress line. Imports torch: run it after the cheap checks."""
    if checkpoint is None:
        return
    from medisam.models.checkpoint import check_checkpoint_file

    check_checkpoint_file(checkpoint)
