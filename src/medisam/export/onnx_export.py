"""Export a :class:`PromptableModel` to two ONNX graphs plus a metadata JSON.

Files written into the output folder:

- ``encoder.onnx``: ``image`` ``(1, 3, S, S)`` float32 (already preprocessed, see
  ``metadata.json``) -> ``image_embeddings`` ``(1, C, h, w)``.
- ``decoder.onnx``: prompt encoder + mask decoder, as SAM's own ONNX export.
  Inputs ``image_embeddings`` ``(1, C, h, w)``; ``point_coords`` ``(B, N, 2)`` XY on the
  model input grid (pixels of the ``S x S`` square); ``point_labels`` ``(B, N)`` float
  (1 positive, 0 negative, -1 padding, 2/3 top-left/bottom-right box corner);
  ``mask_input`` ``(B or 1, 1, L, L)`` low-res logits and ``has_mask_input`` ``(1,)``
  (1.0 when ``mask_input`` is used). ``B`` (prompts) and ``N`` (points) are dynamic.
  Outputs ``low_res_logits`` ``(B, 4, L, L)`` (mask 0: single-mask output, masks 1-3:
  multimask outputs) and ``iou_predictions`` ``(B, 4)``.
- ``metadata.json``: model name, input size, preprocessing, checkpoint sha256, opset,
  tensor names, so another runtime can reproduce medisam's preprocessing.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from medisam.errors import ModelError, OutputExistsError, require
from medisam.export.tinyvit_export import channels_last_friendly
from medisam.models.promptable import IMAGENET_MEAN, IMAGENET_STD, PromptableModel

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: Opsets the graphs export at: einsum (SAM's attention) needs 12; the top is torch's exporter's own.
MIN_OPSET = 12
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
METADATA_FILE = "metadata.json"

#: Bumped whenever the graphs' inputs/outputs or their layout change (part of the backend
#: cache key; 3: TinyViT exported with 4D permutes; 4: and with q/k/v as three projections).
EXPORT_FORMAT_VERSION = 4


def max_opset() -> int:
    """The highest opset torch's (TorchScript) ONNX exporter writes."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def check_opset(opset: int) -> int:
    """``opset`` if the graphs can be exported at it, else a one-line ModelError (torch raised
    deep in the export, after the model loaded, for opset 5 or 99)."""
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise ModelError(f"opset {opset} is not supported: the graphs export at opsets {MIN_OPSET}..{top} "
                         f"(default {DEFAULT_OPSET})")
    return opset


