"""SAM ViT-B/L/H and MedSAM, built with the official ``segment-anything`` code."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from medisam.errors import require


def build_sam_vit(variant: str) -> nn.Module:
    """Randomly initialised SAM ``vit_b`` / ``vit_l`` / ``vit_h`` (weights are loaded afterwards)."""
    sam = require("segment_anything", "core")
    return sam.sam_model_registry[variant](checkpoint=None)


def build_sam_tiny() -> nn.Module:
    """A tiny SAM (ViT depth 2, width 32, 256 px input, 16x16 embedding) for fast tests."""
    modeling = require("segment_anything.modeling", "core")
    image_size, patch, embed = 256, 16, 256
    encoder = modeling.ImageEncoderViT(
        depth=2, embed_dim=32, img_size=image_size, mlp_ratio=2,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=patch,
        qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=4, out_chans=embed,
    )
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=embed, image_embedding_size=(image_size // patch, image_size // patch),
        input_image_size=(image_size, image_size), mask_in_chans=16,
    )
    decoder = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=embed, mlp_dim=64, num_heads=8),
        transformer_dim=embed, iou_head_depth=3, iou_head_hidden_dim=32,
    )
    return modeling.Sam(encoder, prompt_encoder, decoder,
                        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
