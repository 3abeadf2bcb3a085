"""A faster, numerically equivalent prompt decoder graph for the ONNX Runtime / OpenVINO backends.

SAM's mask decoder (LiteMedSAM's too) spends most of its ~3.6 GFLOP on the 4096 image
tokens: in each cross attention it projects them to keys/values or queries (256 -> 128)
and back (128 -> 256), with head split/merge transposes around every product, and its
output upscaling runs two ConvTranspose layers in NCHW. With only a handful of prompt
tokens (T = 5 output tokens + the prompt points), the projections can be folded into the
T-sized side, exactly (same function, only the order of sums changes):

- token -> image attention: scores ``S = A @ (keys + pe)^T`` with ``A = q_h @ Wk_h / sqrt(c)``
  per head (``(heads*T, 256)``; the transpose is folded into the product), softmax over the
  image tokens, then ``out = (P @ keys) @ Wv + bv`` (the softmax rows sum to 1, so the value
  bias passes through); the key bias adds a constant per row and cancels in the softmax.
- image -> token attention: ``S^T = G^T @ (keys + pe)^T + g`` with ``G = Wq @ k_h^T / sqrt(c)``,
  kept with the image tokens last so that the softmax over the T tokens of each head reduces
  across rows, vectorised along the image tokens (a 7-wide softmax per image token ran ~8x
  slower in OpenVINO), then ``y = P @ H + bo`` with ``H = v_h @ Wo_h``.
- output upscaling in channels-last "blocked" order: each stride-2 ConvTranspose is one
  matmul producing the 2x2 children of every pixel; the pixel order is restored once, on
  the final 4-mask output.

The image-side work falls from ~1.8 to ~1.0 GMAC and no large tensor is transposed inside
the graph: its input is the embedding already channels-last (:func:`image_tokens`, kept per
embedding by the backends) and its mask output stays in the blocked order, which
:func:`unshuffle_masks` undoes only for the masks the caller keeps.

- only a window of the grid is upscaled (the ``window`` input: rows and columns of the
  embedding grid, the prompts' reach; :mod:`medisam.models.upscale_window`). The upscaling
  is local, every embedding token alone giving its 4x4 block of logits (stride-2 kernel-2
  ConvTransposes, a per-pixel layer norm, pointwise GELUs and hypernetwork product), so the
  window's logits are exactly the full graph's there; the caller fills the rest and
  upscales the whole grid where a kept mask reaches the window's edge.
Inputs and outputs are those of :class:`medisam.export.onnx_export.PromptDecoderGraph`
without the mask prompt (``mask_input``/``has_mask_input``; its downscaling branch costs
~1 ms even when unused): the backends run this graph for box/point prompts and the full
graph when a mask prompt is given. :func:`check_equivalent` compares it
with the torch decoder before a backend uses it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from medisam.export.onnx_export import PromptDecoderGraph

#: label of a padding point: no token of the transformer attends to it, so a prompt padded with
#: such points gives the unpadded prompt's outputs (SAM's own pad, label -1, is a real token and is
#: attended). The backends pad prompts to a few fixed point counts to reuse a static compilation.
PAD_LABEL = -2.0
#: the attention score given to a padding point's key: its softmax weight underflows to exactly 0
_MASKED = -30000.0


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, T, H*c)`` -> ``(B, T, H, c)``."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1)


def token_bias(point_labels: torch.Tensor, output_tokens: int) -> torch.Tensor:
    """``(B, T)`` attention score bias of the transformer's tokens as keys: 0, and
    :data:`_MASKED` for the padding points (label :data:`PAD_LABEL`); the output tokens come first."""
    pad = (point_labels == PAD_LABEL).to(torch.float32) * _MASKED
    return torch.cat([torch.zeros_like(pad[:, :1]).expand(-1, output_tokens), pad], dim=1)


def _self_attention(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """SAM's ``Attention.forward`` among the tokens, with ``bias`` ``(B, T)`` added to every
    query's scores (the keys of padding points get weight 0; a bias of 0 changes nothing)."""
    heads = attn.num_heads
    q, k, v = (_heads(proj(x), heads).transpose(1, 2) for proj, x in ((attn.q_proj, q), (attn.k_proj, k),
                                                                       (attn.v_proj, v)))
    scores = q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias[:, None, None, :]
    out = torch.softmax(scores, dim=-1) @ v
    b, _, t, c = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, heads * c))


