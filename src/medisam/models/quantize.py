"""INT8 post-training quantisation of the image encoder for OpenVINO (NNCF).

The encoder (``encoder.onnx`` of the export cache) is quantised once per export folder
with NNCF's transformer preset (SmoothQuant + fast bias correction; activations
per-tensor, weights per-channel, int8 MatMul/Conv on VNNI CPUs). Calibration images are
the bundled CT samples, each in :data:`AUGMENTATIONS` variants (rotations, flip,
contrast, inversion), run through the model's own preprocessing, so no data set is
needed at run time. The result, ``encoder.int8.nncf.v<N>.xml/.bin``, is written
atomically next to the export and reused by later loads.

``precision="int8"`` of the OpenVINO backend runs it (the ops left in float run bf16 where
the CPU has it). Whether it may become ``auto``'s default is decided by the Dice guard on
real images that were *not* used for calibration (``benchmarks/speed.py --save-profile``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from medisam.errors import require

log = logging.getLogger(__name__)

#: Bumped whenever the quantisation recipe or its calibration set changes.
QUANT_VERSION = 1


def _augment(image: np.ndarray) -> list[np.ndarray]:
    """Eight variants of a ``(H, W, 3)`` 0-255 display image: 4 rotations, a flip,
    higher contrast, lower contrast, inverted intensities."""
    out = [np.rot90(image, k) for k in range(4)]
    out += [image[:, ::-1], np.clip(image * 1.3 - 20.0, 0, 255), image * 0.7 + 30.0, 255.0 - image]
    return [np.ascontiguousarray(a, dtype=np.float32) for a in out]


#: Variants per calibration image (see :func:`_augment`).
AUGMENTATIONS = 8


def calibration_inputs(preprocess: Callable[[np.ndarray], tuple], images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Encoder inputs ``(1, 3, S, S)`` float32 for NNCF: every image in its augmented variants
    through ``preprocess`` (a :meth:`PromptableModel.preprocess`)."""
    inputs = []
    for image in images:
        for variant in _augment(np.asarray(image, dtype=np.float32)):
            tensor = preprocess(variant)[0]
            inputs.append(np.ascontiguousarray(tensor.detach().float().cpu().numpy()))
    return inputs


def quantized_encoder_path(folder: Path) -> Path:
    """Where the int8 encoder of an export folder lives (``.xml``; weights in ``.bin``)."""
    return folder / f"encoder.int8.nncf.v{QUANT_VERSION}.xml"


def quantize_encoder(folder: Path, inputs: Sequence[np.ndarray]) -> Path:
    """Quantise ``folder/encoder.onnx`` to int8 with NNCF, calibrated on ``inputs``; written once.

    Concurrent processes are safe: each writes a temporary pair and renames it into place
    (``.bin`` first, so a visible ``.xml`` always has its weights).
    """
    target = quantized_encoder_path(folder)
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    if not inputs:
        raise ValueError("int8 quantisation needs at least one calibration input")
    ov = require("openvino", "openvino")
    nncf = require("nncf", "openvino")
    model = ov.Core().read_model(str(folder / "encoder.onnx"))
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(list(inputs)), subset_size=len(inputs),
                              model_type=nncf.ModelType.TRANSFORMER)
    tmp = folder / f".encoder.int8.{os.getpid()}.xml"
    try:
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    log.info("int8 encoder written to %s in %.0f s (%d calibration inputs)", target,
             time.perf_counter() - t0, len(inputs))
    return target