class ChannelsLastLayerNorm(nn.Module):
    """``LayerNorm2d`` (normalise over C of NCHW) as transpose + ``layer_norm`` + transpose.

    Same numbers; ONNX Runtime and OpenVINO then run one fused LayerNormalization kernel
    instead of the ReduceMean/Sub/Pow/Sqrt/Div chain (measured: the decoder's output
    upscaling spent ~10% of its time there).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.eps = float(eps)
        self.normalized_shape = (int(weight.numel()),)  # a constant, not a traced shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape,
                                           self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def export_friendly(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` with every ``LayerNorm2d`` (SAM's or TinyViT's) swapped for
    :class:`ChannelsLastLayerNorm` and TinyViT's token/feature-map moves written as 4D permutes
    (:mod:`medisam.export.tinyvit_export`); the loaded model is left untouched."""
    net = copy.deepcopy(net)
    channels_last_friendly(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "LayerNorm2d" and hasattr(child, "eps"):
                setattr(parent, name, ChannelsLastLayerNorm(child.weight, child.bias, child.eps))
    return net


class EncoderGraph(nn.Module):
    """The image encoder alone (preprocessing stays in Python, as documented in the metadata)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.image_encoder = net.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class PromptDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder with tensor-only inputs (SAM's ``SamOnnxModel`` scheme).

    Reproduces ``PromptEncoder.forward`` exactly: points get +0.5 and the random-Fourier
    positional encoding; label -1 is the "not a point" embedding with zero positional
    encoding; labels 0/1/2/3 add the negative/positive/box-corner embeddings. Returns all
    four decoder masks so the caller picks single-mask (index 0) or multimask (1..3).
    """

    def __init__(self, net: nn.Module, input_size: int):
        super().__init__()
        self.prompt_encoder = net.prompt_encoder
        self.mask_decoder = net.mask_decoder
        self.input_size = float(input_size)
        self.register_buffer("dense_pe", net.prompt_encoder.get_dense_pe().detach().clone())

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        normalised = (coords + 0.5) / self.input_size
        embedding = pe.pe_layer._pe_encoding(normalised)
        labels = labels.unsqueeze(-1).expand_as(embedding)
        embedding = embedding * (labels != -1).to(embedding.dtype)
        embedding = embedding + pe.not_a_point_embed.weight * (labels == -1).to(embedding.dtype)
        for i in range(pe.num_point_embeddings):
            embedding = embedding + pe.point_embeddings[i].weight * (labels == i).to(embedding.dtype)
        return embedding

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor, mask_input: torch.Tensor,
                has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pe = self.prompt_encoder
        sparse = self._embed_points(point_coords, point_labels)
        has_mask = has_mask_input.reshape(1, 1, 1, 1)
        dense = has_mask * pe.mask_downscaling(mask_input)
        dense = dense + (1 - has_mask) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        masks, iou = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings, image_pe=self.dense_pe,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
        return masks, iou


@dataclass(frozen=True)
class OnnxExport:
    """Paths of one export folder."""

    folder: Path

    @property
    def encoder(self) -> Path:
        return self.folder / ENCODER_FILE

    @property
    def decoder(self) -> Path:
        return self.folder / DECODER_FILE

    @property
    def metadata(self) -> Path:
        return self.folder / METADATA_FILE

    def is_complete(self) -> bool:
        return self.encoder.is_file() and self.decoder.is_file() and self.metadata.is_file()


def export_metadata(model: PromptableModel, opset: int) -> dict:
    """What a runtime needs besides the graphs: names, shapes and the preprocessing recipe."""
    s = model.spec
    embedding = int(model.mask_input_size // 4)
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "model": s.name,
        "family": s.family,
        "checkpoint_sha256": model.checkpoint_sha256,
        "opset": opset,
        "torch_version": torch.__version__,
        "input_size": s.input_size,
        "embedding_shape": [1, 256, embedding, embedding],
        "mask_input_size": model.mask_input_size,
        "preprocessing": {
            "resize": s.resize,
            "interpolation": s.interpolation,
            "intensity": s.intensity,
            "pad": "zero pad bottom/right to input_size x input_size",
            "order": ("resize, then per-image min-max to [0, 1], then pad" if s.intensity == "minmax"
                      else "resize, then (x - mean) / std on 0-255 values, then pad"),
            **({} if s.intensity == "minmax" else {"mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist()}),
            # as the published code reads 8-bit files (masks then match it to the pixel)
            "resize_as_uint8": "an image of whole values in 0..255 is resized as uint8, then made float32; "
                               "other images are resized as float32",
            "resized_hw": ("round(H * input_size / max(H, W)), round(W * ...), at least 1" if s.resize == "longest"
                           else "input_size, input_size"),
            "layout": "NCHW float32, RGB",
        },
        "encoder": {"file": ENCODER_FILE, "inputs": ["image"], "outputs": ["image_embeddings"]},
        "decoder": {
            "file": DECODER_FILE,
            "inputs": ["image_embeddings", "point_coords", "point_labels", "mask_input",
                       "has_mask_input"],
            "outputs": ["low_res_logits", "iou_predictions"],
            "point_labels": {"-1": "padding", "0": "negative", "1": "positive",
                             "2": "box top-left", "3": "box bottom-right"},
            "coords": "XY on the model input grid (pixels of the input_size square): pixel XY times the "
                      "resize's scale",
            "floor_box_coords": bool(s.integer_boxes),  # box corners floored on that grid, as the model was trained
            "padding_point": {"coords": [0.0, 0.0], "label": -1,
                              "when": "a prompt without a box ends with it (points alone decode wrongly without)"},
            "masks": "index 0 single-mask output, 1-3 multimask outputs",
        },
        "postprocessing": "low_res_logits: bilinear to input_size x input_size, crop to the resized image "
                          "(resized_hw), bilinear to the image's H x W, mask = logits > 0",
    }


def _export_graph(module: nn.Module, args: tuple, path: Path, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict, opset: int) -> None:
    with warnings.catch_warnings():  # tracer warnings about Python-side shape asserts
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def export_graphs(model: PromptableModel, folder: Path, opset: int = DEFAULT_OPSET) -> None:
    """Trace both graphs of ``model`` into ``folder`` (which must exist), on CPU, fp32."""
    require("onnx", "onnx")
    net_cpu = export_friendly(model.net).to("cpu").eval()
    size = model.spec.input_size
    image = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        embedding = net_cpu.image_encoder(image)
        _export_graph(EncoderGraph(net_cpu).eval(), (image,), folder / ENCODER_FILE,
                      ["image"], ["image_embeddings"], {}, opset)
        low = model.mask_input_size
        decoder = PromptDecoderGraph(net_cpu, size).eval()
        args = (embedding, torch.tensor([[[10.0, 10.0], [50.0, 60.0]]]),
                torch.tensor([[2.0, 3.0]]), torch.zeros(1, 1, low, low), torch.zeros(1))
        _export_graph(decoder, args, folder / DECODER_FILE,
                      ["image_embeddings", "point_coords", "point_labels", "mask_input",
                       "has_mask_input"],
                      ["low_res_logits", "iou_predictions"],
                      {"point_coords": {0: "num_prompts", 1: "num_points"},
                       "point_labels": {0: "num_prompts", 1: "num_points"},
                       "mask_input": {0: "num_masks"},
                       "low_res_logits": {0: "num_prompts"},
                       "iou_predictions": {0: "num_prompts"}}, opset)
    (folder / METADATA_FILE).write_text(json.dumps(export_metadata(model, opset), indent=2))


def export_onnx(model: PromptableModel, out_dir: str | Path, *, force: bool = False,
                opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``metadata.json`` into ``out_dir``.

    The graphs are written into a temporary sibling folder and moved into place file by
    file, so a crash leaves no half-written model. Existing files are refused unless
    ``force`` (OutputExistsError, before any work).
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    existing = [out / f for f in (ENCODER_FILE, DECODER_FILE, METADATA_FILE) if (out / f).exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} exists; pass force=True to overwrite")
    if not model.spec.capabilities.onnx_export:
        raise ModelError(f"ONNX export supports the litemedsam and sam families, not {model.spec.family}")
    check_opset(opset)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".medisam-onnx-", dir=out))
    try:
        export_graphs(model, tmp, opset)
        for name in (ENCODER_FILE, DECODER_FILE, METADATA_FILE):  # metadata last: marks complete
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed export leaves no folder it made
    log.info("exported %s to %s (opset %d)", model.spec.name, out, opset)
    return OnnxExport(out)


def read_export_metadata(folder: str | Path) -> dict:
    """The ``metadata.json`` of an export folder (ModelError when missing or unreadable)."""
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read ONNX export metadata {path}: {exc}") from exc
