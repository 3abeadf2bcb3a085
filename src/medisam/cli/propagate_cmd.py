"""``medisam propagate``: segment one object through a volume (or video) from a 3D box, a
RECIST line or prompts on one slice (box, points, scribbles, a lasso), with a progress bar;
writes a label map with the input's geometry."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import List, Optional

import typer

from medisam.cli import checks, common
from medisam.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("propagate")(propagate)


def parse_box3d(text: str) -> list[int]:
    """``i0,j0,k0,i1,j1,k1`` voxel indices (inclusive) -> the 6 integers."""
    values = common.parse_numbers(text, 6, "--box3d")
    if not all(v.is_integer() for v in values):
        raise InputError(f"--box3d {text!r} takes integer voxel indices i0,j0,k0,i1,j1,k1")
    return [int(v) for v in values]


def parse_click3d(text: str) -> tuple[int, int, int, bool]:
    """``i,j,k[,label]`` (voxel indices as stored; label 1 positive, 0 negative) -> ``(k, j, i, positive)``."""
    values = common.parse_numbers(text, (3, 4), "--click3d")
    if not all(v.is_integer() for v in values) or (len(values) == 4 and values[3] not in (0, 1)):
        raise InputError(f"--click3d {text!r} takes integer voxel indices i,j,k and an optional label 1 "
                         "(positive) or 0 (negative)")
    i, j, k = (int(v) for v in values[:3])
    return k, j, i, len(values) == 3 or values[3] == 1


def propagate(
    input: Path = typer.Argument(..., help="Volume (NIfTI/NRRD/MHA), DICOM series folder, npz, or a video "
                                 "(file or folder of frames)."),
    output: Path = typer.Option(..., "--output", "-o", help="Label map: .nii.gz/.nrrd/.mha/.npz/.dcm (DICOM-SEG); "
                                "for a video also a folder of PNG frames (no extension)."),
    box3d: Optional[str] = typer.Option(None, "--box3d", help="i0,j0,k0,i1,j1,k1: voxel indices as stored "
                                        "(i = column, j = row, k = slice), inclusive; CVPR24 3D-box protocol."),
    slice: Optional[int] = typer.Option(None, "--slice", help="Prompted slice (along --axis) or video frame for "
                                        "--box/--point."),
    box: Optional[str] = typer.Option(None, "--box", help="x0,y0,x1,y1 pixels on --slice (x = column)."),
    point: List[str] = typer.Option([], "--point", help="x,y[,label] on --slice (1 positive, 0 negative); repeatable."),
    scribble: List[str] = common.ScribbleOpt,
    lasso: Optional[str] = common.LassoOpt,
    recist: Optional[str] = typer.Option(None, "--recist", help="x0,y0,x1,y1: a lesion's long axis (RECIST line, "
                                         "pixels) on --slice K (a k slice); segments the lesion in 3D from the 3D "
                                         "box the line implies (z extent from its length in mm)."),
    slices: Optional[str] = typer.Option(None, "--slices", help="K0:K1: with --box, keep the object within slices "
                                         "K0..K1 (inclusive); it stops earlier where the object ends."),
    label: int = typer.Option(1, "--label", help="Label value of the object in the output."),
    click3d: List[str] = typer.Option([], "--click3d", help="Volumes: after the propagation, a corrective 3D click "
                                      "at voxel i,j,k[,label] (1 positive, 0 negative; in order, repeatable): it "
                                      "refines the whole 3D mask around it (random walker, no re-encoding)."),
    guide: List[Path] = typer.Option([], "--guide", help="Volumes: another image of the same volume on its grid "
                                     "(e.g. T1c beside FLAIR) that the --click3d clicks see; the model does not. "
                                     "Repeatable."),
    track: List[str] = typer.Option([], "--track", help="Video: one more object, F:x0,y0,x1,y1[:label] = its box "
                                    "on frame F where it appears (label: next free); repeatable."),
    axis: Optional[str] = common.AxisOpt,
    views: Optional[int] = typer.Option(None, "--views", help="--box3d only: 3 (default) = propagate along all "
                                        "three axes and keep the voxels two of them agree on (more accurate, at most "
                                        "1.5x the encodings of one axis; the plan is printed first); 1 = along --axis "
                                        "only (default for --box3d: the volume's acquisition axis, the one whose "
                                        "spacing is 1.2x the others', else k)."),
    encode_stride: Optional[int] = typer.Option(None, "--encode-stride", help="Volumes: encode every Nth plane "
                                                "while propagating and interpolate the embeddings between (default: "
                                                "where planes are <= 1.25 mm apart, 4, refined to 2 where the mask "
                                                "moves fast, and 4 for a 3D box's own axis; else 1. 1 = encode every "
                                                "plane). A 3D box's sampled views encode each of their planes."),
    channel: Optional[int] = common.ChannelOpt,
    series: Optional[str] = common.SeriesOpt,
    window: Optional[str] = common.WindowOpt,
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    backend: str = common.BackendOpt,
    precision: Optional[str] = common.PrecisionOpt,
    threads: Optional[int] = common.ThreadsOpt,
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Folder for one overlay PNG per slice with mask "
                                           "(for a video: an .mp4 file)."),
    max_voxels: Optional[int] = common.MaxVoxelsOpt,
    allow_gaps: bool = common.AllowGapsOpt,
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    label_name: List[str] = common.LabelNameOpt,
    labels_json: Optional[Path] = common.LabelsOpt,
    force: bool = common.ForceOpt,
) -> None:
    """Propagate one object through a volume from --box3d, --recist on --slice, or --box/--point/--scribble/--lasso
    on --slice."""
    prompt = _parse_prompts(box3d, slice, box, point, slices, recist, scribble, lasso)
    tracks = [parse_track(t) for t in track]
    clicks = [parse_click3d(c) for c in click3d]
    if guide and not clicks:
        raise InputError("--guide helps --click3d clicks; give at least one --click3d")
    if views is not None and views not in (1, 3):
        raise InputError(f"--views must be 1 or 3, got {views}")
    if encode_stride is not None and encode_stride < 1:
        raise InputError(f"--encode-stride must be >= 1, got {encode_stride}")
    if views is not None and "box3d" not in prompt and "recist" not in prompt:
        raise InputError("--views applies to --box3d and --recist prompts; drop it for --box/--point prompts")
    if "recist" in prompt and common.parse_axis(axis) not in (None, 0):
        raise InputError("--recist is drawn on a k slice (axis 0); drop --axis")
    if label < 1 or label > 65535:
        raise InputError(f"--label must be 1..65535, got {label}")
    array_axis = common.parse_axis(axis)
    win = common.parse_window(window)
    checks.only_for_dicom(input, series)
    checks.paths_apart([input, checkpoint, *guide], [("-o", output), ("--overlay", overlay)])
    checks.readable_input(input)
    video = _is_video(input)
    if video:
        _check_video_args(prompt, output, overlay, array_axis, window, force, bool(clicks or guide))
    else:  # the overlay's kind (folder or video file) waits until the input's kind is known
        checks.mask_format(output, volume=None, dicom=checks.is_dicom_input(input))  # PNG: once 2D is ruled out
        checks.new_file(output, force)
        _header_checks(input, prompt, array_axis, channel, clicks, output)
    segments = common.segment_meanings(label_name, labels_json, output, first_label=label)

    image = common.read_input(input, series_uid=series, channel=channel, **common.read_options(max_voxels))
    checks.geometry(image, allow_gaps)
    if not image.is_volume:
        raise InputError(f"{input} is a 2D image {image.array.shape}; use `medisam segment` for 2D images")
    _image_checks(image, input, prompt, array_axis, output, clicks)
    checks.window_units(win, image, input)
    if image.is_video and not video:  # e.g. a DICOM cine: a video after all
        _check_video_args(prompt, output, overlay, array_axis, window, force, bool(clicks or guide))
    elif not image.is_video:
        _overlay_folder(overlay, force)
    guides = _read_guides(guide, image, max_voxels)
    runtime = common.model_options(backend, precision, threads)  # imports torch: after the cheap checks
    checks.checkpoint_file(checkpoint)  # a PNG or a text file given as --checkpoint: before the model's step
    if image.is_video and encode_stride is not None:
        raise InputError("--encode-stride is for volumes; video frames are each encoded")
    if image.is_video:
        _check_tracks(tracks, image, label)
        _video(image, prompt, label, model, checkpoint, device, runtime, output, overlay, force, tracks,
               not no_progress)
        return
    if track:
        raise InputError("--track is for videos; a volume takes one object per run")
    if image.is_rgb:
        raise InputError(f"{input} is a colour volume {image.array.shape}; pass --channel to pick one channel")
    if win is None:
        win = _prompt_window(prompt, image, array_axis)
    net = common.load(model, checkpoint, device, runtime)
    session_axis = array_axis if array_axis is not None else _box3d_axis(prompt, image)
    labels, n_slices = run_propagation(net, image, prompt, label, session_axis, win, not no_progress, views or 3,
                                       encode_stride, clicks, guides)
    _write(image, labels, output, overlay, array_axis or 0, win, force, segments)
    n = int((labels.array > 0).sum())
    typer.echo(f"wrote {output} (label {label}: {n} voxels on {n_slices} slices)")


def _box3d_axis(prompt: dict, image) -> int:  # noqa: ANN001 - a MedicalImage
    """The axis a ``--box3d`` without ``--axis`` is propagated along: the volume's acquisition axis
    (a sagittal case's planes with square pixels: a spleen's box Dice 0.716 -> 0.913, 93 -> 53 s, stop
    49), for every model (SAM 2's frames are then the acquired slices, as an axial scan's, not planes
    squashed by the thick spacing); 0 otherwise (slice prompts count along k)."""
    from medisam.predict.volume import acquisition_axis

    if "box3d" not in prompt:
        return 0
    return acquisition_axis(image.spacing_zyx)


def _prompt_window(prompt: dict, image, axis: Optional[int]):  # noqa: ANN001 - a MedicalImage
    """:func:`common.box_window` on the prompt's box: its 3D box, a RECIST line's box, or a box on a k
    slice; None for point prompts and a slice box on another axis."""
    from medisam.predict.volume import as_box3d
    from medisam.prompting.shapes import recist_to_box3d

    if "box3d" in prompt:
        b = as_box3d(prompt["box3d"])
    elif "recist" in prompt:
        b = recist_to_box3d(prompt["recist"], prompt["slice"], image.spatial_shape, image.spacing_zyx)
    else:  # a box on a k slice, else a lasso's extent there
        boxes = [prompt["box"]] if prompt.get("box") is not None else _extent(prompt.get("lasso"))
        on_k = bool(boxes) and axis in (None, 0)
        region = common.box_region(boxes, (prompt["slice"],)) if on_k else None
        return common.box_window(image.array, image.modality, region)
    region = common.box_region([(b.x0, b.y0, b.x1, b.y1)], (slice(b.z0, b.z1 + 1),))
    return common.box_window(image.array, image.modality, region)


def _extent(polygon: Optional[list]) -> list:
    """``[[x0, y0, x1, y1]]`` around a --lasso's vertices, else []."""
    if not polygon:
        return []
    xs, ys = [v[0] for v in polygon], [v[1] for v in polygon]
    return [[min(xs), min(ys), max(xs), max(ys)]]


