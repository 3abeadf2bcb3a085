"""The calling thread's floating-point mode, kept across a runtime call that changes it.

OpenVINO's CPU plugin, asked for its denormals optimisation (``CPU_DENORMALS_OPTIMIZATION``,
:data:`~medisam.models.openvino_backend.DENORMALS_CONFIG`), sets the FTZ/DAZ flags on the thread
that *compiles* a model, not only on its inference threads. Compiled on the main thread, that left
the whole program flushing denormal numbers to zero: numpy and scipy computed differently after the
first compile of a process (a fresh cache, or a decoder compiled for a prompt shape), and scipy's
KDTree crashed in a surface-distance metric. Inference does not touch the calling thread's flags.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (FTZ or DAZ set)."""
    tiny = np.array([1e-40], dtype=np.float32)
    return bool((tiny * np.float32(1.0))[0] == 0.0)


@contextlib.contextmanager
def float_mode_kept() -> Iterator[None]:
    """Restore this thread's denormals mode after the block if the block changed it."""
    before = denormals_flushed()
    try:
        yield
    finally:
        if denormals_flushed() != before:
            import torch

            torch.set_flush_denormal(before)  # sets or clears FTZ and DAZ on this thread
