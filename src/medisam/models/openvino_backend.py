"""OpenVINO backend: the same exported ONNX graphs compiled by OpenVINO for the CPU.

``precision="bf16"`` sets OpenVINO's ``INFERENCE_PRECISION_HINT`` to bf16 (native on
AVX512_BF16/AMX CPUs); fp32 pins f32 so results match torch to ~1e-5.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from medisam.errors import ModelError, require
from medisam.models.backends import cached_export, decoder_feeds, select_masks
from medisam.models.promptable import DecoderOutput, PromptableModel

log = logging.getLogger(__name__)

_HINT = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoModel(PromptableModel):
    """A :class:`PromptableModel` whose encoder and decoder are OpenVINO compiled models (CPU)."""

    def __init__(self, base: PromptableModel, device: torch.device, precision: str = "fp32",
                 threads: int = 1):
        ov = require("openvino", "openvino")
        if device.type != "cpu":
            raise ModelError("backend openvino runs on the CPU here: pass device='cpu'")
        if precision not in _HINT:
            raise ModelError(f"backend openvino runs fp32 or bf16, not {precision}")
        super().__init__(base.spec, base.net.cpu(), torch.device("cpu"), base.checkpoint,
                         base.checkpoint_sha256)
        self.backend = "openvino"
        self.precision = precision
        self.threads = threads
        self.export_dir = cached_export(base)
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": _HINT[precision], "INFERENCE_NUM_THREADS": threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        self._encoder = core.compile_model(str(self.export_dir / "encoder.onnx"), "CPU", config)
        # the decoder follows the precision too (bf16 made it ~1.4x faster here); the Dice
        # guard in benchmarks/speed.py measures encoder + decoder together
        self._decoder = core.compile_model(str(self.export_dir / "decoder.onnx"), "CPU", config)
        self._enc_request = self._encoder.create_infer_request()
        self._dec_request = self._decoder.create_infer_request()

    @property
    def cache_signature(self) -> str:
        return f"{super().cache_signature}|{self.precision}"

    def encode(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 256, h, w)``, one image at a time (batch-1 graph)."""
        x = tensor.detach().float().cpu().numpy()
        outs = [np.array(self._enc_request.infer({"image": x[i:i + 1]})[0], copy=True)
                for i in range(x.shape[0])]
        return torch.from_numpy(np.concatenate(outs, axis=0)).to(self.device)

    def decode(self, embedding: torch.Tensor, *, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
               multimask: bool = False) -> DecoderOutput:
        result = self._dec_request.infer(
            decoder_feeds(embedding, points, boxes, mask_input, self.mask_input_size))
        low_res = torch.from_numpy(np.array(result[self._decoder.output(0)], copy=True))
        iou = torch.from_numpy(np.array(result[self._decoder.output(1)], copy=True))
        return select_masks(low_res, iou, multimask)
