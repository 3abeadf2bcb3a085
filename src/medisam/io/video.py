"""Videos: MP4/AVI/MOV/MKV files (PyAV) and folders of frame images, in and out.

A video is a :class:`MedicalImage` with ``is_video=True`` and the array ``(T, Y, X, 3)``
RGB, or ``(T, Y, X)`` when every frame is grey (R = G = B, as ultrasound and microscopy
exports often are); video files decode to uint8, frame folders keep their bit depth.
Spacing is 1 pixel (videos carry no physical size); the third spacing value is 1 frame.
``source["fps"]`` keeps the frame rate (None if unknown).

Label videos are written losslessly (video codecs would blur label values): a folder of
PNG frames (``00000.png``...) or an ``.npz`` through :func:`medisam.io.write_mask`; people get
an overlay MP4 (:func:`write_overlay_video`) at the input frame rate.

Folders: :func:`is_frame_folder` tells a folder of frames (only image files, no ``.dcm``,
no DICOM files) from a DICOM series folder; frames are sorted naturally (``2.png`` before
``10.png``). DICOM multi-frame cine files are read by :mod:`medisam.io.read_dicom`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from medisam.errors import InputError, first_line, require
from medisam.io.atomic import atomic_write, check_output, make_tmp_dir
from medisam.io.intensity import to_display
from medisam.io.label_png import encode_label_png, read_label_png
from medisam.io.limits import check_size
from medisam.io.medical_image import MedicalImage
from medisam.io.overlay import render_overlay
from medisam.io.registry import ReadOptions, register_reader

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_IGNORED = (".md", ".txt", ".json", ".csv")
#: Files an OS leaves in a folder of pictures (Windows' thumbnail cache, folder settings): not frames, not a refusal.
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})


def _video_image(frames: np.ndarray, fps: float | None, source: dict, modality: str | None) -> MedicalImage:
    """Wrap a ``(T, Y, X[, 3])`` stack; RGB frames whose channels are all equal collapse to ``(T, Y, X)``."""
    is_rgb = frames.ndim == 4
    if is_rgb and np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2]):
        frames, is_rgb = np.ascontiguousarray(frames[..., 0]), False
    return MedicalImage(frames, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()),
                        modality=modality or "OT", is_rgb=is_rgb, is_video=True,
                        source={**source, "fps": fps, "num_frames": int(frames.shape[0])})


def read_video_file(path: Path, opts: ReadOptions) -> MedicalImage:
    """Decode every frame of a video file with PyAV (extra ``video``)."""
    av = require("av", "video")
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.* and OSError for broken or non-video files
        raise InputError(f"{path}: cannot read video ({type(exc).__name__}: {first_line(exc, 150)})") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        h, w = stream.codec_context.height, stream.codec_context.width
        if h and w:  # the container's stream size, before any frame is decoded (grey: one channel at least)
            check_size((stream.frames or 1, h, w), path, opts.max_voxels)
        fps = float(stream.average_rate) if stream.average_rate else None
        frames = _Frames()
        try:
            for frame in container.decode(stream):
                if (frame.height, frame.width) != (h, w):
                    if len(frames) or (h and w):
                        raise InputError(f"{path}: frame {len(frames)} is {frame.width}x{frame.height}, "
                                         f"the stream says {w}x{h}")
                    h, w = frame.height, frame.width
                    check_size((stream.frames or 1, h, w), path, opts.max_voxels)
                frames.add(frame.to_ndarray(format="rgb24"))
                if opts.max_voxels and frames.voxels > opts.max_voxels:
                    check_size(frames.shape, path, opts.max_voxels)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{path}: video decoding failed after {len(frames)} frames "
                             f"({type(exc).__name__}: {first_line(exc, 150)})") from exc
        codec = stream.codec_context.name
    if not frames:
        raise InputError(f"{path}: video has no frames")
    log.info("read video %s: %d frames %dx%d at %s fps", path, len(frames), w, h, fps)
    return _video_image(frames.stack(), fps, {"format": "video", "codec": codec}, opts.modality)


class _Frames:
    """Decoded frames, kept grey (one channel) while every frame so far is grey: a grey video holds and
    counts one channel, not three (a 40-frame 2048 x 2048 grey clip was refused as 503 M voxels for the
    168 M it keeps); the first colour frame turns the frames before it back into RGB."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.grey = True

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, rgb: np.ndarray) -> None:
        if self.grey and np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            self.frames.append(np.ascontiguousarray(rgb[..., 0]))
            return
        if self.grey:
            self.frames = [np.repeat(f[..., None], 3, axis=-1) for f in self.frames]
            self.grey = False
        self.frames.append(rgb)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.frames), *self.frames[0].shape) if self.frames else (0,)

    @property
    def voxels(self) -> int:
        return int(sum(f.size for f in self.frames))

    def stack(self) -> np.ndarray:
        return np.stack(self.frames)


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``f2.png`` < ``f10.png``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder, naturally sorted (hidden files skipped)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in FRAME_EXTENSIONS), key=lambda p: natural_key(p.name))


