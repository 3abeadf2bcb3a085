"""Export-time forwards of LiteMedSAM's TinyViT blocks that move the same data with cheaper transposes.

TinyViT switches between tokens ``(B, L, C)`` and feature maps ``(B, C, H, W)`` around every
depth-wise convolution, with ``transpose(1, 2)`` on the 3D token tensor. OpenVINO's CPU plugin
runs that 3D transpose with a generic kernel (about a seventh of the bf16 encoder's time on a
Sapphire Rapids core), while the same move written as a 4D ``NHWC <-> NCHW`` permute is a
layout change it handles with fast reorders or folds into the convolution. The functions here
are the blocks' own ``forward`` with only those reshapes rewritten (same values, bit-identical
in torch); :func:`channels_last_friendly` swaps them into a copy made for export, never into
the model used for inference.

The window attention's one ``qkv`` projection is split per head into q, k and v by a
``VariadicSplit`` that OpenVINO runs with a reference kernel (~4 % of the bf16 encoder on an
AMX Xeon, docs/speed.md). The export copy computes q, k and v with three projections whose
weights are the ``qkv`` rows of each (:func:`_split_qkv`): the same products, no split (equal
in torch up to float32 summation order: GEMMs of other widths).
"""

from __future__ import annotations

import types

import torch
import torch.nn as nn
import torch.nn.functional as F


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)`` as one 4D permute."""
    b, c = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(b, -1, c)


def _patch_merging_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``PatchMerging.forward`` ending in :func:`_tokens`."""
    if x.ndim == 3:
        h, w = self.input_resolution
        x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
    x = self.act(self.conv1(x))
    x = self.act(self.conv2(x))
    return _tokens(self.conv3(x))


def _block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``TinyViTBlock.forward`` (window attention, local conv, MLP) in eval mode, with the
    local convolution entered and left through 4D permutes."""
    h, w = self.input_resolution
    b, length, c = x.shape
    ws = self.window_size
    shortcut = x
    if h == ws and w == ws:
        x = self.attn(x)
    else:
        x = x.view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w].contiguous()
        x = x.view(b, length, c)
    x = shortcut + self.drop_path(x)
    x = _tokens(self.local_conv(x.view(b, h, w, c).permute(0, 3, 1, 2)))
    return x + self.drop_path(self.mlp(x))


def _attention_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """TinyViT ``Attention.forward`` with q, k and v from their own projections (:func:`_split_qkv`)."""
    b, n, _ = x.shape
    x = self.norm(x)
    q = F.linear(x, self.q_weight, self.q_bias).view(b, n, self.num_heads, self.key_dim).permute(0, 2, 1, 3)
    k = F.linear(x, self.k_weight, self.k_bias).view(b, n, self.num_heads, self.key_dim).permute(0, 2, 1, 3)
    v = F.linear(x, self.v_weight, self.v_bias).view(b, n, self.num_heads, self.d).permute(0, 2, 1, 3)
    bias = self.ab if not self.training and hasattr(self, "ab") else self.attention_biases[:, self.attention_bias_idxs]
    attn = ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.dh))


def _split_qkv(attn: nn.Module) -> None:
    """Give a TinyViT ``Attention`` the buffers ``{q,k,v}_{weight,bias}``: the rows of its ``qkv``
    projection that its ``view(B, N, heads, -1).split([key_dim, key_dim, d])`` sends to each."""
    per_head = 2 * attn.key_dim + attn.d
    starts = torch.arange(attn.num_heads)[:, None] * per_head
    rows = {"q": starts + torch.arange(attn.key_dim),
            "k": starts + attn.key_dim + torch.arange(attn.key_dim),
            "v": starts + 2 * attn.key_dim + torch.arange(attn.d)}
    weight, bias = attn.qkv.weight.detach(), attn.qkv.bias.detach()
    for name, index in rows.items():
        attn.register_buffer(f"{name}_weight", weight[index.reshape(-1)].clone())
        attn.register_buffer(f"{name}_bias", bias[index.reshape(-1)].clone())


def _attention_swap(attn: nn.Module) -> None:
    _split_qkv(attn)
    attn.forward = types.MethodType(_attention_forward, attn)


_FORWARDS = {"PatchMerging": _patch_merging_forward, "TinyViTBlock": _block_forward}


def channels_last_friendly(net: nn.Module) -> int:
    """Swap the forwards of TinyViT's ``PatchMerging``, ``TinyViTBlock`` and window ``Attention``
    modules in ``net`` (a copy made for export) for the ones above; returns how many were swapped (0 for other
    encoders, which are left as they are)."""
    swapped = 0
    for module in list(net.modules()):
        forward = _FORWARDS.get(type(module).__name__)
        if forward is not None and hasattr(module, "input_resolution"):
            module.forward = types.MethodType(forward, module)
            swapped += 1
        elif type(module).__name__ == "Attention" and hasattr(module, "qkv") and hasattr(module, "key_dim"):
            _attention_swap(module)
            swapped += 1
    return swapped