def _is_video(input: Path) -> bool:
    from medisam.io.video import VIDEO_EXTENSIONS, is_frame_folder

    p = Path(input)
    if p.is_file() and checks.is_dicom_input(p):
        from medisam.io.read_dicom import is_dicom_cine

        return is_dicom_cine(p)
    return p.name.lower().endswith(VIDEO_EXTENSIONS) or (p.is_dir() and is_frame_folder(p))


def _check_video_args(prompt: dict, output: Path, overlay: Optional[Path], axis: Optional[int],
                      window: Optional[str], force: bool, clicks3d: bool = False) -> None:
    """What a video accepts: a prompt on one frame, frames along time, mask folder/.npz/.nii.gz, .mp4 overlay."""
    if clicks3d:
        raise InputError("--click3d and --guide are for volumes, not videos")
    if "box3d" in prompt or "recist" in prompt:
        raise InputError("the input is a video: prompt one frame with --slice F --box/--point/--lasso, "
                         "not --box3d/--recist")
    if prompt.get("slices") is not None:
        raise InputError("the input is a video: --slices applies to volumes")
    if axis not in (None, 0):
        raise InputError("--axis: a video is tracked along time (frames); drop --axis")
    if window is not None:
        raise InputError("--window applies to volumes; video frames are shown as recorded")
    _video_outputs(output, overlay, force)


