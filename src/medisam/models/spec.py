"""The model registry's data types: one frozen spec per model name (timm-style) and what
each model family can do (:class:`Capabilities`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class Capabilities:
    """What a model family can do; callers check these instead of comparing family names.

    Attributes:
        prompting_2d: image encoder + prompt decoder usable one image at a time
            (:class:`~medisam.models.promptable.PromptableModel`: ``Predictor``, 2D sessions).
        slice_propagation: propagates through a volume slice by slice from each slice's
            previous mask (``VolumeSession``, frame-to-frame video tracking).
        memory_propagation: tracks with a memory bank of earlier frames (SAM 2's video
            predictor, :class:`~medisam.models.sam2_model.Sam2Model`); no 2D encode/decode API.
        onnx_export: has an ONNX export, hence the onnx/openvino backends and reduced precision.
        cuda_fast_path: measured on a GPU with fp16 autocast and its encoder replayed as CUDA graphs
            (docs/speed.md, "On a GPU"): ``auto`` on CUDA picks fp16 and the torch backend captures
            the encoder. Families without it stay fp32 and eager on CUDA (a SAM ViT's graph pools
            would also hold GBs).
    """

    prompting_2d: bool
    slice_propagation: bool
    memory_propagation: bool
    onnx_export: bool
    cuda_fast_path: bool = False


#: Capabilities of each family (``ModelSpec.capabilities`` reads this table).
FAMILY_CAPABILITIES: dict[str, Capabilities] = {
    "litemedsam": Capabilities(prompting_2d=True, slice_propagation=True, memory_propagation=False,
                               onnx_export=True, cuda_fast_path=True),
    "sam": Capabilities(prompting_2d=True, slice_propagation=True, memory_propagation=False, onnx_export=True),
    "sam2": Capabilities(prompting_2d=False, slice_propagation=False, memory_propagation=True,
                         onnx_export=False),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything medisam needs to know about one promptable model.

    Attributes:
        name: registry name, e.g. ``"litemedsam"``.
        family: ``"litemedsam"``, ``"sam"`` or ``"sam2"``; it fixes :attr:`capabilities`.
        builder: zero-argument callable returning the randomly initialised ``nn.Module``:
            for 2D-promptable families one with ``image_encoder``, ``prompt_encoder`` and
            ``mask_decoder`` attributes; for ``sam2`` sam2's ``SAM2VideoPredictor``.
        input_size: side of the square network input in pixels (256 or 1024).
        resize: ``"longest"`` (resize the longest side to ``input_size`` and pad
            bottom/right, as SAM and LiteMedSAM) or ``"square"`` (stretch to a square, as MedSAM).
        intensity: ``"minmax"`` (per-image min-max to [0, 1], as MedSAM/LiteMedSAM) or
            ``"imagenet"`` (SAM's pixel mean/std on 0-255 values).
        interpolation: image resize interpolation: ``"area"`` (cv2 INTER_AREA, LiteMedSAM),
            ``"bilinear"`` or ``"bicubic"``.
        prompts: prompt kinds the model was trained with.
        checkpoint_file: published checkpoint file name the user should provide.
        sha256: hash of the published checkpoint (None when unknown or bundled elsewhere).
        bundled: True when the weights ship with an installed package (works offline).
        licence: licence of the weights.
        paper: citation / URL of the paper.
        is_test_model: tiny random-weight variant for tests; never downloaded.
    """

    name: str
    family: str
    builder: Callable[[], nn.Module]
    input_size: int
    resize: str = "longest"
    intensity: str = "minmax"
    interpolation: str = "area"
    prompts: tuple[str, ...] = ("box", "points", "mask")
    checkpoint_file: str | None = None
    sha256: str | None = None
    bundled: bool = False
    licence: str = ""
    paper: str = ""
    is_test_model: bool = False
    description: str = ""
    #: Round box coordinates down to whole model-grid pixels, as LiteMedSAM's published
    #: training and inference do (``int(coord * 256 / max(H, W))``).
    integer_boxes: bool = False
    #: Trained on box prompts only: a points-only prompt is answered with a box found around
    #: the points (:mod:`medisam.predict.point_box`), not by the model's point prompt.
    box_from_points: bool = False

    @property
    def capabilities(self) -> Capabilities:
        """What this model can do (from its family; unknown families can do nothing)."""
        return FAMILY_CAPABILITIES.get(self.family, Capabilities(False, False, False, False))

    @property
    def supports_2d_prompting(self) -> bool:
        return self.capabilities.prompting_2d

    @property
    def supports_slice_propagation(self) -> bool:
        return self.capabilities.slice_propagation

    @property
    def supports_memory_propagation(self) -> bool:
        return self.capabilities.memory_propagation
