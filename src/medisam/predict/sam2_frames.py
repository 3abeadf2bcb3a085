"""In-memory frames for SAM 2's video predictor: slices/frames -> sam2's normalised input.

sam2's ``init_state`` only reads JPEG folders or MP4 files. MedSAM2 instead builds the
inference state from a tensor of preprocessed frames; this module does the same from a
:class:`MedicalImage`: intensities to uint8 [0, 255] (one mapping for the whole volume, per
frame for videos and colour images), PIL's square resize to the model input (as sam2's JPEG
loader and MedSAM2's inference script do), then /255 and ImageNet mean/std when a frame is read.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from medisam.errors import InputError
from medisam.io.intensity import to_display
from medisam.io.medical_image import MedicalImage
from medisam.predict.volume import volume_to_display

_MEAN = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
_STD = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]


def as_frames(image: MedicalImage | np.ndarray, axis: int = 0) -> tuple[MedicalImage, np.ndarray]:
    """The image and its pixels as a frame stack ``(T, H, W)`` or ``(T, H, W, 3)``.

    A 2D image becomes a one-frame stack; videos stack along array axis 0; a grey volume along
    ``axis`` (a view whose planes' rows and columns are the other two axes in order, as
    :class:`~medisam.predict.volume.SliceGeometry`'s). Only a grey volume has another axis to
    track along: a video runs in time, a colour volume's frames are mapped one by one.
    """
    if not isinstance(image, MedicalImage):
        array = np.asarray(image)
        if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            image = MedicalImage(array[..., :3] if array.ndim == 4 else array, (1.0, 1.0, 1.0),
                                 (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), is_rgb=array.ndim == 4)
        else:
            image = MedicalImage.from_array(array)
    frames = image.array if image.is_volume else image.array[None]
    if frames.shape[0] == 0 or frames[0].size == 0:
        raise InputError(f"empty image or video (shape {image.array.shape})")
    if axis != 0:
        if not image.is_volume or image.is_video or image.is_rgb:
            what = "a video" if image.is_video else "a colour volume" if image.is_volume else "a 2D image"
            raise InputError(f"axis {axis}: {what} is tracked along its frames (axis 0); only a grey volume "
                             "takes another axis")
        frames = np.moveaxis(frames, axis, 0)
    return image, frames


def display_frames(image: MedicalImage, frames: np.ndarray,
                   window: str | tuple[float, float] | None = None) -> list[np.ndarray]:
    """Every frame as uint8 display pixels: ``(H, W)`` for grey input, ``(H, W, 3)`` for colour.

    Grey volumes get ONE intensity mapping for all slices (as VolumeSession, via
    :func:`medisam.predict.volume.volume_to_display`) so neighbouring slices look alike to
    the memory; videos and colour frames are mapped frame by frame with ``to_display``.
    """
    if frames.ndim == 3 and not image.is_video:
        volume = volume_to_display(frames, image.modality, window)
        return [np.rint(f).astype(np.uint8) for f in volume]
    out = [np.rint(to_display(f, image.modality, window)).astype(np.uint8) for f in frames]
    if frames.ndim == 3:  # grey video: keep one channel (to_display repeats it three times)
        out = [f[..., 0] for f in out]
    return out


class NormalisedFrames:
    """Lazy sequence of sam2 input tensors ``(3, S, S)`` float32 (ImageNet-normalised).

    Frames are kept resized as uint8 ``(T, S, S)`` (grey) or ``(T, S, S, 3)`` -- 4 to 12
    times less memory than float RGB -- and normalised when sam2 reads
    ``inference_state["images"][i]``.
    """

    def __init__(self, display: list[np.ndarray], input_size: int):
        self.input_size = input_size
        self.resized = np.stack([self._resize(f) for f in display])

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        """PIL's default (bicubic, antialiased) square resize of a uint8 frame, as sam2's frame loader."""
        size = (self.input_size, self.input_size)
        return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size))

    def __len__(self) -> int:
        return len(self.resized)

    def __getitem__(self, index: int) -> torch.Tensor:
        x = torch.from_numpy(self.resized[index]).float() / 255.0
        x = x.expand(3, -1, -1) if x.ndim == 2 else x.permute(2, 0, 1)
        return (x - _MEAN) / _STD