def _video_outputs(output: Path, overlay: Optional[Path], force: bool, inputs=()):
    """The video output policy (:mod:`medisam.io.video_output`) in CLI words."""
    from medisam.io.video_output import VideoOutputs

    with checks.named("-o"):
        VideoOutputs.check(output, None, force=force, inputs=inputs)
    with checks.named("--overlay"):
        return VideoOutputs.check(output, overlay, force=force, inputs=inputs)


def _overlay_folder(overlay: Optional[Path], force: bool) -> None:
    """A volume's --overlay: a new folder of PNGs, never a video file name (``ovl.mp4`` became a
    folder of that name); a video's overlay is checked by :func:`_video_outputs`."""
    from medisam.io.video import VIDEO_EXTENSIONS

    if overlay is not None and overlay.name.lower().endswith(VIDEO_EXTENSIONS):
        raise InputError(f"--overlay {overlay}: the overlay of a volume is a folder of PNGs (one per slice); "
                         f"give a folder name without {overlay.suffix} (video overlays are for video inputs)")
    checks.new_folder(overlay, force, "--overlay")


def _header_checks(input: Path, prompt: dict, axis: Optional[int], channel: Optional[int],
                   clicks: list = (), output: Optional[Path] = None) -> None:
    """The header against the options (no pixels read): a volume, its channel, the prompt, the
    clicks, and ``output`` a volume's mask format (after the 2D check: a 2D input is told to use
    ``segment`` whatever the -o)."""
    from medisam.io.header import read_header

    header = read_header(input)
    if header is None:
        return
    checks.channel_choice(channel, header.channels, input)
    if not header.is_volume:
        raise InputError(f"{input} is a 2D image {header.shape}; use `medisam segment` for 2D images")
    if output is not None:
        checks.mask_format(output, volume=True, dicom=None)
    _prompt_checks(header.shape, input, prompt, axis)
    _click_checks(header.shape, input, clicks)