class FastPromptDecoderGraph(PromptDecoderGraph):
    """Same inputs/outputs as :class:`PromptDecoderGraph`; folded attention, blocked upscaling;
    points of label :data:`PAD_LABEL` are padding that no token attends to."""

    def _token_to_image(self, attn: nn.Module, q_in: torch.Tensor, keys_pe: torch.Tensor,
                        keys: torch.Tensor) -> torch.Tensor:
        """``attn(q=q_in, k=keys_pe, v=keys)`` with ``q_in`` (B, T, C) tokens, ``keys*`` (B, N, C)."""
        heads = attn.num_heads
        b, t, _ = q_in.shape
        q = _heads(attn.q_proj(q_in), heads)                              # (B, T, H, c)
        c = q.shape[-1]
        wk = attn.k_proj.weight.reshape(heads, c, -1)                     # (H, c, C)
        a = torch.einsum("hcd,bthc->bhtd", wk, q).reshape(b, heads * t, -1) / math.sqrt(c)
        # scores with the image tokens last (a transposed-B product, no transpose of keys)
        p = torch.softmax(torch.matmul(a, keys_pe.transpose(1, 2)), dim=-1)  # (B, H*T, N)
        m = torch.matmul(p, keys)                                         # (B, H*T, C)
        wv = attn.v_proj.weight.t().reshape(-1, heads, c)                 # (C, H, c)
        out = torch.einsum("bhtd,dhc->bthc", m.reshape(b, heads, t, -1), wv).reshape(b, t, heads * c)
        return attn.out_proj(out + attn.v_proj.bias)

    def _image_to_token(self, attn: nn.Module, keys_pe: torch.Tensor, k_in: torch.Tensor,
                        v_in: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``residual + attn(q=keys_pe, k=k_in, v=v_in)`` with ``keys_pe``/``residual`` (B, N, C),
        ``k_in``/``v_in`` (B, T, C), ``bias`` (B, T) added to the token keys' scores. The output bias
        joins the residual first (OpenVINO's bf16 MatMul+bias fusion fails on the dynamic-shaped product otherwise)."""
        heads = attn.num_heads
        b, t, _ = k_in.shape
        k = _heads(attn.k_proj(k_in), heads)                              # (B, T, H, c)
        v = _heads(attn.v_proj(v_in), heads)
        c = k.shape[-1]
        wq = attn.q_proj.weight.t().reshape(-1, heads, c)                 # (C, H, c)
        g = torch.einsum("dhc,bthc->bhtd", wq, k).reshape(b, heads * t, -1) / math.sqrt(c)
        g0 = torch.einsum("hc,bthc->bht", attn.q_proj.bias.reshape(heads, c), k).reshape(b, heads * t, 1) / math.sqrt(c)
        g0 = g0 + bias[:, None, :].expand(-1, heads, -1).reshape(b, heads * t, 1)  # on the small side
        # scores with the image tokens last, softmax over the T tokens of each head: the
        # reduction runs across rows, vectorised along the 4096 image tokens
        s = torch.matmul(g, keys_pe.transpose(1, 2)) + g0                 # (B, H*T, N)
        p = torch.softmax(s.reshape(b, heads, t, -1), dim=2).reshape(b, heads * t, -1)
        wo = attn.out_proj.weight.t().reshape(heads, c, -1)               # (H, c, C)
        h = torch.einsum("bthc,hce->bhte", v, wo).reshape(b, heads * t, -1)
        return (residual + attn.out_proj.bias) + torch.matmul(p.transpose(1, 2), h)

    def _transformer(self, src: torch.Tensor, pe: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor):
        """TwoWayTransformer.forward on channels-last ``src`` (B, N, C) and ``pe`` (1, N, C);
        ``bias`` (B, T): :func:`token_bias`."""
        tf = self.mask_decoder.transformer
        queries, keys = tokens, src
        for layer in tf.layers:
            if layer.skip_first_layer_pe:
                queries = _self_attention(layer.self_attn, queries, queries, queries, bias)
            else:
                q = queries + tokens
                queries = queries + _self_attention(layer.self_attn, q, q, queries, bias)
            queries = layer.norm1(queries)
            keys_pe = keys + pe
            queries = layer.norm2(queries + self._token_to_image(layer.cross_attn_token_to_image,
                                                                 queries + tokens, keys_pe, keys))
            queries = layer.norm3(queries + layer.mlp(queries))
            keys = layer.norm4(self._image_to_token(layer.cross_attn_image_to_token, keys_pe,
                                                    queries + tokens, queries, keys, bias))
        attn_out = self._token_to_image(tf.final_attn_token_to_image, queries + tokens, keys + pe, keys)
        return tf.norm_final_attn(queries + attn_out), keys

    def _window_tokens(self, keys: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """The tokens of rows ``window[0]:window[1]`` and columns ``window[2]:window[3]`` of the
        embedding grid, channels-last ``(B, rows*cols, C)`` (dynamic bounds: two Gathers in ONNX)."""
        side = int(self.prompt_encoder.image_embedding_size[0])
        b, _, c = keys.shape
        grid = keys.reshape(b, side, side, c)
        rows, cols = torch.arange(window[0], window[1]), torch.arange(window[2], window[3])
        return torch.index_select(torch.index_select(grid, 1, rows), 2, cols).reshape(b, -1, c)

    def _upscale_masks(self, src: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
        """``output_upscaling`` + hypernetwork product on channels-last ``src`` (B, h*w, C), a
        window of ``h`` rows and ``w`` columns of the grid.

        Returns the mask logits in blocked order ``(B, h*w*16, M)`` (M mask tokens):
        row ``((((i*w + j)*2 + a)*2 + b)*2 + c)*2 + d`` is pixel ``(4i + 2a + c, 4j + 2b + d)``;
        :func:`unshuffle_masks` restores ``(B, K, 4*h, 4*w)`` for the masks a caller keeps.
        """
        up = self.mask_decoder.output_upscaling
        conv1, norm, act1, conv2, act2 = up[0], up[1], up[2], up[3], up[4]
        b = src.shape[0]
        c1, c2 = conv1.out_channels, conv2.out_channels
        # one 2D GEMM with bias per ConvTranspose: columns (a, b, C_out) = the 2x2 children
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(conv1.in_channels, 4 * c1)
        y = F.linear(src.reshape(-1, conv1.in_channels), w1.t(), conv1.bias.repeat(4)).reshape(-1, c1)
        y = act1(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        y = act2(F.linear(y, w2.t(), conv2.bias.repeat(4)).reshape(b, -1, c2))  # rows (h, w, a, b, c, d)
        return torch.matmul(y, hyper_in.transpose(1, 2))                         # (B, N*16, M)

    def _decoded(self, image_tokens: torch.Tensor, point_coords: torch.Tensor,
                 point_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two-way transformer on the prompts: output tokens ``hs`` (B, T, C), image
        tokens ``keys`` (B, N, C) and the IoU predictions (B, 4)."""
        pe_mod, dec = self.prompt_encoder, self.mask_decoder
        sparse = self._embed_points(point_coords, point_labels)
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        src = (image_tokens + pe_mod.no_mask_embed.weight).expand(tokens.shape[0], -1, -1)   # (B, N, C)
        pe = self.dense_pe.flatten(2).transpose(1, 2)                              # (1, N, C), a constant
        hs, keys = self._transformer(src, pe, tokens, token_bias(point_labels, output_tokens.shape[1]))
        return hs, keys, dec.iou_prediction_head(hs[:, 0, :])

    def forward(self, image_tokens: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box/point prompts without a mask prompt (the common case; with a mask prompt the
        backends run the full :class:`PromptDecoderGraph`).

        ``image_tokens``: the embedding channels-last, ``(1, side*side, C)`` (see :func:`image_tokens`;
        the backends keep it per embedding, so several prompts on one image transpose once);
        ``window``: int64 ``(4,)`` = first row, end row, first column, end column of the grid to upscale.
        Returns the window's blocked mask logits ``(B, h*w*16, 4)`` (see :meth:`_upscale_masks`) and IoU ``(B, 4)``.
        """
        dec = self.mask_decoder
        hs, keys, iou = self._decoded(image_tokens, point_coords, point_labels)
        mask_tokens = hs[:, 1:1 + dec.num_mask_tokens, :]
        hyper_in = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)],
                               dim=1)
        return self._upscale_masks(self._window_tokens(keys, window), hyper_in), iou


class BestOfBoxesDecoderGraph(FastPromptDecoderGraph):
    """The fast graph for "the best of several boxes" (a propagation step's margins): every
    prompt runs through the transformer, but only the winner's single mask is upscaled (in ``window``).

    The output upscaling is ~30% of a prompt's decoder time on a CPU; a step that tries three
    margins upscaled all three and kept one. Returns the winner's blocked single-mask logits
    ``(1, h*w*16, 1)``, the IoU of every prompt ``(B, 4)`` and the winner's index ``(1,)``
    (``argmax`` of the single-mask IoU: the first of equal scores). The caller checks the
    index against its own rule on the returned IoU (:func:`medisam.models.decoder_feeds.decode_best_fast`).
    """

    def forward(self, image_tokens: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hs, keys, iou = self._decoded(image_tokens, point_coords, point_labels)
        best = torch.argmax(iou[:, 0], dim=0, keepdim=True)                         # (1,)
        hyper_in = self.mask_decoder.output_hypernetworks_mlps[0](hs[:, 1, :])[:, None, :]  # (B, 1, c)
        blocked = self._upscale_masks(self._window_tokens(torch.index_select(keys, 0, best), window),
                                      torch.index_select(hyper_in, 0, best))
        return blocked, iou, best


def image_tokens(embedding: np.ndarray) -> np.ndarray:
    """``(1, C, h, w)`` embedding -> ``(1, h*w, C)`` contiguous channels-last tokens (the fast graph's input)."""
    b, c = embedding.shape[:2]
    flat = embedding.reshape(b, c, -1)
    if b == 1 and flat.dtype == np.float32:  # OpenCV's blocked transpose: ~10x numpy's strided copy
        return cv2.transpose(np.ascontiguousarray(flat[0]))[None]
    return np.ascontiguousarray(flat.transpose(0, 2, 1))


def pad_points(coords: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, N, 2)`` coords and ``(B, N)`` labels padded to ``count`` points with ``(0, 0)`` points of
    label :data:`PAD_LABEL` (the fast graphs give the unpadded prompt's outputs)."""
    b, n = labels.shape
    if count < n:
        raise ValueError(f"cannot pad {n} points to {count}")
    out_c = np.zeros((b, count, 2), dtype=np.float32)
    out_l = np.full((b, count), PAD_LABEL, dtype=np.float32)
    out_c[:, :n], out_l[:, :n] = coords, labels
    return out_c, out_l


def unshuffle_masks(blocked: np.ndarray, keep: slice, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Blocked ``(B, h*w*16, M)`` logits of an ``h`` x ``w`` window of the grid (square when
    ``hw`` is None) -> ``(B, K, 4*h, 4*w)`` for masks ``keep``."""
    b, rows, _ = blocked.shape
    if hw is None:
        side = int(round(math.sqrt(rows // 16)))
        hw = (side, side)
    h, w = hw
    sel = blocked[:, :, keep]
    k = sel.shape[-1]
    grid = sel.reshape(b, h, w, 2, 2, 2, 2, k).transpose(0, 7, 1, 3, 5, 2, 4, 6)
    return np.ascontiguousarray(grid).reshape(b, k, 4 * h, 4 * w)


@torch.no_grad()
def check_equivalent(net: nn.Module, input_size: int, atol: float = 1e-3) -> float:
    """Max abs difference of the fast decoders' logits and IoU (:class:`FastPromptDecoderGraph`,
    :class:`BestOfBoxesDecoderGraph`) from the torch decoder's (:class:`PromptDecoderGraph`) on a
    random embedding, box, points and mask prompts, upscaling the whole grid and a window of it.

    Raises AssertionError above ``atol``, or when the best-of-boxes graph picks another prompt
    than :func:`~medisam.models.promptable.first_best` of its own IoU.
    """
    from medisam.models.promptable import first_best

    ref, fast = PromptDecoderGraph(net, input_size).eval(), FastPromptDecoderGraph(net, input_size).eval()
    best = BestOfBoxesDecoderGraph(net, input_size).eval()
    gen = torch.Generator().manual_seed(0)
    side = int(net.prompt_encoder.image_embedding_size[0])
    low = int(net.prompt_encoder.mask_input_size[0])
    emb = torch.randn(1, 256, side, side, generator=gen)
    tokens = torch.from_numpy(image_tokens(emb.numpy()))
    cases = [
        (torch.tensor([[[10.0, 12.0], [input_size * 0.6, input_size * 0.7]]]), torch.tensor([[2.0, 3.0]])),
        (torch.tensor([[[30.0, 40.0], [5.0, 9.0], [0.0, 0.0]]]), torch.tensor([[1.0, 0.0, -1.0]])),
        (torch.rand(3, 2, 2, generator=gen) * input_size, torch.tensor([[2.0, 3.0]]).expand(3, 2)),
    ]
    scale = low // side  # logits per token along each axis
    whole = torch.tensor([0, side, 0, side])
    part = torch.tensor([side // 4, side - 1, 1, side // 2])  # rows 1/4..end-1, columns 1..1/2
    r0, r1, c0, c1 = (int(v) * scale for v in part)
    hw = (int(part[1] - part[0]), int(part[3] - part[2]))
    worst = 0.0
    for coords, labels in cases:
        a = ref(emb, coords, labels, torch.zeros(1, 1, low, low), torch.zeros(1))
        blocked, iou = fast(tokens, coords, labels, whole)
        masks = unshuffle_masks(blocked.numpy(), slice(None))
        window = unshuffle_masks(fast(tokens, coords, labels, part)[0].numpy(), slice(None), hw)
        worst = max(worst, float(np.abs(a[0].numpy() - masks).max()), float((a[1] - iou).abs().max()),
                    float(np.abs(a[0].numpy()[:, :, r0:r1, c0:c1] - window).max()))
        one, iou_best, index = best(tokens, coords, labels, whole)
        i = int(index[0])
        rule = first_best(iou_best[:, 0].numpy())
        if i != rule:
            raise AssertionError(f"the best-of-boxes graph picks prompt {i}, the rule {rule}")
        one_part = unshuffle_masks(best(tokens, coords, labels, part)[0].numpy(), slice(None), hw)[0, 0]
        winner = a[0][i, 0].numpy()
        worst = max(worst, float(np.abs(winner - unshuffle_masks(one.numpy(), slice(None))[0, 0]).max()),
                    float((a[1] - iou_best).abs().max()), float(np.abs(winner[r0:r1, c0:c1] - one_part).max()))
    for coords, labels in cases[:2]:  # padded with PAD_LABEL points: the unpadded prompt's outputs
        a = ref(emb, coords, labels, torch.zeros(1, 1, low, low), torch.zeros(1))
        padded = pad_points(coords.numpy(), labels.numpy(), coords.shape[1] + 3)
        blocked, iou = fast(tokens, torch.from_numpy(padded[0]), torch.from_numpy(padded[1]), whole)
        worst = max(worst, float(np.abs(a[0].numpy() - unshuffle_masks(blocked.numpy(), slice(None))).max()),
                    float((a[1] - iou).abs().max()))
    if worst > atol:
        raise AssertionError(f"fast decoder differs from the torch decoder by {worst:.2e} (> {atol})")
    return worst
