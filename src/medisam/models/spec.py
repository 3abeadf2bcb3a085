"""The model registry's data type: one frozen spec per model name (timm-style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything medisam needs to know about one promptable model.

    Attributes:
        name: registry name, e.g. ``"litemedsam"``.
        family: ``"litemedsam"``, ``"sam"`` or ``"sam2"``.
        builder: zero-argument callable returning the randomly initialised ``nn.Module``
            (with ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` attributes).
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