def is_frame_folder(folder: Path) -> bool:
    """True for a folder of image frames: image files only (notes allowed), no DICOM files."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")]
    images = [p for p in files if p.suffix.lower() in FRAME_EXTENSIONS]
    others = [p for p in files if p.suffix.lower() not in FRAME_EXTENSIONS + _IGNORED
              and p.name.lower() not in _IGNORED_NAMES]
    return bool(images) and not others


def _frame_header(path: Path) -> tuple[int, int, int, bool]:
    """(height, width, bands, is a label PNG) of a frame image from its header (Pillow opens lazily)."""
    from medisam.io.read_raster import raster_header

    shape, pages, label_png = raster_header(path)
    if pages > 1:
        raise InputError(f"{path}: multi-page frame images are not supported in a frame folder")
    return shape[0], shape[1], shape[2], label_png


def _decode_frame(path: Path, label_png: bool = False) -> np.ndarray:
    """One frame image at its own bit depth: ``(H, W)`` grey or ``(H, W, 3)`` RGB (alpha dropped).

    A label PNG medisam wrote (``label_png``, from its header; see :mod:`medisam.io.label_png`)
    gives its label values.
    """
    if label_png:
        return read_label_png(path)
    arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"{path}: cannot decode frame image")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return arr


def read_frame_folder(folder: Path, opts: ReadOptions, fps: float | None = None) -> MedicalImage:
    """Read a folder of equally sized frame images as a video.

    Bit depth is kept (16-bit microscopy frames stay uint16); colour frames give
    ``(T, Y, X, 3)``, grey ones ``(T, Y, X)``; grey frames in a colour folder are repeated to RGB.
    """
    files = frame_files(folder)
    if not files:
        raise InputError(f"{folder}: no frame images ({', '.join(FRAME_EXTENSIONS)})")
    frames: list[np.ndarray] = []
    first_hw: tuple[int, int] | None = None
    for f in files:
        h, w, bands, label_png = _frame_header(f)  # sizes from the header: nothing is decoded before the checks
        if first_hw is None:
            first_hw = (h, w)
            check_size((len(files), h, w) + ((min(bands, 3),) if bands > 2 else ()), folder, opts.max_voxels)
        elif (h, w) != first_hw:
            raise InputError(f"{f}: frame {w}x{h} differs from the first frame ({first_hw[1]}x{first_hw[0]})")
        arr = _decode_frame(f, label_png)
        if arr.shape[:2] != first_hw:
            raise InputError(f"{f}: frame decodes to {arr.shape[1]}x{arr.shape[0]}, its header says {w}x{h}")
        if frames and arr.dtype != frames[0].dtype:
            raise InputError(f"{f}: frame {arr.shape[1]}x{arr.shape[0]} {arr.dtype} differs from the first "
                             f"frame ({frames[0].shape[1]}x{frames[0].shape[0]} {frames[0].dtype})")
        frames.append(arr)
    if any(f.ndim == 3 for f in frames):
        frames = [f if f.ndim == 3 else np.repeat(f[..., None], 3, axis=-1) for f in frames]
    log.info("read %d frames from %s", len(frames), folder)
    return _video_image(np.stack(frames), fps, {"format": "frames", "files": [str(f) for f in files]},
                        opts.modality)


def _frame_display(video: MedicalImage, t: int) -> np.ndarray:
    frame = video.array[t]
    return to_display(frame, video.modality)


def write_label_frames(labels: MedicalImage, folder: str | Path, force: bool = False) -> Path:
    """Write a ``(T, Y, X)`` label video as ``folder/00000.png``... as visible label PNGs.

    Every frame uses the video's encoding (:func:`medisam.io.label_png.encode_label_png`: one
    object 0/255 grey, up to 255 a palette PNG whose values are the labels, more 16-bit), so a
    viewer shows the masks and :func:`read_image` gives the label values back.

    Frames are encoded into a temporary folder beside ``folder`` first and moved in only when
    all succeeded, so a failure leaves no partial output. A non-empty ``folder`` is refused
    unless ``force``: then it holds this video's frames only (an earlier run's frames past them are
    removed: a 10-frame run over 30 old frames left 20 of them, read back as one video); other files
    in it stay.
    """
    folder = Path(folder).expanduser()
    arr = np.asarray(labels.array)
    if arr.ndim != 3:
        raise InputError(f"label video must be (T, Y, X), got shape {arr.shape}")
    if arr.max(initial=0) > 65535:
        raise InputError(f"{folder}: label values above 65535 do not fit PNG frames")
    check_output(folder, force=force, folder=True)
    top = int(arr.max(initial=0))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_tmp_dir(folder.parent)
    try:
        for t in range(arr.shape[0]):
            (tmp / f"{t:05d}.png").write_bytes(encode_label_png(arr[t], top=top))
        folder.mkdir(exist_ok=True)
        written = {f.name for f in tmp.iterdir()}
        for f in sorted(tmp.iterdir()):
            os.replace(f, folder / f.name)
        for old in folder.glob("[0-9][0-9][0-9][0-9][0-9].png"):  # an earlier, longer run's frames
            if old.name not in written:
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d label frames to %s", arr.shape[0], folder)
    return folder


def write_overlay_video(video: MedicalImage, labels: MedicalImage | np.ndarray, path: str | Path,
                        force: bool = False, fps: float | None = None, alpha: float = 0.4) -> Path:
    """Write an H.264 MP4 of the video with coloured labels (for people; lossy).

    ``fps`` defaults to ``video.source["fps"]`` (25 when unknown). Odd frame sizes are
    padded by one pixel because H.264 with yuv420p needs even sizes.
    """
    av = require("av", "video")
    lab = np.asarray(labels.array if isinstance(labels, MedicalImage) else labels)
    n = video.num_slices
    if lab.shape != video.spatial_shape:
        raise InputError(f"labels {lab.shape} do not match the video grid {video.spatial_shape}")
    rate = fps or video.source.get("fps") or 25.0
    path = Path(path).expanduser()
    h, w = video.spatial_shape[1:]
    ph, pw = h + h % 2, w + w % 2
    with atomic_write(path, force=force) as tmp:
        with av.open(str(tmp), mode="w", format=None if path.suffix else "mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            for t in range(n):
                rgb = render_overlay(_frame_display(video, t), lab[t], alpha)
                if (ph, pw) != (h, w):
                    rgb = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)))
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    log.info("wrote overlay video %s (%d frames, %.3g fps)", path, n, rate)
    return path


def write_video(frames: np.ndarray, path: str | Path, fps: float = 25.0, force: bool = False,
                codec: str = "libx264") -> Path:
    """Write ``(T, Y, X[, 3])`` uint8 frames as a video file (even sizes; used by tests/demos)."""
    av = require("av", "video")
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"frames must be (T, Y, X[, 3]) with T >= 1, got {frames.shape}")
    path = Path(path).expanduser()
    with atomic_write(path, force=force) as tmp:
        with av.open(str(tmp), mode="w", format=None if path.suffix else "mp4") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


register_reader(VIDEO_EXTENSIONS, read_video_file)
