"""Numeric precision of a backend: which precisions a machine supports, autocast, the Dice guard.

Precisions: ``fp32`` (reference), ``bf16`` (torch CPU autocast when the CPU has
AVX512_BF16 or AMX, or CUDA; OpenVINO's bf16 inference hint), ``fp16`` (CUDA autocast only)
and ``int8`` (dynamically quantised encoder MatMuls in ONNX Runtime; the NNCF-quantised
encoder in OpenVINO, :mod:`medisam.models.quantize`). A reduced precision is
only a *default* (chosen by ``backend="auto"``) after :func:`precision_guard` has accepted
it on real images; see ``benchmarks/speed.py``.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from medisam.errors import ModelError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: Largest accepted drop of mean Dice against fp32 for a precision to become a default.
DICE_TOLERANCE = 0.005

_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512_BF16 or AMX-BF16)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_vnni() -> bool:
    """True when the CPU has int8 dot-product instructions (AVX512-VNNI / AVX-VNNI / AMX-INT8)."""
    flags = cpu_flags()
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def check_precision(precision: str) -> str:
    """Validate a precision name (ModelError listing the choices)."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def torch_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the torch backend, or None for fp32.

    Raises ModelError where the hardware cannot run it: bf16 on a CPU without
    AVX512_BF16/AMX (it would be emulated and slower), fp16 on CPU, int8 in torch.
    """
    check_precision(precision)
    if precision == "fp32":
        return None
    if precision == "int8":
        raise ModelError("int8 runs in the onnx backend (quantised encoder): use backend='onnx'")
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ModelError("this GPU has no bf16 support: use precision fp16 or fp32")
        return _TORCH_DTYPES[precision]
    if device.type == "cpu":
        if precision == "fp16":
            raise ModelError("fp16 is for CUDA; on CPU use bf16 (with AVX512_BF16/AMX) or int8")
        if not cpu_has_bf16():
            raise ModelError("this CPU has no native bf16 (AVX512_BF16/AMX): use fp32 or int8")
        return torch.bfloat16
    raise ModelError(f"precision {precision} is not supported on device {device.type}")


#: Compute capability from which a GPU has tensor cores (Volta): there fp16 autocast is faster
CUDA_TENSOR_CORES = (7, 0)


def cuda_auto_precision(device: torch.device) -> str:
    """``auto``'s precision on a CUDA GPU: fp16 where the GPU has tensor cores, else fp32.

    Measured on an H200 (``benchmarks/speed_cuda.py``, ``docs/speed.md`` "On a GPU"): the fp16
    encoder gave 1.68x the images/s of fp32 with the 2D Dice guard held (+0.0001 on 20 images)
    and a 100-slice propagation whose labels agree with fp32's at Dice 0.997. bf16 was slower
    than fp16 and agreed less in 3D (0.970).
    """
    return "fp16" if torch.cuda.get_device_capability(device) >= CUDA_TENSOR_CORES else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None, cache_enabled: bool = True) -> Iterator[None]:
    """``torch.autocast`` for ``dtype`` on ``device``; nothing when dtype is None.

    ``cache_enabled=False`` for code a CUDA graph captures: autocast's weight-cast cache must
    not live across a capture (``torch.cuda.graph``'s documentation)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache_enabled):
        yield


@dataclass(frozen=True)
class PrecisionCheck:
    """Outcome of the Dice guard for one precision against fp32 on the same cases."""

    precision: str
    mean_dice_fp32: float
    mean_dice: float
    n_cases: int
    tolerance: float

    @property
    def delta(self) -> float:
        """Mean Dice of this precision minus fp32's (negative = worse)."""
        return self.mean_dice - self.mean_dice_fp32

    @property
    def accepted(self) -> bool:
        """True when the mean Dice drops by at most ``tolerance`` (improvements always pass)."""
        return self.n_cases > 0 and self.delta >= -self.tolerance - 1e-12


def precision_guard(precision: str, dice_fp32: Sequence[float], dice: Sequence[float],
                    tolerance: float = DICE_TOLERANCE) -> PrecisionCheck:
    """Compare per-case Dice of a precision with fp32 on the *same* cases (same order).

    Raises ValueError when the lists differ in length or hold non-finite values, since a
    guard computed on different or broken cases would accept anything.
    """
    a = np.asarray(dice_fp32, dtype=np.float64)
    b = np.asarray(dice, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Dice lists must be paired: {a.shape} vs {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Dice values must be finite")
    if a.size == 0:
        return PrecisionCheck(precision, float("nan"), float("nan"), 0, tolerance)
    return PrecisionCheck(precision, float(a.mean()), float(b.mean()), int(a.size), tolerance)
