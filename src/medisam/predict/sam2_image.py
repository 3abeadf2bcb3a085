"""2D prompts for a SAM 2 model: sam2's own ``SAM2ImagePredictor`` behind the :class:`Predictor` calls every
2D consumer makes (``set_image``, ``predict``, ``predict_batch``, ``mask_logits``, ``display_image``):
``medisam segment``, the server's and web UI's 2D images, the benchmark's 2D strategies
(:func:`medisam.predict.factory.open_predictor` picks it).

Why: a SAM 2 network has no ``encode``/``decode`` pair that fits
:class:`~medisam.models.promptable.PromptableModel` (:mod:`medisam.models.sam2_model`), and a
one-frame :class:`~medisam.predict.sam2_session.Sam2Session` cannot take a previous mask's logits
with new clicks, which corrective clicks give. sam2's image predictor is how SAM 2 is evaluated
on images (the SAM 2 paper's 2D tables); the pixels it sees are those every other model sees
(:func:`~medisam.io.intensity.to_display`, as uint8 like :mod:`medisam.predict.sam2_frames`).
Points alone go to SAM 2 itself (no box search: SAM 2 was trained with clicks).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from medisam.errors import InputError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.io.intensity import to_display
from medisam.predict.cache import embedding_key
from medisam.predict.predictor import DEFAULT_MAX_PIXELS, Prediction, image_to_2d, validate_pixels
from medisam.prompts import Box, MaskPrompt, Points


class Sam2ImagePredictor:
    """One 2D image at a time for a SAM 2 model (``model.net`` a ``SAM2Base``).

    Args:
        model: a loaded SAM 2 family model (:class:`~medisam.models.sam2_model.Sam2Model`).
        max_pixels: largest image accepted (as :class:`Predictor`).
    """

    box_search = False

    def __init__(self, model, max_pixels: int | None = DEFAULT_MAX_PIXELS):  # noqa: ANN001 - a Sam2Model
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.model = model
        self.max_pixels = max_pixels
        self._sam2 = SAM2ImagePredictor(model.net)
        side = int(model.net.image_size) // 4  # sam2 assumes 1024 inputs; MedSAM2 takes 512
        self._sam2._bb_feat_sizes = [(side, side), (side // 2, side // 2), (side // 4, side // 4)]
        self._display: np.ndarray | None = None
        self._key: str | None = None  # the embedding key of the picture whose features sam2 holds

    @property
    def mask_input_size(self) -> int:
        """Side of the low-res logits a mask prompt takes (the model's input / 4)."""
        return int(self.model.net.image_size) // 4

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray | MedicalImage, slice: int | None = None,
                  window: str | tuple[float, float] | None = None, axis: int = 0) -> "Sam2ImagePredictor":
        """Encode a 2D image or one slice of a volume, intensities mapped as for every model."""
        pixels, modality = image_to_2d(image, slice, axis)
        validate_pixels(pixels, self.max_pixels)
        return self.set_display_image(to_display(pixels, modality, window))

    def set_display_image(self, display: np.ndarray, key: str | None = None) -> "Sam2ImagePredictor":  # noqa: ARG002
        """Encode an intensity-mapped ``(H, W, 3)`` image (0-255 scale), rounded to uint8 as SAM 2's loaders."""
        display = np.asarray(display)
        if display.ndim != 3 or display.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) display image, got {display.shape}")
        pixels = np.rint(np.clip(display, 0, 255)).astype(np.uint8)
        key = embedding_key(pixels, self.model.cache_signature)
        if key != self._key:  # the same picture again (a server session's next prompt): its features are kept
            with torch.inference_mode():
                self._sam2.set_image(pixels)
            self._key = key
        self._display = display
        return self

    def get_image_embedding(self) -> torch.Tensor:
        self._require_image()
        return self._sam2._features["image_embed"]

    @property
    def display_image(self) -> np.ndarray:
        """The current image as the model saw it, ``(H, W, 3)`` float 0-255."""
        self._require_image()
        return self._display  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""
        return self.display_image.shape[:2]

    def _require_image(self) -> None:
        if self._display is None:
            raise InputError("no image set: call set_image() first")

    def mask_logits(self, mask: np.ndarray) -> np.ndarray:
        """An ``(H, W)`` bool mask on the current image as the ``(L, L)`` low-res logits SAM 2's mask prompt
        takes: sam2 resizes the whole image to its square input (no padding), so the mask is too."""
        import cv2

        size = self.mask_input_size
        small = cv2.resize(np.asarray(mask, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        return np.where(small > 0.5, 20.0, -20.0).astype(np.float32)

    # ---------------------------------------------------------------- prompts
    def predict(self, box: Box | Sequence[float] | None = None,
                points: Points | Sequence[Sequence[float]] | None = None,
                mask: MaskPrompt | np.ndarray | None = None, multimask: bool | str = False,
                box_search: bool | None = None) -> Prediction:
        """One object from a box, points and/or a previous prediction's low-res logits
        (:meth:`Predictor.predict`'s arguments; ``multimask="all"`` is SAM 2's single output then its
        three candidates, two decoder passes)."""
        if box_search:
            raise PromptError(f"{self.model.name} answers points itself: the box search is for box-trained models")
        if box is None and points is None and mask is None:
            raise PromptError("give at least one prompt: box, points or mask")
        h, w = self.image_size
        kw = {}
        if box is not None:
            kw["box"] = Box.of(box).check_inside(h, w).as_array()[None]
        if points is not None:
            p = Points.of(points).check_inside(h, w)
            kw["point_coords"], kw["point_labels"] = p.coords.astype(np.float32), p.labels.astype(np.int32)
        if mask is not None:
            m = mask if isinstance(mask, MaskPrompt) else MaskPrompt(mask)
            size = self.mask_input_size
            if m.logits.shape != (size, size):
                raise PromptError(f"mask prompt must be ({size}, {size}) low-res logits, got {m.logits.shape}")
            kw["mask_input"] = m.logits[None].astype(np.float32)
        if multimask == "all":
            single, many = self._decode(kw, False), self._decode(kw, True)
            return Prediction(*(np.concatenate([a, b]) for a, b in zip(single, many)))
        return Prediction(*self._decode(kw, bool(multimask)))

    def predict_batch(self, boxes: Sequence[Box | Sequence[float]]) -> Prediction:
        """One mask per box (row ``i`` = box ``i``), all decoded in one batched pass on the image's features."""
        if len(boxes) == 0:
            raise PromptError("predict_batch needs at least one box")
        h, w = self.image_size
        batch = np.stack([Box.of(b).check_inside(h, w).as_array() for b in boxes])
        masks, scores, logits = self._decode({"box": batch}, False)
        n = len(batch)  # sam2 keeps the batch axis for n > 1: (n, 1, ...), else (1, ...)
        return Prediction(masks.reshape(n, *masks.shape[-2:]), scores.reshape(n),
                          logits.reshape(n, *logits.shape[-2:]))

    def _decode(self, kw: dict, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode():
            masks, scores, logits = self._sam2.predict(multimask_output=multimask, **kw)
        return np.asarray(masks, dtype=bool), np.asarray(scores, dtype=np.float32), np.asarray(logits, np.float32)
