"""The adapter over 2D-promptable networks (LiteMedSAM, SAM, MedSAM): preprocess, encode, decode.

The network is stateless (``nn.Module`` with ``image_encoder``, ``prompt_encoder`` and
``mask_decoder``); per-image state lives in :class:`medisam.predict.Predictor`. SAM 2 models
are not promptable this way: they load as :class:`~medisam.models.sam2_model.Sam2Model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medisam.errors import PromptError
from medisam.models.loaded import LoadedModel
from medisam.models.transform import InputTransform

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)

#: box prompts per decoder call on a CPU (:meth:`PromptableModel.decode_boxes`). A CPU does a batch's
#: work per prompt, no faster than one prompt at a time, and holds every prompt's activations at once
#: (about 33 MiB a box for LiteMedSAM); a box alone also gets its own upscaling window and the static
#: one-box compilation. 64 nuclei boxes of one tile: 2.2 s and +2.1 GiB of peak RSS as one batch,
#: 1.1 s and +0.2 GiB one by one (``benchmarks/decode_batch.py``, stop 68).
CPU_BOXES_PER_CALL = 1
#: ... and on a GPU, where a batch fills the device; bounded so that memory stays flat in the boxes
GPU_BOXES_PER_CALL = 64
#: everything mode's grid points per decoder call on a CPU (:func:`points_per_call`). Points gain no
#: upscaling window, and a batch of 64 ran no faster than batches of 8 while holding every point's
#: activations: one Kvasir image on the default backend took 8.7-11.0 s with SAM's 64 per call and
#: +2.35 GiB of peak RSS, 8.8-9.6 s with 8 and +0.34 GiB (stop 68).
CPU_POINTS_PER_CALL = 8
#: ... and on a GPU (SAM's default)
GPU_POINTS_PER_CALL = 64


@dataclass(frozen=True)
class DecoderOutput:
    """Raw decoder output: ``low_res_logits`` (B, K, L, L) and ``iou`` (B, K), on the model grid."""

    low_res_logits: torch.Tensor
    iou: torch.Tensor


def _is_uint8_valued(image: np.ndarray) -> bool:
    """True when every value is an integer in 0..255 (an 8-bit image carried as float)."""
    return bool(image.min() >= 0 and image.max() <= 255 and np.array_equal(image, np.floor(image)))


def kept_masks(multimask: bool | str) -> slice:
    """Which of SAM's four decoder outputs a ``multimask`` request keeps: ``False`` mask 0 (the
    single output), ``True`` masks 1-3 (the ambiguity candidates), ``"all"`` all four, in that
    order (both kinds from one decoder pass)."""
    if multimask == "all":
        return slice(None)
    if not isinstance(multimask, (bool, np.bool_)):
        raise PromptError(f"multimask must be True, False or 'all', got {multimask!r}")
    return slice(1, None) if multimask else slice(0, 1)


def boxes_per_call(device: torch.device) -> int:
    """Box prompts per decoder call on ``device``: :data:`CPU_BOXES_PER_CALL`; on a GPU :data:`GPU_BOXES_PER_CALL`."""
    return CPU_BOXES_PER_CALL if device.type == "cpu" else GPU_BOXES_PER_CALL


def points_per_call(device: torch.device) -> int:
    """Everything mode's grid points per decoder call on ``device``: :data:`CPU_POINTS_PER_CALL`; on a GPU
    :data:`GPU_POINTS_PER_CALL`."""
    return CPU_POINTS_PER_CALL if device.type == "cpu" else GPU_POINTS_PER_CALL


def first_best(scores: np.ndarray) -> int:
    """Index of the highest score, the first of equal ones; a NaN never wins (as a loop keeping
    only strictly better scores: the rule of a propagation step choosing among its margins)."""
    best = 0
    for i in range(1, len(scores)):
        if scores[i] > scores[best]:
            best = i
    return best


class PromptableModel(LoadedModel):
    """A loaded 2D-promptable model (``spec.capabilities.prompting_2d``) with its preprocessing.

    Attributes: those of :class:`LoadedModel` (``spec``, ``net``, ``device``, ``checkpoint``,
    ``checkpoint_sha256``, ``backend``).
    """

    #: set by the exported backends from their graphs' metadata (their network may never be built)
    exported_mask_input_size: int | None = None

    @property
    def mask_input_size(self) -> int:
        """Side of the low-res logit grid (the mask prompt size), 4x the embedding side."""
        if self.exported_mask_input_size is not None:
            return self.exported_mask_input_size
        return int(self.net.prompt_encoder.mask_input_size[0])

    # ----------------------------------------------------------- preprocessing
    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, InputTransform]:
        """``(H, W, 3)`` display image (float, 0-255 scale) -> ``(1, 3, S, S)`` input tensor.

        LiteMedSAM/MedSAM: resize, then per-image min-max to [0, 1], then zero pad (the
        published order). SAM: resize, ImageNet mean/std on 0-255 values, then zero pad.
        """
        h, w = image.shape[:2]
        t = InputTransform.for_image(h, w, self.spec.input_size, self.spec.resize)
        rh, rw = t.resized_hw
        pixels = np.ascontiguousarray(image, dtype=np.float32)
        if _is_uint8_valued(pixels):  # the published pipeline resizes the uint8 image
            pixels = pixels.astype(np.uint8)
        resized = t.resize_image(pixels, self.spec.interpolation)[:rh, :rw].astype(np.float32)
        if self.spec.intensity == "minmax":
            lo, hi = float(resized.min()), float(resized.max())
            resized = (resized - lo) / max(hi - lo, 1e-8)
        else:
            resized = (resized - IMAGENET_MEAN) / IMAGENET_STD
        padded = np.zeros((t.input_size, t.input_size, 3), dtype=np.float32)
        padded[:rh, :rw] = resized
        tensor = torch.from_numpy(padded).permute(2, 0, 1)[None].to(self.device)
        return tensor, t

    # ------------------------------------------------------------------ network
    @torch.no_grad()
    def encode(self, tensor: torch.Tensor) -> torch.Tensor:
        """Image encoder: ``(B, 3, S, S)`` -> embedding ``(B, 256, S/16 or 64, ...)``."""
        return self.net.image_encoder(tensor)

    @torch.no_grad()
    def decode(self, embedding: torch.Tensor, *, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
               multimask: bool | str = False) -> DecoderOutput:
        """Prompt encoder + mask decoder on one embedding ``(1, C, h, w)``, prompts on the model grid.

        ``points``: coords ``(B, N, 2)`` XY and labels ``(B, N)`` (1 positive, 0 negative, -1 pad).
        ``boxes``: ``(B, 4)`` XYXY. ``mask_input``: ``(B, 1, L, L)`` low-res logits.
        ``multimask``: the outputs kept (:func:`kept_masks`).
        """
        sparse, dense = self.net.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self.net.mask_decoder.predict_masks(  # all four outputs; forward() slices them so
            image_embeddings=embedding,
            image_pe=self.net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        keep = kept_masks(multimask)
        return DecoderOutput(low_res[:, keep], iou[:, keep])

    def decode_boxes(self, embedding: torch.Tensor, boxes: torch.Tensor) -> DecoderOutput:
        """The single mask of each of ``boxes`` (B, 4), decoded :func:`boxes_per_call` boxes at a time, so
        time and memory grow with the boxes in steps of that size (many objects of one image, a click's
        candidate boxes). Row ``i`` is box ``i``'s (on a CPU, what :meth:`decode` gives that box alone)."""
        step = boxes_per_call(boxes.device)
        if len(boxes) <= step:
            return self.decode(embedding, boxes=boxes, multimask=False)
        parts = [self.decode(embedding, boxes=boxes[i:i + step], multimask=False) for i in range(0, len(boxes), step)]
        return DecoderOutput(torch.cat([p.low_res_logits for p in parts]), torch.cat([p.iou for p in parts]))

    def decode_best(self, embedding: torch.Tensor, boxes: torch.Tensor) -> tuple[int, DecoderOutput]:
        """The best of ``boxes`` (B, 4) by single-mask IoU (:func:`first_best`): its index and its
        :class:`DecoderOutput` ``(1, 1, L, L)`` / ``(1, 1)``. One decoder batch; the exported
        backends upscale only the winner's mask (:class:`~medisam.models.fast_decoder.BestOfBoxesDecoderGraph`)."""
        out = self.decode(embedding, boxes=boxes, multimask=False)
        best = first_best(out.iou[:, 0].detach().float().cpu().numpy())
        return best, DecoderOutput(out.low_res_logits[best:best + 1], out.iou[best:best + 1])
