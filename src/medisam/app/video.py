"""What the web UI adds for videos: the tracking direction and the two video downloads.

A video opened in the app (MP4/AVI/MOV..., a DICOM cine loop) is an
:class:`~medisam.serve.interactive.InteractiveSession` over the same
:class:`~medisam.predict.video.VideoSession` tracker as ``medisam propagate``; its outputs go
through :class:`~medisam.io.video_output.VideoOutputs`, the CLI's writer, so the app and the CLI
write the same files (the overlay through the same
:func:`~medisam.io.video.write_overlay_video`):

- the **masks**: PNG label frames (``00000.png``..., zipped for the download), ``.npz`` or
  ``.nii.gz`` (lossless; a video codec would change label values);
- the **overlay video**: an MP4 of the frames with each object in its colour, at the input's
  frame rate.

Tracking ``"forward"`` (the default for videos) makes each object start on the frame where it
was first prompted, so an object that enters later is boxed there and is absent before;
``"both"`` also tracks every object backward from its first prompt.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage
from medisam.io.video import write_overlay_video
from medisam.io.video_output import VideoOutputs

#: Tracking directions offered for videos (volumes always propagate both ways).
VIDEO_DIRECTIONS = ("forward", "both")
#: Mask formats of a video download: ".zip" = a zipped folder of PNG label frames.
VIDEO_MASK_FORMATS = (".zip", ".npz", ".nii.gz")


def check_direction(direction: str) -> str:
    """One of :data:`VIDEO_DIRECTIONS` (a one-line error otherwise)."""
    if direction not in VIDEO_DIRECTIONS:
        raise InputError(f"video tracking direction must be one of {', '.join(VIDEO_DIRECTIONS)}, got {direction!r}")
    return direction


def describe(video: MedicalImage) -> str:
    """``"48 frames at 25 fps"`` (the frame rate the overlay video keeps)."""
    fps = video.source.get("fps")
    rate = f"{fps:.3g} fps" if fps else "unknown frame rate (overlay at 25 fps)"
    return f"{video.num_slices} frames at {rate}"


def check_mask_format(ext: str) -> None:
    """InputError unless a video's masks can be downloaded as ``ext``."""
    if ext not in VIDEO_MASK_FORMATS:
        raise InputError(f"a video's masks download as {', '.join(VIDEO_MASK_FORMATS)} (.zip = PNG label "
                         f"frames); {ext} is not one of them")


def export_masks(video: MedicalImage, labels: MedicalImage, stem: str, ext: str, workdir: Path) -> Path:
    """The label video as a new file in a fresh folder under ``workdir``: ``stem_masks.zip``
    (PNG label frames), ``.npz`` or ``.nii.gz``."""
    check_mask_format(ext)
    out_dir = Path(tempfile.mkdtemp(dir=workdir))
    if ext != ".zip":
        return VideoOutputs.check(out_dir / f"{stem}_masks{ext}", None, force=False).write(video, labels)
    frames = VideoOutputs.check(out_dir / f"{stem}_masks", None, force=False).write(video, labels)
    archive = shutil.make_archive(str(frames), "zip", root_dir=frames.parent, base_dir=frames.name)
    shutil.rmtree(frames, ignore_errors=True)
    return Path(archive)


def export_overlay(video: MedicalImage, labels: MedicalImage, stem: str, workdir: Path) -> Path:
    """The overlay MP4 (objects in their colours, the input's frame rate) as a new file under ``workdir``."""
    out_dir = Path(tempfile.mkdtemp(dir=workdir))
    return write_overlay_video(video, labels, out_dir / f"{stem}_tracked.mp4")
