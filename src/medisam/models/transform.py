"""The geometric transform between an original image and the square network input.

Only this module converts coordinates between the original pixel grid and the model
grid, and only it resizes logits back: nothing else rescales prompts or masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_CV2_INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class InputTransform:
    """How an ``(H, W)`` image was placed in the ``input_size`` square.

    ``resized_hw`` is the size of the resized image before bottom/right zero padding
    (equal to ``(input_size, input_size)`` for square resizing). ``scale_xy`` maps
    original pixel coordinates (x = column, y = row) to model coordinates.
    """

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    input_size: int
    scale_xy: tuple[float, float]

    @staticmethod
    def for_image(height: int, width: int, input_size: int, resize: str) -> "InputTransform":
        if resize == "square":
            return InputTransform((height, width), (input_size, input_size), input_size,
                                  (input_size / width, input_size / height))
        scale = input_size / max(height, width)
        # at least one pixel: a 1 x 4000 strip's short side would round to none
        resized = (max(int(height * scale + 0.5), 1), max(int(width * scale + 0.5), 1))
        return InputTransform((height, width), resized, input_size, (scale, scale))

    def coords_to_model(self, xy: np.ndarray) -> np.ndarray:
        """Scale ``(..., 2)`` XY pixel coordinates (or ``(..., 4)`` XYXY boxes) to the model grid."""
        xy = np.asarray(xy, dtype=np.float32)
        factors = np.array(self.scale_xy * (xy.shape[-1] // 2), dtype=np.float32)
        return xy * factors

    def resize_image(self, image: np.ndarray, interpolation: str) -> np.ndarray:
        """Resize an ``(H, W, 3)`` float32 image to ``resized_hw`` and zero-pad to the square."""
        h, w = self.resized_hw
        resized = cv2.resize(image, (w, h), interpolation=_CV2_INTERPOLATION[interpolation])
        if resized.ndim == 2:
            resized = resized[..., None]
        pad = ((0, self.input_size - h), (0, self.input_size - w), (0, 0))
        return np.pad(resized, pad)

    def logits_to_original(self, low_res: torch.Tensor) -> torch.Tensor:
        """Upsample ``(B, K, L, L)`` low-res logits to the original ``(H, W)`` grid.

        The low-res grid covers the padded input square; it is scaled to the input size
        (when smaller), cropped to the resized image and scaled to the original size,
        all bilinear as in SAM and LiteMedSAM.
        """
        size = low_res.shape[-1]
        if size != self.input_size:
            low_res = F.interpolate(low_res, (self.input_size, self.input_size),
                                    mode="bilinear", align_corners=False)
        h, w = self.resized_hw
        cropped = low_res[..., :h, :w]
        return F.interpolate(cropped, self.original_hw, mode="bilinear", align_corners=False)

    def masks_to_original(self, low_res: np.ndarray, threshold: float = 0.0) -> np.ndarray:
        """``(B, L, L)`` float32 low-res logits -> ``(B, H, W)`` bool masks (logit > threshold).

        The same bilinear (half-pixel, edge-clamped) resampling as :meth:`logits_to_original`,
        done by OpenCV on the CPU: about 5x faster than ``F.interpolate`` for one mask and
        equal to it up to float rounding (masks agree to >= 0.9999 on real images,
        ``benchmarks/speed.py --profile-prompt``).
        """
        h, w = self.resized_hw
        out = np.empty((low_res.shape[0], *self.original_hw), dtype=bool)
        for i, logits in enumerate(np.asarray(low_res, dtype=np.float32)):
            if logits.shape[-1] != self.input_size:
                logits = cv2.resize(logits, (self.input_size, self.input_size), interpolation=cv2.INTER_LINEAR)
            cropped = logits[:h, :w]
            if cropped.shape != self.original_hw:
                cropped = cv2.resize(cropped, self.original_hw[::-1], interpolation=cv2.INTER_LINEAR)
            np.greater(cropped, threshold, out=out[i])
        return out

    def mask_to_low_res(self, mask: np.ndarray, low_res_size: int) -> np.ndarray:
        """Map a binary ``(H, W)`` mask on the original grid to a ``(L, L)`` logit-like prompt."""
        h, w = self.resized_hw
        scale = low_res_size / self.input_size
        lh, lw = max(1, round(h * scale)), max(1, round(w * scale))
        small = cv2.resize(mask.astype(np.float32), (lw, lh), interpolation=cv2.INTER_LINEAR)
        out = np.full((low_res_size, low_res_size), -20.0, dtype=np.float32)
        out[:lh, :lw] = np.where(small > 0.5, 20.0, -20.0)
        return out
