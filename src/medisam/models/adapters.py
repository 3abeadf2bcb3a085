"""Medical SAM Adapter (Wu et al., MedIA 2025 / arXiv:2304.12620) for SAM-family encoders.

Each transformer block of the image encoder (TinyViT's ``TinyViTBlock``, SAM ViT's
``Block``: any module with ``attn`` and ``mlp`` children) gets two bottleneck adapters:

* after attention ("space adapter"): ``x <- x + up(gelu(down(attn(x))))`` applied to the
  attention output, before the block's residual;
* beside the MLP ("MLP adapter"): ``mlp(x) + s * up(gelu(down(norm(x))))``.

``up`` starts at zero, so an adapted network computes exactly the original function
until trained. The original weights stay frozen; only adapters (and optionally the mask
decoder) train. The wrapped modules are kept as ``.inner``, so state-dict keys become
``...attn.inner.qkv.weight``; a checkpoint whose metadata says ``mode: adapter`` is
rebuilt by :func:`rebuild` (called from ``medisam.models.registry.load_model``).

This is model structure, not training: it lives in ``medisam.models`` so loading a
fine-tuned checkpoint never imports ``medisam.train``; the training code
(``medisam.train.modes``) imports it from here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


class Adapter(nn.Module):
    """Bottleneck ``dim -> hidden -> dim`` with GELU; ``up`` zero-initialised (identity start)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class AdaptedAttention(nn.Module):
    """``attn`` followed by a residual adapter on its output (tokens last: ``(..., C)``)."""

    def __init__(self, inner: nn.Module, dim: int, hidden: int):
        super().__init__()
        self.inner = inner
        self.adapter = Adapter(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out + self.adapter(out)


class AdaptedMlp(nn.Module):
    """``mlp(x) + scale * adapter(norm(x))``; ``norm`` is the MLP's own LayerNorm when it has one
    (TinyViT), otherwise the input is already normalised by the block (SAM ViT)."""

    def __init__(self, inner: nn.Module, dim: int, hidden: int, scale: float):
        super().__init__()
        self.inner = inner
        self.adapter = Adapter(dim, hidden)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = getattr(self.inner, "norm", None)
        h = norm(x) if isinstance(norm, nn.Module) else x
        return self.inner(x) + self.scale * self.adapter(h)


def _block_dim(block: nn.Module) -> int:
    for attr in ("dim",):
        if isinstance(getattr(block, attr, None), int):
            return int(getattr(block, attr))
    norm = getattr(block, "norm1", None) or getattr(block.attn, "norm", None)
    if isinstance(norm, nn.LayerNorm):
        return int(norm.normalized_shape[0])
    raise TypeError(f"cannot tell the width of block {type(block).__name__}")


def add_adapters(encoder: nn.Module, dim: int = 32, scale: float = 0.5) -> list[str]:
    """Wrap every attention/MLP pair in ``encoder`` with adapters; return the block names.

    ``dim`` is the bottleneck width (capped at the block width). Idempotent refusal:
    an already adapted encoder raises ValueError.
    """
    names = []
    for name, block in list(encoder.named_modules()):
        attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
        if not (isinstance(attn, nn.Module) and isinstance(mlp, nn.Module)):
            continue
        if isinstance(attn, AdaptedAttention):
            raise ValueError("encoder already has adapters")
        width = _block_dim(block)
        hidden = max(1, min(dim, width))
        block.attn = AdaptedAttention(attn, width, hidden)
        block.mlp = AdaptedMlp(mlp, width, hidden, scale)
        names.append(name)
    if not names:
        raise ValueError(f"no transformer blocks (attn + mlp) found in {type(encoder).__name__}")
    return names


def adapter_metadata(dim: int, scale: float) -> dict[str, Any]:
    """What :func:`rebuild` needs, stored under ``checkpoint["medisam"]["adapter"]``."""
    return {"dim": int(dim), "scale": float(scale)}


def rebuild(net: nn.Module, meta: dict[str, Any]) -> nn.Module:
    """Add adapters to a freshly built base network so an adapter checkpoint loads into it."""
    params = meta.get("adapter") or {}
    add_adapters(net.image_encoder, dim=int(params.get("dim", 32)), scale=float(params.get("scale", 0.5)))
    return net


def is_adapter_parameter(name: str) -> bool:
    """True for parameters the adapters added (the only encoder weights adapter mode trains)."""
    return ".adapter." in name
