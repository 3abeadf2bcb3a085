"""Fine-tuning modes: which parameters train, how the training forward runs, what is saved.

* ``full``: image encoder + mask decoder train, prompt encoder frozen (as MedSAM).
* ``decoder``: only the mask decoder trains; embeddings are computed once and cached.
* ``adapter``: Medical SAM Adapter bottlenecks in every encoder block train (original
  weights frozen); ``train_decoder`` adds the mask decoder.
* ``lora``: peft LoRA on the encoder's attention qkv/proj trains; ``train_decoder`` adds
  the mask decoder. Saved merged, so the checkpoint is a plain base-model checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from medisam.errors import InputError
from medisam.models import adapters, lora
from medisam.train.config import FinetuneConfig


def prepare(net: nn.Module, config: FinetuneConfig) -> nn.Module:
    """Freeze ``net`` and unfreeze (or add) the parameters ``config.mode`` trains, in place."""
    net.requires_grad_(False)
    mode = config.mode
    if mode == "full":
        net.image_encoder.requires_grad_(True)
        net.mask_decoder.requires_grad_(True)
    elif mode == "decoder":
        net.mask_decoder.requires_grad_(True)
    elif mode == "adapter":
        if adapter_shape(net.image_encoder) is None:  # else an adapter checkpoint's adapters train on
            adapters.add_adapters(net.image_encoder, config.adapter_dim, config.adapter_scale)
        for name, p in net.image_encoder.named_parameters():
            p.requires_grad_(adapters.is_adapter_parameter(name))
    elif mode == "lora":
        net.image_encoder = lora.add_lora(net.image_encoder, config.lora_rank, config.lora_alpha,
                                          config.lora_dropout)
        for name, p in net.image_encoder.named_parameters():
            p.requires_grad_(lora.is_lora_parameter(name))
    if mode in ("adapter", "lora") and config.train_decoder:
        net.mask_decoder.requires_grad_(True)
    return net


def adapter_shape(encoder: nn.Module) -> tuple[int, float] | None:
    """``(adapter_dim, adapter_scale)`` of the adapters ``encoder`` already holds, or None."""
    mlps = [m for m in encoder.modules() if isinstance(m, adapters.AdaptedMlp)]
    if not mlps:
        return None
    return max(m.adapter.down.out_features for m in mlps), float(mlps[0].scale)


def continue_from(net: nn.Module, config: FinetuneConfig) -> FinetuneConfig:
    """``config`` for a loaded network: an adapter checkpoint (its encoder holds adapters) trains
    on in ``adapter`` mode, with its own adapter shape; other modes cannot keep its adapters."""
    shape = adapter_shape(net.image_encoder)
    if shape is None:
        return config
    if config.mode != "adapter":
        raise InputError(f"checkpoint {config.checkpoint} was fine-tuned in adapter mode, not {config.mode}: "
                         "fine-tune it further in adapter mode, or start from the base weights")
    return config.replace(adapter_dim=shape[0], adapter_scale=shape[1])


def mode_of_state(state: dict[str, Any]) -> str | None:
    """The mode a network state dict was trained in, where its keys tell (``adapter``, ``lora``)."""
    if any(adapters.is_adapter_parameter(k) for k in state):
        return "adapter"
    if any(lora.is_lora_parameter(k) for k in state):
        return "lora"
    return None


def set_train_mode(net: nn.Module, mode: str) -> None:
    """Train mode only where weights train: frozen BatchNorm statistics must not move."""
    net.eval()
    net.mask_decoder.train()
    if mode == "full":
        net.image_encoder.train()
    elif mode == "lora":
        for name, module in net.image_encoder.named_modules():
            if "lora_dropout" in name:
                module.train()


def trainable_names(net: nn.Module) -> set[str]:
    return {n for n, p in net.named_parameters() if p.requires_grad}


def export_state(net: nn.Module, config: FinetuneConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict to save (CPU copies) and extra metadata for ``checkpoint["medisam"]``.

    ``full``/``decoder``/``lora`` give base-architecture keys (LoRA merged); ``adapter``
    gives the adapted architecture's keys plus the adapter shape needed to rebuild it.
    """
    extra: dict[str, Any] = {}
    if config.mode == "lora":
        state = {f"image_encoder.{k}": v for k, v in lora.merged_encoder(net.image_encoder).state_dict().items()}
        for part in ("prompt_encoder", "mask_decoder"):
            state.update({f"{part}.{k}": v for k, v in getattr(net, part).state_dict().items()})
    else:
        state = net.state_dict()
    if config.mode == "adapter":
        extra["adapter"] = adapters.adapter_metadata(config.adapter_dim, config.adapter_scale)
    return {k: v.detach().cpu().clone() for k, v in state.items()}, extra


class PromptedSegmenter(nn.Module):
    """Training forward shared by every mode (and wrapped by DDP when distributed).

    ``forward(inputs, prompts)``: ``inputs`` is ``(B, 3, S, S)`` preprocessed images, or
    ``(B, C, h, w)`` cached embeddings when ``from_embeddings``; ``prompts[b]`` holds the K_b
    prompts of image ``b`` on the model grid. Returns per image ``(low_res (K, 1, L, L), iou (K, 1))``.
    SAM's decoder takes one image with many prompts, so images are decoded one at a time.
    """

    def __init__(self, net: nn.Module, from_embeddings: bool):
        super().__init__()
        self.net = net
        self.from_embeddings = from_embeddings

    def forward(self, inputs: torch.Tensor, prompts: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.from_embeddings:
            embeddings = inputs
        elif any(p.requires_grad for p in self.net.image_encoder.parameters()):
            embeddings = self.net.image_encoder(inputs)
        else:
            with torch.no_grad():
                embeddings = self.net.image_encoder(inputs)
        outputs = []
        dense_pe = self.net.prompt_encoder.get_dense_pe()
        for b, p in enumerate(prompts):
            points = None if p["points"] is None else (p["points"], p["point_labels"])
            sparse, dense = self.net.prompt_encoder(points=points, boxes=p["boxes"], masks=None)
            low_res, iou = self.net.mask_decoder(
                image_embeddings=embeddings[b:b + 1], image_pe=dense_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=False)
            outputs.append((low_res, iou))
        return outputs
