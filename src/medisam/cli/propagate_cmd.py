"""``medisam propagate``: segment one object through a volume (or video) from a 3D box or a
prompt on one slice, with a progress bar; writes a label map with the input's geometry."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medisam.cli import common
from medisam.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("propagate")(propagate)


def parse_box3d(text: str) -> list[int]:
    """``i0,j0,k0,i1,j1,k1`` voxel indices (inclusive) -> the 6 integers."""
    values = common.parse_numbers(text, 6, "--box3d")
    if not all(v.is_integer() for v in values):
        raise InputError(f"--box3d {text!r} takes integer voxel indices i0,j0,k0,i1,j1,k1")
    return [int(v) for v in values]


def propagate(
    input: Path = typer.Argument(..., help="Volume (NIfTI/NRRD/MHA), DICOM series folder, npz, or a video."),
    output: Path = typer.Option(..., "--output", "-o", help="Label map: .nii.gz/.nrrd/.mha/.npz/.dcm (DICOM-SEG)."),
    box3d: Optional[str] = typer.Option(None, "--box3d", help="i0,j0,k0,i1,j1,k1: voxel indices as stored "
                                        "(i = column, j = row, k = slice), inclusive; CVPR24 3D-box protocol."),
    slice: Optional[int] = typer.Option(None, "--slice", help="Prompted slice (along --axis) for --box/--point."),
    box: Optional[str] = typer.Option(None, "--box", help="x0,y0,x1,y1 pixels on --slice (x = column)."),
    point: List[str] = typer.Option([], "--point", help="x,y[,label] on --slice (1 positive, 0 negative); repeatable."),
    slices: Optional[str] = typer.Option(None, "--slices", help="K0:K1: with --box, keep the object within slices "
                                         "K0..K1 (inclusive); it stops earlier where the object ends."),
    label: int = typer.Option(1, "--label", help="Label value of the object in the output."),
    axis: str = typer.Option("k", "--axis", help="Slicing axis: k|j|i (or 0|1|2 of the (Z,Y,X) array)."),
    views: int = typer.Option(3, "--views", help="--box3d: 3 = propagate along all three axes and keep the "
                              "voxels two of them agree on (more accurate, ~3x the encoding); 1 = along --axis only."),
    channel: Optional[int] = typer.Option(None, "--channel", help="Volume of a 4D / component of a multi-channel file."),
    series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID when a folder holds several."),
    window: Optional[str] = common.WindowOpt,
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    backend: str = common.BackendOpt,
    precision: str = common.PrecisionOpt,
    threads: Optional[int] = common.ThreadsOpt,
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Folder for one overlay PNG per slice with mask "
                                           "(for a video: an .mp4 file)."),
    max_voxels: Optional[int] = common.MaxVoxelsOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    force: bool = common.ForceOpt,
) -> None:
    """Propagate one object through a volume from --box3d, or from --box/--point on --slice."""
    from medisam.io import read_image
    from medisam.models import load_model
    from medisam.predict.volume import parse_axis

    prompt = _parse_prompts(box3d, slice, box, point, slices)
    runtime = common.model_options(backend, precision, threads)
    if views not in (1, 3):
        raise InputError(f"--views must be 1 or 3, got {views}")
    array_axis = parse_axis(axis)
    win = common.parse_window(window)
    common.check_output(output, force)
    if overlay is not None and overlay.exists() and not overlay.is_dir():
        raise InputError(f"--overlay {overlay} exists and is not a folder")
    if overlay is not None and overlay.is_dir() and any(overlay.iterdir()) and not force:
        raise InputError(f"--overlay folder {overlay} is not empty; pass --force to overwrite")
    image = read_image(input, series_uid=series, channel=channel, **common.read_options(max_voxels))
    if output.resolve() == Path(input).resolve():
        raise InputError(f"output {output} is the input; choose another file")
    if not image.is_volume:
        raise InputError(f"{input} is a 2D image {image.array.shape}; use `medisam segment` for 2D images")
    if image.is_video:
        _video(image, input, prompt, label, model, checkpoint, device, output, overlay, force)
        return
    if image.is_rgb:
        raise InputError(f"{input} is a colour volume {image.array.shape}; pass --channel to pick one channel")
    net = load_model(model, checkpoint=checkpoint, device=device, **runtime)
    labels, n_slices = run_propagation(net, image, prompt, label, array_axis, win, progress, views)
    _write(image, labels, output, overlay, array_axis, win, force)
    n = int((labels.array > 0).sum())
    typer.echo(f"wrote {output} (label {label}: {n} voxels on {n_slices} slices)")


def parse_slices(text: str) -> tuple[int, int]:
    """``K0:K1`` (inclusive slice indices) -> ``(K0, K1)``."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"--slices {text!r} takes two slice indices K0:K1")
    return int(parts[0]), int(parts[1])


