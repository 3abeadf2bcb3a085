"""ONNX Runtime backend: the exported encoder and prompt decoder behind PromptableModel.

The torch network is built only to export (or check) the graphs; inference runs
in two ONNX Runtime sessions with all graph optimisations, the optimised encoder saved
next to the export so later sessions start faster.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import torch

from medisam.errors import ModelError, require
from medisam.export.onnx_export import read_export_metadata
from medisam.models.decoder_feeds import (FastDecoderInputs, decode_best_fast, decode_fast, decoder_feeds,
                                          select_masks)
from medisam.models.export_cache import cached_export, folded_decoders, quantized_encoder
from medisam.models.promptable import DecoderOutput, PromptableModel

log = logging.getLogger(__name__)


def session_options(threads: int):
    """CPU session options: ORT_ENABLE_ALL, ``threads`` intra-op threads, sequential graph.

    Idle worker threads do not spin (``$MEDISAM_ORT_SPIN=1`` turns spinning back on):
    measured here on 2 shared cores, spinning made the encoder ~15% and the decoder ~30%
    slower whenever other processes compete for the cores.
    """
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning",
                                "1" if os.environ.get("MEDISAM_ORT_SPIN") == "1" else "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def providers_for(device: torch.device) -> list[str]:
    """CUDA provider first when the device is CUDA and ONNX Runtime has it; CPU otherwise."""
    ort = require("onnxruntime", "onnx")
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelError("device cuda with backend onnx needs onnxruntime-gpu "
                             "(CUDAExecutionProvider not available); use backend torch")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(path: Path, threads: int, device: torch.device, save_optimized: bool = False):
    """An InferenceSession on ``path``; on CPU the optimised graph is saved once and reused."""
    ort = require("onnxruntime", "onnx")
    providers = providers_for(device)
    so = session_options(threads)
    if save_optimized and device.type == "cpu":
        optimized = path.with_name(f"{path.stem}.ort{ort.__version__}.opt.onnx")
        if optimized.is_file():
            try:  # already optimised for this machine and runtime version
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                return ort.InferenceSession(str(optimized), so, providers=providers)
            except Exception as exc:  # stale/corrupt: rebuild from the plain graph
                log.warning("ignoring optimised graph %s: %s", optimized, exc)
                so = session_options(threads)
        tmp = optimized.with_name(f".{optimized.name}.{id(so)}")
        so.optimized_model_filepath = str(tmp)
        session = ort.InferenceSession(str(path), so, providers=providers)
        try:
            tmp.replace(optimized)
        except OSError:
            pass
        return session
    return ort.InferenceSession(str(path), so, providers=providers)


class OnnxModel(PromptableModel):
    """A :class:`PromptableModel` whose ``encode``/``decode`` run in ONNX Runtime.

    Tensors in and out are torch tensors on ``device`` (CPU, or CUDA with the CUDA
    provider), so callers cannot tell the backends apart except by ``backend``,
    ``precision`` and ``cache_signature``.
    """

    def __init__(self, base: PromptableModel, device: torch.device, precision: str = "fp32",
                 threads: int = 1):
        super().__init__(base.spec, base.net_source(), torch.device("cpu"), base.checkpoint,
                         base.checkpoint_sha256)
        self.device = device
        self.backend = "onnx"
        self.precision = precision
        self.threads = threads
        self.export_dir = cached_export(base)
        self.exported_mask_input_size = int(read_export_metadata(self.export_dir)["mask_input_size"])
        encoder = self.export_dir / "encoder.onnx"
        if precision == "int8":
            encoder = quantized_encoder(self.export_dir)
        elif precision != "fp32":
            raise ModelError(f"backend onnx runs fp32 or int8, not {precision}")
        self.encoder_session = make_session(encoder, threads, device, save_optimized=True)
        self.decoder_session = make_session(self.export_dir / "decoder.onnx", threads, device,
                                            save_optimized=True)
        fast, best = folded_decoders(base, self.export_dir)
        #: box/point prompts without a mask prompt run here (~30% faster, same logits to ~1e-5)
        self.fast_decoder_session = (make_session(fast, threads, device, save_optimized=True)
                                     if fast is not None else None)
        #: the best of several boxes (a propagation step's margins): exported now, opened on first use
        self._best_path = best
        self._best_session = None
        self._best_lock = threading.Lock()
        self._fast_inputs = FastDecoderInputs(base.spec.input_size)

    @property
    def best_decoder_session(self):  # noqa: ANN201 - an onnxruntime InferenceSession or None
        """The best-of-boxes decoder (only the winner's mask is upscaled), opened on first use so
        that loads serving 2D prompts never pay for it; None where it is not available."""
        with self._best_lock:
            if self._best_session is None and self._best_path is not None:
                self._best_session = make_session(self._best_path, self.threads, self.device, save_optimized=True)
            return self._best_session

    @property
    def cache_signature(self) -> str:
        return f"{super().cache_signature}|{self.precision}"

    def encode(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 256, h, w)``; the graph has batch 1, so images run in turn."""
        x = tensor.detach().float().cpu().numpy()
        outs = [self.encoder_session.run(None, {"image": x[i:i + 1]})[0] for i in range(x.shape[0])]
        return torch.from_numpy(np.concatenate(outs, axis=0)).to(self.device)

    def decode(self, embedding: torch.Tensor, *, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
               multimask: bool | str = False) -> DecoderOutput:
        if mask_input is None and self.fast_decoder_session is not None:
            out = decode_fast(partial(self.fast_decoder_session.run, None), self._fast_inputs, embedding, points,
                              boxes, multimask)
            return DecoderOutput(out.low_res_logits.to(self.device), out.iou.to(self.device))
        low_res, iou = self.decoder_session.run(
            None, decoder_feeds(embedding, points, boxes, mask_input, self.mask_input_size))
        return select_masks(torch.from_numpy(low_res).to(self.device),
                            torch.from_numpy(iou).to(self.device), multimask)

    def decode_best(self, embedding: torch.Tensor, boxes: torch.Tensor) -> tuple[int, DecoderOutput]:
        session = self.best_decoder_session
        if session is not None:
            chosen = decode_best_fast(partial(session.run, None), self._fast_inputs, embedding, boxes)
            if chosen is not None:
                best, out = chosen
                return best, DecoderOutput(out.low_res_logits.to(self.device), out.iou.to(self.device))
        return super().decode_best(embedding, boxes)