def _image_checks(image, input: Path, prompt: dict, axis: Optional[int], output: Path, clicks: list = ()) -> None:
    if not image.is_video:
        checks.dicom_seg_reference(output, image)
    _prompt_checks(image.spatial_shape, input, prompt, axis)
    _click_checks(image.spatial_shape, input, clicks)
    if clicks and not image.is_video:  # a video refuses clicks with its own message
        _click_range_checks(_object_range(prompt, axis or 0, image), axis or 0, clicks)


def _click_checks(shape, input: Path, clicks: list) -> None:
    """Every --click3d voxel inside the ``(Z, Y, X)`` volume."""
    for k, j, i, _ in clicks:
        if not all(0 <= v < n for v, n in zip((k, j, i), shape[:3])):
            raise InputError(f"--click3d {i},{j},{k} lies outside {input}: voxel indices i < {shape[2]}, "
                             f"j < {shape[1]}, k < {shape[0]}")


def _object_range(prompt: dict, axis: int, image) -> tuple[int, int] | None:
    """The object's slice range along ``axis`` that the prompt sets (None: the whole volume):
    a 3D box's or a RECIST lesion box's extent, or --slices. (``SliceGeometry.box3d_to_plane``
    gives the same range but imports torch, which the checks before the model loads avoid.)"""
    if "recist" in prompt:
        from medisam.prompting.shapes import recist_to_box3d

        b = recist_to_box3d(prompt["recist"], prompt["slice"], image.spatial_shape, image.spacing_zyx)
    elif "box3d" in prompt:
        from medisam.prompts import Box3D

        b = Box3D(*prompt["box3d"])
    else:
        return prompt.get("slices")
    return ((b.z0, b.z1), (b.y0, b.y1), (b.x0, b.x1))[axis]


