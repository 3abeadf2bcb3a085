"""The 2D predictor: encode an image once, answer many prompts from the cached embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from medisam.errors import InputError, ModelError, PromptError
from medisam.io.intensity import to_display
from medisam.io.medical_image import MedicalImage
from medisam.models.promptable import PromptableModel
from medisam.models.transform import InputTransform
from medisam.predict.cache import CachedEmbedding, EmbeddingCache, embedding_key
from medisam.prompts import Box, MaskPrompt, Points

#: Largest 2D image accepted by default (pixels); ``max_pixels=None`` lifts it.
DEFAULT_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class Prediction:
    """Masks for one prompt set (or one row per box in ``predict_batch``).

    Attributes:
        masks: ``(N, H, W)`` bool on the original pixel grid (N = 1, 3 with multimask, 4 with "all", or
            the number of boxes in ``predict_batch``).
        scores: ``(N,)`` predicted IoU per mask.
        low_res_logits: ``(N, L, L)`` float32 logits on the model grid; pass one back as
            ``mask=`` to refine. The fast CPU backends upscale only a window around a box
            prompt (the masks are the whole grid's; :mod:`medisam.models.upscale_window`):
            outside it the logits are -32, so predict inside
            ``medisam.models.upscale_window.exact_logits()`` when the logits go back as a mask
            prompt and must be the model's everywhere.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
    #: XYXY pixels: the box a points-only prompt was answered with (box-trained models,
    #: :mod:`medisam.predict.point_box`); None otherwise
    box: tuple[float, float, float, float] | None = None


def image_to_2d(image: np.ndarray | MedicalImage, slice: int | None = None, axis: int = 0,
                ) -> tuple[np.ndarray, str]:
    """Pick the 2D pixels (``(H, W)`` or ``(H, W, 3)``) and the modality from an input."""
    if isinstance(image, MedicalImage):
        if image.is_volume:
            if slice is None:
                raise InputError(f"a volume of {image.num_slices} slices needs slice= (0..{image.num_slices - 1})")
            return image.slice2d(slice, axis), image.modality
        if slice not in (None, 0):
            raise InputError(f"slice {slice} requested from a 2D image")
        return image.array, image.modality
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise InputError(f"expected an (H, W) or (H, W, 3) image, got shape {array.shape}")
    return array, "OT"


def validate_pixels(array: np.ndarray, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Reject empty, non-finite and oversized 2D images with a one-line error."""
    if array.size == 0 or min(array.shape[:2]) == 0:
        raise InputError(f"image is empty (shape {array.shape})")
    if max_pixels is not None and array.shape[0] * array.shape[1] > max_pixels:
        raise InputError(f"image of {array.shape[1]}x{array.shape[0]} pixels exceeds the limit of "
                         f"{max_pixels} pixels (pass max_pixels=None to override)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    if array.dtype.kind not in "uifb":
        raise InputError(f"unsupported pixel type {array.dtype}")


class Predictor:
    """SAM-style predictor over a :class:`PromptableModel`.

    ``set_image`` encodes once (or reuses the cached embedding for identical pixels,
    model and preprocessing); ``predict`` and ``predict_batch`` only run the light
    prompt encoder and mask decoder. ``box_search``: the default of :meth:`predict`'s
    ``box_search`` for this predictor (None: the model's ``ModelSpec.box_from_points``).
    """

    def __init__(self, model: PromptableModel, cache: EmbeddingCache | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, box_search: bool | None = None):
        if not model.spec.supports_2d_prompting:  # SAM 2: memory model, see predict.sam2_session
            raise ModelError(f"{model.name} is a SAM 2 model: use open_predictor(model) (sam2's image predictor) "
                             "for 2D prompts, or Sam2Session / VideoSession, instead of Predictor")
        self.model = model
        self.cache = cache if cache is not None else EmbeddingCache()
        self.max_pixels = max_pixels
        self.box_search = box_search
        self._current: CachedEmbedding | None = None
        self._hw: tuple[int, int] | None = None
        self._display: np.ndarray | None = None

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray | MedicalImage, slice: int | None = None,
                  window: str | tuple[float, float] | None = None, axis: int = 0) -> "Predictor":
        """Encode a 2D image or one slice of a volume (array axis ``axis``, index ``slice``).

        ``window`` is a CT preset name or ``(width, level)``; without it intensities are
        handled per modality (see :func:`medisam.io.intensity.to_display`).
        """
        pixels, modality = image_to_2d(image, slice, axis)
        validate_pixels(pixels, self.max_pixels)
        display = to_display(pixels, modality, window)
        return self.set_display_image(display)

    def set_display_image(self, display: np.ndarray, key: str | None = None) -> "Predictor":
        """Encode an already intensity-mapped ``(H, W, 3)`` float32 image (0-255 scale).

        ``key``: its :func:`embedding_key` when the caller already has it (a volume session
        revisits each plane several times; hashing a 512x512x3 float image takes milliseconds).
        """
        if key is None:
            key = embedding_key(display, self.model.cache_signature)
        cached = self.cache.get(key)
        if cached is None:
            tensor, transform = self.model.preprocess(display)
            cached = CachedEmbedding(self.model.encode(tensor), transform)
            self.cache.put(key, cached)
        return self.use_embedding(display, cached)

    def use_embedding(self, display: np.ndarray, embedding: CachedEmbedding) -> "Predictor":
        """Make ``embedding`` the current image of ``display``. Called directly (an interpolation
        between planes) it bypasses the cache: recomputed in a millisecond, it would hold 4 MiB
        per plane (LiteMedSAM) that no encoding paid for."""
        self._current = embedding
        self._hw = display.shape[:2]
        self._display = display  # the corrective-click walker sees what the model saw
        return self

    def get_image_embedding(self) -> torch.Tensor:
        return self._require_image().embedding

    def reset_image(self) -> None:
        self._current = None
        self._hw = None
        self._display = None

    @property
    def display_image(self) -> np.ndarray:
        """The current image as the model saw it: ``(H, W, 3)`` float, 0-255 (what 2D corrective
        clicks refine on, :mod:`medisam.predict.refine2d`)."""
        self._require_image()
        return self._display  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""
        self._require_image()
        return self._hw  # type: ignore[return-value]

    @property
    def transform(self) -> InputTransform:
        """Pixel <-> model-grid mapping of the current image (public form of ``_require_image().transform``)."""
        return self._require_image().transform

    def _require_image(self) -> CachedEmbedding:
        if self._current is None:
            raise InputError("no image set: call set_image() first")
        return self._current

    # ---------------------------------------------------------------- prompts
    def predict(self, box: Box | Sequence[float] | None = None,
                points: Points | Sequence[Sequence[float]] | None = None,
                mask: MaskPrompt | np.ndarray | None = None, multimask: bool | str = False,
                box_search: bool | None = None) -> Prediction:
        """Segment one object from a box, points and/or a previous low-res mask.

        ``box``: XYXY pixels; ``points``: ``(x, y[, label])`` tuples (label 1 positive,
        0 negative); ``mask``: low-res logits from an earlier :class:`Prediction`;
        ``multimask``: SAM's single output (False), its 3 ambiguity candidates (True), or
        ``"all"``: the single output then the 3 candidates, from one decoder pass.
        ``box_search``: answer a points-only prompt with a box found around the points
        (:mod:`medisam.predict.point_box`); None (default) takes the predictor's ``box_search``,
        and where that is None too does so for models trained on boxes only
        (``ModelSpec.box_from_points``: LiteMedSAM, MedSAM); False asks the model itself.
        """
        current = self._require_image()
        h, w = self.image_size
        if box is None and points is None and mask is None:
            raise PromptError("give at least one prompt: box, points or mask")
        if self.answers_with_box(box, points, mask, box_search):
            from medisam.predict.point_box import predict_from_points

            return predict_from_points(self, Points.of(points).check_inside(h, w), multimask)
        t = current.transform
        dev = self.model.device
        boxes_t = None
        if box is not None:
            b = Box.of(box).check_inside(h, w)
            boxes_t = torch.from_numpy(self._box_to_model(b.as_array()[None], t)).to(dev)
        points_t = None
        if points is not None:
            p = Points.of(points).check_inside(h, w)
            coords = torch.from_numpy(t.coords_to_model(p.coords)[None]).to(dev)
            labels = torch.from_numpy(p.labels[None]).to(dev)
            # point-only prompts: SAM's prompt encoder adds the "not a point" pad itself
            points_t = (coords, labels)
        mask_t = None
        if mask is not None:
            m = mask if isinstance(mask, MaskPrompt) else MaskPrompt(mask)
            size = self.model.mask_input_size
            if m.logits.shape != (size, size):
                raise PromptError(f"mask prompt must be ({size}, {size}) low-res logits, got {m.logits.shape}")
            mask_t = torch.from_numpy(m.logits)[None, None].to(dev)
        out = self.model.decode(current.embedding, points=points_t, boxes=boxes_t,
                                mask_input=mask_t, multimask=multimask)
        return self._finish(out.low_res_logits[0], out.iou[0])

    def answers_with_box(self, box: object, points: object, mask: object, box_search: bool | None = None) -> bool:
        """Whether :meth:`predict` answers these prompts with a box search: points alone, and
        :meth:`searches_box`. The one rule, for callers that plan around it (a volume's seed)."""
        return box is None and mask is None and points is not None and self.searches_box(box_search)

    def searches_box(self, box_search: bool | None = None) -> bool:
        """Whether a points-only prompt is answered with a box search (see :meth:`predict`)."""
        for choice in (box_search, self.box_search):
            if choice is not None:
                return bool(choice)
        return bool(self.model.spec.box_from_points)

    def predict_batch(self, boxes: Sequence[Box | Sequence[float]]) -> Prediction:
        """One mask per box on the cached embedding; row ``i`` of the result is box ``i``."""
        out = self._decode_boxes(boxes, "predict_batch")
        return self._finish(out.low_res_logits[:, 0], out.iou[:, 0])

    def box_logits(self, boxes: Sequence[Box | Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
        """Low-res logits ``(B, L, L)`` and predicted IoU ``(B,)`` of box prompts, without upsampling,
        to screen many boxes cheaply (:mod:`medisam.predict.point_box`)."""
        out = self._decode_boxes(boxes, "box_logits")
        return (out.low_res_logits[:, 0].detach().float().cpu().numpy(),
                out.iou[:, 0].detach().float().cpu().numpy())

    def _boxes_on_model_grid(self, boxes: Sequence[Box | Sequence[float]], caller: str) -> torch.Tensor:
        """``boxes`` checked inside the image and moved to the model grid, ``(B, 4)``."""
        current = self._require_image()
        h, w = self.image_size
        if len(boxes) == 0:
            raise PromptError(f"{caller} needs at least one box")
        arr = np.stack([Box.of(b).check_inside(h, w).as_array() for b in boxes])
        return torch.from_numpy(self._box_to_model(arr, current.transform)).to(self.model.device)

    def _decode_boxes(self, boxes: Sequence[Box | Sequence[float]], caller: str):  # noqa: ANN202 - DecoderOutput
        """Box prompts (single mask each) on the cached embedding, a bounded number per decoder call
        (:meth:`~medisam.models.promptable.PromptableModel.decode_boxes`)."""
        boxes_t = self._boxes_on_model_grid(boxes, caller)
        return self.model.decode_boxes(self._require_image().embedding, boxes_t)

    def predict_best(self, boxes: Sequence[Box | Sequence[float]]) -> tuple[int, Prediction]:
        """The highest-scoring of several box prompts on the cached embedding: ``(index, prediction)``.

        All boxes go through the decoder in one batch and only the winner's logits are
        upscaled and upsampled to the original grid (``PromptableModel.decode_best``), so it
        costs one decoder call and one upsampling instead of ``len(boxes)`` of each (a
        propagation step tries several margins). Ties go to the first box, as a loop over
        :meth:`predict` keeping the strictly better score would choose; the winner's masks,
        score and logits are those ``predict(box)`` gives (up to the batch's float rounding).
        """
        boxes_t = self._boxes_on_model_grid(boxes, "predict_best")
        best, out = self.model.decode_best(self._require_image().embedding, boxes_t)
        return best, self._finish(out.low_res_logits[:, 0], out.iou[:, 0])

    def _box_to_model(self, boxes: np.ndarray, transform) -> np.ndarray:
        """``(B, 4)`` XYXY pixel boxes -> model grid (floored where the model was trained so)."""
        scaled = transform.coords_to_model(boxes)
        return np.floor(scaled) if self.model.spec.integer_boxes else scaled

    def mask_logits(self, mask: np.ndarray) -> np.ndarray:
        """An ``(H, W)`` bool mask on the current image as the ``(L, L)`` low-res logits a mask prompt takes."""
        return self.transform.mask_to_low_res(np.asarray(mask, dtype=bool), self.model.mask_input_size)

    def logits_to_masks(self, low_res: torch.Tensor | np.ndarray) -> np.ndarray:
        """``(N, L, L)`` low-res logits -> ``(N, H, W)`` bool masks on the original grid.

        Logits on the CPU are upsampled by OpenCV (the same bilinear resampling as
        ``F.interpolate``, several times faster: ``benchmarks/speed.py --profile-prompt``
        measures it); on a GPU by torch there.
        """
        transform = self._require_image().transform
        if isinstance(low_res, torch.Tensor) and low_res.device.type != "cpu":
            up = transform.logits_to_original(low_res[:, None].float())
            return (up[:, 0] > 0).cpu().numpy()
        if isinstance(low_res, torch.Tensor):
            low_res = low_res.detach().float().numpy()
        return transform.masks_to_original(low_res)

    def _finish(self, low_res: torch.Tensor, iou: torch.Tensor) -> Prediction:
        if low_res.device.type != "cpu":
            return Prediction(self.logits_to_masks(low_res), iou.float().cpu().numpy(),
                              low_res.float().cpu().numpy())
        logits = np.ascontiguousarray(low_res.detach().float().numpy())
        return Prediction(self.logits_to_masks(logits), iou.detach().float().numpy(), logits)
