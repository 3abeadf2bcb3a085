"""Export cache of the onnx/openvino backends: the ONNX graphs of each model + weights, the int8
encoder and the fast prompt decoder, written once under ``<cache>/onnx/`` (atomic renames)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from medisam.models.promptable import PromptableModel
from medisam.models.runtime import cache_root, progress

log = logging.getLogger(__name__)


def weights_key(model: PromptableModel) -> str:
    """Checkpoint sha256, or for seeded random test weights a hash of the state dict."""
    if model.checkpoint_sha256:
        return model.checkpoint_sha256[:16]
    digest = hashlib.sha256()
    for name, tensor in sorted(model.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "random-" + digest.hexdigest()[:12]


def export_folder(model: PromptableModel) -> Path:
    """Where :func:`cached_export` keeps ``model``'s graphs: one folder per model, weights, opset and format."""
    from medisam.export.onnx_export import DEFAULT_OPSET, EXPORT_FORMAT_VERSION

    return cache_root() / "onnx" / (f"{model.spec.name}-{weights_key(model)}-"
                                    f"op{DEFAULT_OPSET}-v{EXPORT_FORMAT_VERSION}")


def is_exported(model: PromptableModel) -> bool:
    """Whether :func:`cached_export` finds ``model``'s graphs (made from these exact weights bytes: a file
    with this hash was read and exported before, so it needs no reading now)."""
    from medisam.export.onnx_export import OnnxExport

    return OnnxExport(export_folder(model)).is_complete()


def cached_export(model: PromptableModel) -> Path:
    """The cache folder holding ``model``'s ONNX export, exporting it on first use.

    Exports into a temporary folder and renames it into place, so concurrent processes
    never read a half-written graph (the loser of a race discards its copy). The weights are
    read before the export is announced: a bad checkpoint is one error line, not an
    "exporting ..." line and then the error.
    """
    from medisam.export.onnx_export import OnnxExport, export_onnx

    folder = export_folder(model)
    if OnnxExport(folder).is_complete():
        return folder
    model.net  # noqa: B018 - builds a lazy network now: reads and checks the checkpoint (CheckpointError)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        t0 = time.perf_counter()
        progress(f"exporting {model.spec.name} to ONNX for the fast backends (first use only) -> {folder}")
        export_onnx(model, tmp, force=True)
        progress(f"export done in {time.perf_counter() - t0:.0f} s")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not OnnxExport(folder).is_complete():
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def quantized_encoder(folder: Path) -> Path:
    """``encoder.int8.onnx``: the encoder with dynamically quantised MatMul/Gemm weights (s8).

    Only MatMul/Gemm: quantised Conv (ConvInteger) runs slower than fp32 in ONNX Runtime on
    CPU, measured here. Written once per export folder.
    """
    target = folder / "encoder.int8.onnx"
    if target.is_file():
        return target
    from medisam.errors import require

    quant = require("onnxruntime.quantization", "onnx")
    tmp = folder / f".encoder.int8.{os.getpid()}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser warns about pre-processing on the root logger
    try:
        quant.quantize_dynamic(str(folder / "encoder.onnx"), str(tmp),
                               op_types_to_quantize=["MatMul", "Gemm"],
                               weight_type=quant.QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, target)
    return target


#: Bumped whenever :mod:`medisam.models.fast_decoder` changes the graph it exports.
FAST_DECODER_VERSION = 5
#: The same for :class:`medisam.models.fast_decoder.BestOfBoxesDecoderGraph`.
BEST_DECODER_VERSION = 3


def fast_decoder_enabled() -> bool:
    """False when ``$MEDISAM_FAST_DECODER=0`` (run the exported decoder graph as is)."""
    return os.environ.get("MEDISAM_FAST_DECODER", "1") != "0"


def fast_decoder(model: PromptableModel, folder: Path) -> Path | None:
    """``decoder.fast.v<N>.onnx`` in the export folder: the folded prompt decoder for box/point
    prompts (see :mod:`medisam.models.fast_decoder`), written once after checking it against
    the torch decoder. None when disabled or when the check or the export fails (the
    backends then use ``decoder.onnx`` for every prompt)."""
    return folded_decoders(model, folder)[0]


def folded_decoders(model: PromptableModel, folder: Path) -> tuple[Path | None, Path | None]:
    """The two graphs of :mod:`medisam.models.fast_decoder` in the export folder, written once
    after one :func:`~medisam.models.fast_decoder.check_equivalent` of both: ``decoder.fast.v<N>.onnx``
    (box/point prompts; see :func:`fast_decoder`) and ``decoder.best.v<N>.onnx`` (the best of
    several boxes, a propagation step's margins: only the winner is upscaled; None -> the
    backends decode every box and keep the best). Both None when disabled or the check fails."""
    if not fast_decoder_enabled():
        return None, None
    targets = (folder / f"decoder.fast.v{FAST_DECODER_VERSION}.onnx",
               folder / f"decoder.best.v{BEST_DECODER_VERSION}.onnx")
    if all(t.is_file() for t in targets):
        return targets
    from medisam.models.fast_decoder import check_equivalent

    try:
        net = model.net.cpu().eval()
        worst = check_equivalent(net, model.spec.input_size)
    except Exception as exc:  # never fatal: the exported decoder still works
        log.warning("fast decoders unavailable for %s (%s); using decoder.onnx", model.spec.name, exc)
        return None, None
    fast, best = (t if t.is_file() else _export_folded(model, t, best=i == 1, worst=worst)
                  for i, t in enumerate(targets))
    return fast, (best if fast is not None else None)


def _export_folded(model: PromptableModel, target: Path, best: bool, worst: float) -> Path | None:
    """Export one checked graph of :mod:`medisam.models.fast_decoder` to ``target`` (atomic rename)."""
    import warnings

    from medisam.models.fast_decoder import BestOfBoxesDecoderGraph, FastPromptDecoderGraph

    tmp = target.with_name(f".{target.name}.{os.getpid()}.onnx")
    outputs = ["blocked_logits", "iou_predictions"] + (["best_index"] if best else [])
    dynamic = {"point_coords": {0: "num_prompts", 1: "num_points"},
               "point_labels": {0: "num_prompts", 1: "num_points"},
               "iou_predictions": {0: "num_prompts"}}
    dynamic["blocked_logits"] = {1: "window_logits"} if best else {0: "num_prompts", 1: "window_logits"}
    try:
        net = model.net.cpu().eval()
        size = model.spec.input_size
        side = int(net.prompt_encoder.image_embedding_size[0])
        args = (torch.zeros(1, side * side, 256), torch.tensor([[[10.0, 10.0], [50.0, 60.0]]]),
                torch.tensor([[2.0, 3.0]]), torch.tensor([0, side, 0, side]))
        graph = (BestOfBoxesDecoderGraph if best else FastPromptDecoderGraph)(net, size).eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, args, str(tmp),
                              input_names=["image_tokens", "point_coords", "point_labels", "window"],
                              output_names=outputs, dynamic_axes=dynamic,
                              opset_version=17, do_constant_folding=True, dynamo=False)
        os.replace(tmp, target)
        log.info("%s for %s written to %s (max diff vs torch %.1e)", target.name, model.spec.name, target, worst)
        return target
    except Exception as exc:  # never fatal: the exported decoder still works
        log.warning("%s unavailable for %s (%s); using decoder.onnx", target.name, model.spec.name, exc)
        return None
    finally:
        tmp.unlink(missing_ok=True)