def _parse_prompts(box3d, slice, box, point, slices=None) -> dict:
    points = [common.parse_point(p) for p in point] or None
    if slices is not None and box is None:
        raise InputError("--slices bounds the propagation of a --box on --slice (a --box3d has its own range)")
    if box3d is not None:
        if slice is not None or box is not None or points:
            raise InputError("give either --box3d, or --slice with --box/--point, not both")
        return {"box3d": parse_box3d(box3d)}
    if slice is None:
        raise InputError("give --box3d i0,j0,k0,i1,j1,k1, or --slice K with --box and/or --point")
    if box is None and not points:
        raise InputError(f"--slice {slice} needs a --box and/or --point")
    return {"slice": slice, "box": common.parse_box(box) if box is not None else None, "points": points,
            "slices": parse_slices(slices) if slices is not None else None}


def run_propagation(model, image, prompt: dict, label: int, axis: int, window, progress: bool, views: int = 3):
    """Prompt one object, propagate it with a progress bar; return (label map, slices with mask).

    ``views``: axes a 3D box is propagated along and fused (see :class:`PropagationConfig`).
    """
    from medisam.predict.propagation import PropagationConfig
    from medisam.predict.session import VolumeSession

    if model.spec.family == "sam2":  # memory-based tracking; same session API, slices along k only
        from medisam.predict.sam2_session import Sam2Session

        if axis != 0:
            raise InputError(f"{model.name} propagates along k (axis 0) only; drop --axis")
        if prompt.get("slices") is not None:
            raise InputError(f"{model.name} tracks through the whole volume; drop --slices")
        session = Sam2Session(model, image, window=window)
    else:
        session = VolumeSession(model, image, axis=axis, window=window, config=PropagationConfig(views=views))
    if "box3d" in prompt:
        session.add_box3d(prompt["box3d"], obj_id=label)
    else:
        if prompt["box"] is not None:
            session.add_box(prompt["slice"], prompt["box"], obj_id=label, **_range(prompt))
        if prompt["points"]:
            session.add_points(prompt["slice"], prompt["points"], obj_id=label)
    labels = session.propagate("both", progress=progress)
    n_slices = sum(1 for r in session.results(label).values() if r.mask.any())
    return labels, n_slices


def _range(prompt: dict) -> dict:
    """``slices=`` for ``VolumeSession.add_box`` when --slices was given."""
    return {"slices": prompt["slices"]} if prompt.get("slices") is not None else {}


def _write(image, labels, output: Path, overlay: Optional[Path], axis: int, window, force: bool) -> None:
    from medisam.io import write_mask, write_overlay_png
    from medisam.predict.volume import SliceGeometry, volume_to_display

    write_mask(labels, output, reference=image, force=force)
    if overlay is None:
        return
    geometry = SliceGeometry(tuple(image.spatial_shape), axis, tuple(image.spacing_zyx))
    display = volume_to_display(image.array, image.modality, window)[..., None].repeat(3, axis=-1)
    overlay.mkdir(parents=True, exist_ok=True)
    written = 0
    for t in range(geometry.num_slices):
        plane = geometry.take(labels.array, t)
        if plane.any():
            write_overlay_png(geometry.take(display, t), plane, overlay / f"slice_{t:04d}.png", force=force)
            written += 1
    typer.echo(f"wrote {written} overlay PNGs to {overlay}")


def _video(image, input, prompt, label, model, checkpoint, device, output, overlay, force) -> None:
    """Videos are tracked by :func:`medisam.predict.video.propagate_video` (frames = slices)."""
    from medisam.models import load_model
    from medisam.predict.video import propagate_video

    if "box3d" in prompt:
        raise InputError(f"{input} is a video: prompt one frame with --slice F --box/--point, not --box3d")
    if prompt.get("slices") is not None:
        raise InputError(f"{input} is a video: --slices applies to volumes")
    net = load_model(model, checkpoint=checkpoint, device=device)
    propagate_video(image, net, prompt["slice"], prompt["box"], prompt["points"], label, output, overlay, force)
    typer.echo(f"wrote {output}")
