"""``medisam segment``: box/point/scribble/lasso prompts (or ``--everything``, none) on a 2D image or one
slice -> label map file.

Order of work: options, output paths and formats, the image header against the prompts
(no pixels decoded), the pixels, and only then the model; so every mistake costs a second.
"""

from __future__ import annotations

from builtins import slice as builtins_slice  # the option ``slice`` shadows the builtin
from pathlib import Path
from typing import List, Optional

import typer

from medisam.cli import checks, common
from medisam.cli.progress import step


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)


def segment(
    input: Path = typer.Argument(..., help="Image, volume (NIfTI/NRRD/MHA), DICOM file/folder or npz."),
    output: Path = typer.Option(..., "--output", "-o", help="Mask file: .png (2D; one object 0/255, several a "
                                "palette PNG)/.nii.gz/.nrrd/.mha/.npz/.dcm (DICOM-SEG)."),
    box: List[str] = typer.Option([], "--box", help="x0,y0,x1,y1 in pixels (x = column); repeat for label 1, 2, ..."),
    point: List[str] = typer.Option([], "--point", help="x,y[,label] (label 1 positive, 0 negative); repeatable."),
    scribble: List[str] = common.ScribbleOpt,
    lasso: Optional[str] = common.LassoOpt,
    mask: Optional[Path] = typer.Option(None, "--mask", help="Earlier mask on the same grid (PNG as medisam writes "
                                        "it, or any label map): each label's bounding box prompts that label again."),
    everything: bool = typer.Option(False, "--everything", help="No prompt: everything mode (a grid of prompts) "
                                    "labels every object it finds, one label per mask."),
    crop_layers: int = typer.Option(0, "--crop-layers", help="With --everything: also run the grid on N layers of "
                                    "zoomed crops, for small objects such as nuclei (0-3; N=2: 1+4+16 = 21 "
                                    "encodings instead of 1)."),
    points_per_side: int = common.PointsPerSideOpt,
    slice: Optional[int] = typer.Option(None, "--slice", help="Slice index for volumes (along --axis); the "
                                        "frame of a video (MP4/AVI, DICOM cine, a folder of frames)."),
    axis: Optional[str] = common.AxisOpt,
    channel: Optional[int] = common.ChannelOpt,
    series: Optional[str] = common.SeriesOpt,
    window: Optional[str] = common.WindowOpt,
    model: str = common.ModelOpt,
    checkpoint: Optional[Path] = common.CheckpointOpt,
    device: str = common.DeviceOpt,
    backend: str = common.BackendOpt,
    precision: Optional[str] = common.PrecisionOpt,
    threads: Optional[int] = common.ThreadsOpt,
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="Also write an overlay PNG for people."),
    max_voxels: Optional[int] = common.MaxVoxelsOpt,
    allow_gaps: bool = common.AllowGapsOpt,
    label_name: List[str] = common.LabelNameOpt,
    labels_json: Optional[Path] = common.LabelsOpt,
    force: bool = common.ForceOpt,
) -> None:
    """Segment objects from box/point/scribble/lasso prompts; the i-th --box gets label i."""
    boxes = [common.parse_box(b) for b in box]
    points = [common.parse_point(p) for p in point] or None
    scribbles = [common.parse_scribble(t) for t in scribble]
    polygon = common.parse_lasso(lasso) if lasso is not None else None
    drawn = bool(scribbles) or polygon is not None
    if drawn and (len(boxes) > 1 or mask is not None):
        raise common.InputError("--scribble and --lasso prompt one object: give at most one --box with them "
                                "(and no --mask)")
    array_axis = common.parse_axis(axis)
    win = common.parse_window(window)
    if mask is not None and boxes:
        raise common.InputError("give either --mask or --box (the mask's labels are the boxes)")
    auto_config = _everything_config(everything, crop_layers, points_per_side,
                                     bool(boxes or points or drawn or mask is not None))
    if mask is None:
        if not drawn and not everything:
            checks.not_prompted(boxes, points)
    elif not mask.is_file():  # a folder was said to be missing
        what = "a folder; give the mask file" if mask.is_dir() else "no such file"
        raise common.InputError(f"--mask {mask}: {what}")
    checks.only_for_dicom(input, series)
    checks.paths_apart([input, mask, checkpoint], [("-o", output), ("--overlay", overlay)])
    checks.readable_input(input)
    checks.mask_format(output, volume=None, dicom=checks.is_dicom_input(input))
    checks.new_file(output, force)
    segments = common.segment_meanings(label_name, labels_json, output)
    if overlay is not None:
        if not overlay.name.lower().endswith(".png"):
            raise common.InputError(f"--overlay {overlay}: the overlay is a PNG picture; name it *.png")
        checks.new_file(overlay, force, "--overlay")
    checks.header_checks(input, boxes=boxes, points=points, slice=slice, axis=array_axis, channel=channel,
                         output=output)

    image = common.read_input(input, series_uid=series, channel=channel, **common.read_options(max_voxels))
    checks.geometry(image, allow_gaps)
    frame_png = image.is_video and _frame_checks(image, input, output, slice, array_axis)
    labels_in = None
    if mask is not None:
        checks.plane(image.spatial_shape, slice, array_axis, input)  # --slice given for a volume, in range
        boxes, labels_in = _mask_boxes(mask, image, slice, array_axis)
        if points and len(boxes) > 1:
            raise common.InputError(f"--point refines one object; --mask {mask} holds {len(boxes)} labels")
    checks.image_checks(image, input, boxes=boxes, points=points, slice=slice, axis=array_axis,
                        output=None if frame_png else output)  # a video frame's mask is 2D: a PNG holds it
    checks.window_units(win, image, input)
    lasso_mask, corrections = None, []
    if drawn:  # scribbles correct a --box's or --lasso's mask (as the server's), else prompt the model
        clicks, lasso_mask = common.drawn_prompts(scribbles, polygon, checks.plane(image.spatial_shape, slice,
                                                                                   array_axis, input))
        if boxes or lasso_mask is not None:
            corrections = clicks
        else:
            points = [*(points or []), *clicks] or None
    pixels = image.slice2d(slice or 0, array_axis or 0) if image.is_volume else image.array
    if win is None and not image.is_rgb:
        win = common.box_window(pixels, image.modality, common.box_region(boxes or _mask_box(lasso_mask)))
    runtime = common.model_options(backend, precision, threads)  # imports torch: after the cheap checks
    checks.checkpoint_file(checkpoint)  # a PNG or a text file given as --checkpoint: before the model's step
    if auto_config is not None:
        labels, objects = _everything(image, slice, array_axis or 0, win, model, checkpoint, device, runtime,
                                      auto_config)
    else:
        labels, predictor = _run(image, boxes, points, slice, array_axis or 0, win, model, checkpoint, device,
                                 runtime, lasso_mask)
        objects = len(boxes) or 1
    if corrections:
        labels = _correct(predictor, labels, image, slice, array_axis or 0, boxes[0] if boxes else None, corrections)
    if labels_in is not None:  # keep the mask's label values
        import numpy as np

        labels = image.as_labels(np.asarray(labels_in)[labels.array.astype(np.intp)])

    from medisam.io import write_mask, write_overlay_png
    from medisam.io.intensity import to_display

    if frame_png:  # the frame's own 2D mask
        written = write_mask(labels.slice2d(slice, 0), output, force=force, segments=segments)
    else:
        written = write_mask(labels, output, reference=image, force=force, segments=segments)
    n = int((labels.array > 0).sum())
    on = f" on frame {slice}" if image.is_video else ""
    typer.echo(f"wrote {written} ({objects} object(s), {n} foreground pixels{on})")
    if overlay is not None:
        label2d = labels.slice2d(slice or 0, array_axis or 0) if image.is_volume else labels.array
        write_overlay_png(to_display(pixels, image.modality, win), label2d, overlay, force=force)
        typer.echo(f"wrote {overlay}")


