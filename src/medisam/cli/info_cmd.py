"""``medisam info``: shape, spacing, orientation, modality and value range of a file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisam.cli import checks, common


def register(app: typer.Typer) -> None:
    app.command("info")(info)


def info(
    input: Optional[Path] = typer.Argument(None, help="Image, volume, DICOM file/folder, npz or video."),
    series: Optional[str] = common.SeriesOpt,
    channel: Optional[int] = common.ChannelOpt,
    max_voxels: Optional[int] = common.MaxVoxelsOpt,
    backends: bool = typer.Option(False, "--backends", help="Print the inference backends installed, the "
                                  "precisions this machine runs and what --backend auto picks."),
) -> None:
    """Print what medisam reads from a file, in its axis convention (and/or the backends here)."""
    from medisam.io import medical_image

    if backends:
        from rich.console import Console

        from medisam.models.backends import backend_table

        Console(width=200).print(backend_table())
        if input is None:
            return
    if input is None:
        raise common.InputError("give a file to describe, or --backends")
    checks.only_for_dicom(input, series)
    image = common.read_input(input, series_uid=series, channel=channel, **common.read_options(max_voxels))
    a = image.array
    lines = {
        "file": str(input),
        "format": image.source.get("format", "?"),
        "modality": image.modality,
        "kind": "video" if image.is_video else ("volume" if image.is_volume else "2D image"),
        "array shape": f"{a.shape} ({'T,' if image.is_video else ('Z,' if image.is_volume else '')}Y,X{',C' if image.is_rgb else ''})",
        "dtype": str(a.dtype),
        "spacing (x,y[,z]) mm": ", ".join(f"{s:.6g}" for s in image.spacing),
        "origin (x,y[,z]) mm": ", ".join(f"{s:.6g}" for s in image.origin),
        "orientation": medical_image.orientation_code(image.direction, image.spatial_ndim),
        "value range": f"{a.min():.6g} .. {a.max():.6g}",
    }
    if not image.is_video:
        from medisam.io.intensity import default_window

        lines["window (no --window)"] = default_window(a, image.modality, image.is_rgb)
    if image.is_volume and not image.is_video:
        from medisam.predict.volume import ACQUISITION_ANISOTROPY, thick_axis

        axis = thick_axis(image.spacing_zyx)
        lines["--box3d slices along"] = (f"k (no axis is {ACQUISITION_ANISOTROPY:g}x thicker than the others)"
                                         if axis is None else
                                         f"{'kji'[axis]} (the thick axis, {image.spacing_zyx[axis]:.3g} mm)")
    if "fps" in image.source:  # a folder of frames has none
        fps = image.source["fps"]
        lines["frame rate"] = f"{fps:.3g} fps" if fps else "unknown (a folder of frames)"
    padding = image.source.get("pixel_padding")
    if padding:  # DICOM Pixel Padding Value: outside the scan, not part of the value range above
        lo, hi = padding["stored"]
        stored = f"{lo}" if lo == hi else f"{lo} .. {hi}"
        lines["pixel padding"] = (f"{padding['voxels']} voxels (stored {stored}) set to "
                                  f"{padding['set_to']:g}, the lowest real value")
    if image.source.get("frame_geometry"):  # a legacy multi-frame DICOM file: how its frames were placed
        lines["frame placement"] = image.source["frame_geometry"]
    for n, line in enumerate(image.geometry_warnings):
        lines[f"warning {n + 1}" if len(image.geometry_warnings) > 1 else "warning"] = line
    width = max(map(len, lines))
    for key, value in lines.items():
        typer.echo(f"{key:<{width}}  {value}")
