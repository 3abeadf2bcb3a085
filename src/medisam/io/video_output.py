"""Where a tracked video's masks may go, checked before any work, and writing them.

The masks of a video go to a folder of PNG frames (no suffix: ``00000.png``... with the raw
label values), an ``.npz`` or a ``.nii.gz``; never to a video file (lossy codecs change label
values). People get an overlay video (``.mp4``...) at the input frame rate. Outputs never
overwrite an input, and exist beforehand only with ``force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from medisam.errors import InputError
from medisam.io.atomic import check_output
from medisam.io.medical_image import MedicalImage
from medisam.io.video import VIDEO_EXTENSIONS, write_label_frames, write_overlay_video
from medisam.io.write_mask import WRITERS, write_mask


def mask_output_kind(output: Path) -> str:
    """``"frames"`` for a folder (no suffix), else ``"file"``; lossy video and 2D formats refused."""
    name = Path(output).name.lower()
    if name.endswith(VIDEO_EXTENSIONS):
        raise InputError(f"{output}: video codecs are lossy and would change label values; write the masks "
                         "to a folder of PNG frames (no extension) or .npz / .nii.gz, and an overlay video "
                         "for people")
    if not Path(output).suffix:
        return "frames"
    if not name.endswith(tuple(WRITERS)) or name.endswith((".png", ".dcm")):
        kept = ", ".join(e for e in WRITERS if e not in (".png", ".dcm"))
        raise InputError(f"{output}: unsupported mask output for a video; use a folder (PNG frames) or one of {kept}")
    return "file"


@dataclass(frozen=True)
class VideoOutputs:
    """Checked outputs of one tracked video: the masks (``kind`` frames/file) and an optional overlay."""

    masks: Path
    kind: str
    overlay: Path | None
    force: bool

    @classmethod
    def check(cls, masks: str | Path, overlay: str | Path | None, *, force: bool,
              inputs: Iterable[str | Path] = ()) -> "VideoOutputs":
        """Check both outputs now (kinds, inputs, existing files): nothing is written yet."""
        masks = Path(masks).expanduser()
        over = Path(overlay).expanduser() if overlay is not None else None
        protected = [p for p in inputs if p]
        kind = mask_output_kind(masks)
        check_output(masks, force=force, protected=protected, folder=kind == "frames")
        if over is not None:
            if not over.name.lower().endswith(VIDEO_EXTENSIONS):
                raise InputError(f"{over}: an overlay of a video is a video file ({', '.join(VIDEO_EXTENSIONS)})")
            check_output(over, force=force, protected=protected)
            if over.resolve() == masks.resolve():
                raise InputError(f"{over}: the masks and the overlay need two different paths")
        return cls(masks, kind, over, force)

    def write(self, video: MedicalImage, labels: MedicalImage) -> Path:
        """Write the label video (and the overlay); returns the masks path."""
        if self.kind == "frames":
            write_label_frames(labels, self.masks, force=self.force)
        else:
            write_mask(labels, self.masks, force=self.force)
        if self.overlay is not None:
            write_overlay_video(video, labels, self.overlay, force=self.force)
        return self.masks


def video_inputs(video: MedicalImage) -> list[str]:
    """Paths a video was read from (the file, or every frame file)."""
    return [p for p in (video.source.get("path"),) if p] + list(video.source.get("files", ()))