def _frame_checks(image, input: Path, output: Path, frame: Optional[int], axis: Optional[int]) -> bool:
    """--slice and --axis on a video (frames along axis 0), said in frames not slices; True when
    ``output`` is a PNG, which holds the prompted frame's 2D mask."""
    from medisam.io.write_mask import mask_extension

    t, (h, w) = image.num_slices, image.spatial_shape[1:3]
    if axis not in (None, 0):
        raise common.InputError(f"--axis: {input} is a video ({t} frames of {w}x{h}); a frame is its only plane, "
                                "drop --axis")
    if frame is None:
        raise common.InputError(f"{input} is a video of {t} frames ({w}x{h}): pass --slice 0..{t - 1}, the frame "
                                "to segment")
    if not 0 <= frame < t:
        raise common.InputError(f"--slice {frame} is out of range: {input} has {t} frames (0..{t - 1})")
    return mask_extension(output) == ".png"


def _run(image, boxes, points, slice, axis, window, model, checkpoint, device, runtime, mask=None):
    """Load the model and segment (the slow part, with progress lines); ``mask``: the --lasso's.
    Returns the label map and the predictor (its image still set, for :func:`_correct`): the model's 2D
    predictor, sam2's image predictor for a SAM 2 model (:func:`~medisam.predict.factory.open_predictor`)."""
    net = common.load(model, checkpoint, device, runtime)
    from medisam.predict.factory import open_predictor
    from medisam.predict.segment import segment_image

    predictor = open_predictor(net)
    with step("encoding the image and decoding the prompts"):
        labels = segment_image(predictor, image, boxes, points, slice=slice, window=window, axis=axis, mask=mask)
    return labels, predictor