def _click_range_checks(slice_range: tuple[int, int] | None, axis: int, clicks: list) -> None:
    """Every --click3d on a slice of the object's range (the rule a click meets after the
    propagation, checked before the model loads)."""
    if slice_range is None:
        return
    lo, hi = (int(v) for v in slice_range)
    for k, j, i, _ in clicks:
        t = (k, j, i)[axis]
        if not lo <= t <= hi:
            raise InputError(f"--click3d {i},{j},{k} lies on slice {t} along {'kji'[axis]}, outside the object's "
                             f"slice range {lo}..{hi} (set by the prompt); click inside it")


def _read_guides(paths: list[Path], image, max_voxels: Optional[int]) -> list:
    """The --guide images, each checked to lie on ``image``'s voxel grid (before the model loads)."""
    from medisam.predict.axis_session import check_guide

    guides = []
    for k, path in enumerate(paths):
        g = common.read_input(path, modality=image.modality, **common.read_options(max_voxels))
        with checks.named(f"--guide {path}"):
            check_guide(g, image, k)
        guides.append(g)
    return guides


def _prompt_checks(shape, input: Path, prompt: dict, axis: Optional[int]) -> None:
    """The prompt against the volume's shape (3D box inside; slice in range and box/points on it)."""
    if "box3d" in prompt:
        from medisam.prompts import Box3D

        Box3D(*prompt["box3d"]).check_inside(tuple(shape))
        return
    h, w = checks.plane(shape, prompt["slice"], axis, input)
    if prompt.get("slices") is not None:
        lo, hi = prompt["slices"]
        n = shape[axis or 0]
        if hi >= n:
            raise InputError(f"--slices {lo}:{hi} goes past the last slice of {input}: {n} slices along "
                             f"{'kji'[axis or 0]} (0..{n - 1})")
        if not lo <= prompt["slice"] <= hi:
            raise InputError(f"--slice {prompt['slice']} lies outside --slices {lo}:{hi}: the box's slice must be "
                             "in the range")
    if "recist" in prompt:
        from medisam.prompting.shapes import recist_ends, recist_prompt

        with checks.named("--recist"):
            recist_prompt(*recist_ends(prompt["recist"]), (h, w))
        return
    checks.prompts_inside([prompt["box"]] if prompt["box"] is not None else [], prompt["points"], h, w)
    common.drawn_prompts(prompt["scribbles"], prompt["lasso"], (h, w))  # vertices on the slice, polygon not empty


def parse_track(text: str) -> tuple[int, list[float], int | None]:
    """``F:x0,y0,x1,y1[:label]`` (a box on frame F, where the object appears) -> (F, box, label or None)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        frame, box = int(parts[0]), [float(v) for v in parts[1].split(",")]
        label = int(parts[2]) if len(parts) == 3 else None
        if len(box) != 4:
            raise ValueError
    except ValueError:
        raise InputError(f"--track {text!r} must be FRAME:x0,y0,x1,y1 or FRAME:x0,y0,x1,y1:LABEL") from None
    return frame, box, label


def _check_tracks(tracks: list, video, label: int) -> None:  # noqa: ANN001 - a MedicalImage
    """Each ``--track`` against the video before the model loads (they were found after it had):
    its frame in range, its box a box inside the frame, its label 1..65535 and not another's."""
    from medisam.predict.video import track_labels
    from medisam.prompts import Box

    frames, (height, width) = video.num_slices, video.spatial_shape[1:3]
    for frame, box, own in tracks:
        what = f"--track {frame}:{','.join(f'{v:g}' for v in box)}"
        if not 0 <= frame < frames:
            raise InputError(f"{what}: frame {frame} out of range: the video has {frames} frames (0..{frames - 1})")
        with checks.named(f"{what}:"):
            Box.of(box).check_inside(height, width)
        if own is not None and not 1 <= own <= 65535:
            raise InputError(f"{what}: the label must be 1..65535, got {own}")
    with checks.named("--track:"):
        track_labels(tracks, label)  # the ids the tracks will get, as track_video gives them


