"""LoRA (Hu et al., ICLR 2022) on the image encoder's attention ``qkv``/``proj`` via ``peft``.

Only the low-rank matrices train. Before saving, the LoRA update is merged into a copy of
the encoder (``merge_and_unload``) so the checkpoint holds plain base-architecture weights
and loads as the base model everywhere (no LoRA code is needed to load it).

Model structure like :mod:`medisam.models.adapters`, so it lives beside it; ``peft``
(extra ``train``) is imported only when LoRA is added.
"""

from __future__ import annotations

import copy

import torch.nn as nn

from medisam.errors import require

#: Attention linear layers of TinyViT (``attn.qkv``/``attn.proj``) and SAM ViT (same names).
TARGET_MODULES = r".*\.attn\.(qkv|proj)"


def add_lora(encoder: nn.Module, rank: int = 8, alpha: int = 16, dropout: float = 0.0) -> nn.Module:
    """Return ``encoder`` wrapped by peft with LoRA on its attention layers (base weights frozen)."""
    peft = require("peft", "train")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=TARGET_MODULES, bias="none")
    wrapped = peft.get_peft_model(encoder, config)
    if not any("lora_" in n for n, _ in wrapped.named_parameters()):
        raise ValueError("LoRA found no attention qkv/proj layers to adapt")
    return wrapped


def merged_encoder(wrapped: nn.Module) -> nn.Module:
    """A copy of the encoder with LoRA merged into the base weights (the training copy is untouched)."""
    return copy.deepcopy(wrapped).merge_and_unload()


def is_lora_parameter(name: str) -> bool:
    """True for peft's low-rank matrices (the only encoder weights LoRA mode trains)."""
    return "lora_" in name