def _everything_config(everything: bool, crop_layers: int, points_per_side: int,
                       prompted: bool):  # noqa: ANN202 - AutoMaskConfig | None
    """Everything mode's settings, checked before any pixel is read (None without --everything)."""
    if not everything:
        if crop_layers or points_per_side != common.POINTS_PER_SIDE:
            raise common.InputError("--crop-layers and --points-per-side go with --everything")
        return None
    if prompted:
        raise common.InputError("--everything takes no prompt: drop --box, --point, --scribble, --lasso and --mask")
    from medisam.prompting.automatic import AutoMaskConfig

    return AutoMaskConfig(points_per_side=points_per_side, crop_layers=crop_layers)  # bad values: one-line error


def _everything(image, slice, axis, window, model, checkpoint, device, runtime, config):  # noqa: ANN001, ANN202
    """Everything mode on the image (or slice): ``(label map, objects)``; says the encodings when crops add some."""
    from medisam.prompting.crops import encodings

    if config.crop_layers:
        typer.echo(f"--crop-layers {config.crop_layers}: {encodings(config.crop_layers)} image encodings instead "
                   "of 1", err=True)
    net = common.load(model, checkpoint, device, runtime)
    from medisam.predict import Predictor
    from medisam.prompting.automatic import generate_masks, label_map

    predictor = Predictor(net)
    with step("everything mode: a grid of prompts on the image"):
        predictor.set_image(image, slice=slice, window=window, axis=axis)
        found = None if config.crop_layers else generate_masks(predictor, config)
    if found is None:  # crops take seconds each: a bar over them (on a terminal), not a spinner
        found = generate_masks(predictor, config, progress=True)
    return _on_plane(image, label_map(found), slice, axis), len(found)


def _on_plane(image, plane, slice, axis):  # noqa: ANN001, ANN202 - MedicalImage, (H, W) labels -> MedicalImage
    """The ``(H, W)`` label ``plane`` as the image's label map: itself for a 2D image, else the
    volume's, zero outside slice ``slice`` along ``axis``."""
    import numpy as np

    if not image.is_volume:
        return image.as_labels(plane)
    out = np.zeros(image.spatial_shape, dtype=plane.dtype)
    index = [builtins_slice(None)] * 3
    index[axis] = slice
    out[tuple(index)] = plane
    return image.as_labels(out)


def _correct(predictor, labels, image, slice, axis, box, clicks):  # noqa: ANN001, ANN202 - MedicalImage in, out
    """The --scribble clicks (``(x, y, label)``) as corrective clicks on the object's mask, each run of
    one sign (a scribble's) solved together (:func:`medisam.predict.refine2d.correct_2d`, the server's
    scribble on a prompted object); a click the refined mask does not honour is counted on stderr."""
    import itertools

    import numpy as np

    from medisam.predict.refine2d import correct_2d

    array = np.asarray(labels.array)
    plane = np.take(array, slice, axis=axis) if image.is_volume else array
    model_mask = plane == 1
    current, done, rejected = model_mask, (), 0
    for lab, run in itertools.groupby(clicks, key=lambda c: c[2]):
        pixels = [(int(y), int(x)) for x, y, _ in run]
        out = correct_2d(predictor.display_image, model_mask, current, box, done, pixels, lab == 1)
        if out is None:
            rejected += len(pixels)
            continue
        current, done, missed = out
        rejected += missed
    typer.echo(f"--scribble: {len(clicks) - rejected} corrective click(s) applied, {rejected} rejected", err=True)
    return _on_plane(image, current.astype(array.dtype), slice, axis)


def _mask_box(mask) -> list:  # noqa: ANN001 - an (H, W) bool array or None
    """``[[x0, y0, x1, y1]]`` around a --lasso's mask (the region its CT window is chosen from), else []."""
    if mask is None:
        return []
    from medisam.prompts import Box

    b = Box.from_mask(mask)
    return [[b.x0, b.y0, b.x1, b.y1]]


def _mask_boxes(path: Path, image, slice: Optional[int], axis: Optional[int]):
    """Boxes around each label of an earlier mask on the prompted plane, and their label values.

    Returns ``(boxes, lut)`` where ``lut[i]`` is the label value of box ``i - 1`` (``lut[0] = 0``).
    """
    import numpy as np

    from medisam.io.label_png import read_label_map
    from medisam.prompts import Box

    arr = read_label_map(Path(path))
    if tuple(arr.shape) != tuple(image.spatial_shape):
        raise common.InputError(f"--mask {path} has shape {arr.shape}, the image {image.spatial_shape}")
    plane = np.take(arr, slice, axis=axis or 0) if image.is_volume and slice is not None else arr
    values = [int(v) for v in np.unique(plane) if v != 0]
    if not values:
        raise common.InputError(f"--mask {path} has no labelled pixel on the prompted plane")
    boxes = [Box.from_mask(plane == v) for v in values]
    return [[b.x0, b.y0, b.x1, b.y1] for b in boxes], [0] + values