def parse_slices(text: str) -> tuple[int, int]:
    """``K0:K1`` (inclusive slice indices) -> ``(K0, K1)``."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"--slices {text!r} takes two slice indices K0:K1")
    lo, hi = int(parts[0]), int(parts[1])
    if hi < lo:
        raise InputError(f"--slices {text}: the range is inverted; give K0 <= K1")
    return lo, hi


def _parse_prompts(box3d, slice, box, point, slices=None, recist=None, scribble=(), lasso=None) -> dict:
    points = [common.parse_point(p) for p in point] or None
    scribbles = [common.parse_scribble(t) for t in scribble]
    polygon = common.parse_lasso(lasso) if lasso is not None else None
    drawn = bool(scribbles) or polygon is not None
    if recist is not None:
        if box3d is not None or box is not None or points or drawn or slices is not None:
            raise InputError("give --recist alone with --slice K (not with --box3d, --box, --point, --scribble, "
                             "--lasso or --slices)")
        if slice is None:
            raise InputError("--recist needs --slice K: the slice the line is drawn on")
        return {"recist": common.parse_numbers(recist, 4, "--recist"), "slice": slice}
    if slices is not None and box is None:
        raise InputError("--slices bounds the propagation of a --box on --slice (a --box3d has its own range)")
    if box3d is not None:
        if slice is not None or box is not None or points or drawn:
            raise InputError("give either --box3d, or --slice with --box/--point/--scribble/--lasso, not both")
        return {"box3d": parse_box3d(box3d)}
    if slice is None:
        raise InputError("give --box3d i0,j0,k0,i1,j1,k1, or --slice K with --box, --point, --scribble or --lasso "
                         "(or --recist)")
    if box is None and not points and not drawn:
        raise InputError(f"--slice {slice} needs a --box, --point, --scribble or --lasso")
    if box is None and not drawn:
        checks.positive_point(points)
    if box is not None and polygon is not None:
        raise InputError("give --lasso or --box on the slice, not both: the lasso is the object's mask there")
    return {"slice": slice, "box": common.parse_box(box) if box is not None else None, "points": points,
            "slices": parse_slices(slices) if slices is not None else None, "scribbles": scribbles,
            "lasso": polygon}


def run_propagation(model, image, prompt: dict, label: int, axis: int, window, progress: bool, views: int = 3,
                    encode_stride: int | None = None, clicks: list = (), guides: list = ()):
    """Prompt one object, propagate it with a progress bar, then apply the 3D ``clicks``
    (``(k, j, i, positive)``, seeing ``guides``); return (label map, slices with mask).

    ``views``: axes a 3D box is propagated along and fused; ``encode_stride``: planes between
    encoded ones (None: auto); see :class:`PropagationConfig`.
    """
    from medisam.predict.propagation import PropagationConfig
    from medisam.predict.session import VolumeSession

    corrections: list[tuple[int, int, int, bool]] = []  # --scribble clicks on a --box/--lasso result: (z, y, x, +)

    if model.spec.supports_memory_propagation:  # SAM 2: same session API, frames along ``axis``
        from medisam.predict.sam2_session import Sam2Session

        if prompt.get("slices") is not None:
            raise InputError(f"{model.name} tracks through the whole volume; drop --slices")
        if clicks:
            raise InputError(f"--click3d: 3D clicks are not available for {model.name} yet")
        session = Sam2Session(model, image, axis=axis, window=window)
    else:
        config = PropagationConfig(views=views, encode_stride=encode_stride)
        session = VolumeSession(model, image, axis=axis, window=window, config=config, guides=guides)
    if "box3d" in prompt:
        session.add_box3d(prompt["box3d"], obj_id=label)
    elif "recist" in prompt:
        from medisam.prompting.shapes import recist_to_box3d

        b3 = recist_to_box3d(prompt["recist"], prompt["slice"], image.spatial_shape, image.spacing_zyx)
        session.add_box3d(b3, obj_id=label, drawn_on=prompt["slice"])  # the line's box bounds it on its slice only
    else:  # as InteractiveSession.segment: the lasso's mask or the box, then the clicks
        k = prompt["slice"]
        on_k, lasso = common.drawn_prompts(prompt["scribbles"], prompt["lasso"], session.plane_hw)
        if lasso is not None or prompt["box"] is not None:  # scribbles correct its result (as the server's)
            if on_k and model.spec.supports_memory_propagation:
                raise InputError(f"--scribble with --box/--lasso corrects with 3D clicks, not available for "
                                 f"{model.name} yet; give the scribble alone or drop it")
            rows, cols = (a for a in range(3) if a != axis)  # the plane's array axes
            for x, y, lab in on_k:
                zyx = [k, k, k]
                zyx[rows], zyx[cols] = int(y), int(x)
                corrections.append((*zyx, lab == 1))
            on_k = []
        if lasso is not None:
            session.add_mask(k, lasso, obj_id=label)
        elif prompt["box"] is not None:
            session.add_box(k, prompt["box"], obj_id=label, **_range(prompt))
        if prompt["points"] or on_k:
            session.add_points(k, [*(prompt["points"] or []), *on_k], obj_id=label)
    if not progress:  # the cost before the work, bar or not (run_to_end prints it with its bar)
        for line in session.plan_lines("both"):
            typer.echo(line, err=True)
    labels = session.propagate("both", progress=progress)
    if corrections:
        with session.step():  # one undo step, as the server's scribble
            for positive, run in itertools.groupby(corrections, key=lambda c: c[3]):  # a scribble: one solve
                session.add_clicks([c[:3] for c in run], positive=positive, obj_id=label)
        typer.echo(f"--scribble: {len(corrections)} corrective 3D click(s) on slice {prompt['slice']}", err=True)
    for k, j, i, positive in clicks:
        out = session.add_click((k, j, i), positive=positive, obj_id=label)
        sign = "positive" if positive else "negative"
        typer.echo(f"--click3d {i},{j},{k} ({sign}): " + ("rejected (nothing changed)" if out.rejected else
                   f"{len(out.changed)} slice(s) changed"), err=True)
    if not clicks and not corrections:
        return labels, sum(1 for r in session.results(label).values() if r.mask.any())
    labels = session.label_map()
    return labels, int(session.geometry.labelled_slices(labels.array).sum())


def _range(prompt: dict) -> dict:
    """``slices=`` for ``VolumeSession.add_box`` when --slices was given."""
    return {"slices": prompt["slices"]} if prompt.get("slices") is not None else {}


def _write(image, labels, output: Path, overlay: Optional[Path], axis: int, window, force: bool,
           segments: Optional[dict] = None) -> None:
    from medisam.io import write_mask, write_overlay_png
    from medisam.predict.volume import SliceGeometry, volume_to_display

    write_mask(labels, output, reference=image, force=force, segments=segments)
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


def _video(image, prompt, label, model, checkpoint, device, runtime, output, overlay, force, tracks=(),
           progress: bool = True) -> None:
    """Videos: :func:`medisam.predict.video.track_video` (frames = slices), then the outputs
    checked before it are written by :mod:`medisam.io.video_output`."""
    from medisam.io.video_output import video_inputs
    from medisam.predict.video import track_video

    outputs = _video_outputs(output, overlay, force, video_inputs(image))
    net = common.load(model, checkpoint, device, runtime)
    clicks, lasso = common.drawn_prompts(prompt["scribbles"], prompt["lasso"], tuple(image.spatial_shape[1:3]))
    points = [*(prompt["points"] or []), *clicks] or None
    ends: list[str] = []  # where tracks ended (lost, left the view, divided, merged), said after the files
    labels = track_video(image, net, prompt["slice"], prompt["box"], points, label, tracks, progress, mask=lasso,
                         on_plan=lambda line: typer.echo(line, err=True),  # the cost before the work, bar or not
                         on_notice=ends.append)
    outputs.write(image, labels)
    if output.is_dir():
        typer.echo(f"wrote {output} ({labels.array.shape[0]} PNG mask frames)")
    else:
        typer.echo(f"wrote {output}")
    for line in ends:
        typer.echo(line)
    if overlay is not None:
        typer.echo(f"wrote {overlay}")
