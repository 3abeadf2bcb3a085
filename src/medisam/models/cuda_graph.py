"""CUDA graphs of the image encoder: one capture per input shape, replayed for each image.

Why: on a GPU a small encoder such as LiteMedSAM's TinyViT is bound by kernel launches, not by
arithmetic. One image costs ~1,000 launches from Python; a captured graph replays them in one
call (measured on an H200 in ``docs/speed.md``, "On a GPU"). A graph holds its own input and
output buffers: each call copies the image in and clones the result out, so callers never see a
buffer that the next call overwrites.

Bounded: at most :data:`MAX_GRAPHS` shapes are kept (least recently used first out), since each
graph keeps a private memory pool; other shapes run eagerly. Calls are serialised by a lock,
since a graph's buffers are shared. ``$MEDISAM_CUDA_GRAPHS=0`` turns
them off. A capture that fails logs a warning and leaves that model eager for good.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Callable

import torch

log = logging.getLogger(__name__)

#: Input shapes kept captured per model (batch 1 for interactive use, plus a few batch sizes).
MAX_GRAPHS = 4
GRAPHS_ENV = "MEDISAM_CUDA_GRAPHS"


def graphs_enabled() -> bool:
    """False when ``$MEDISAM_CUDA_GRAPHS`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(GRAPHS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class CapturedCall:
    """``fn`` captured as a CUDA graph for one input shape and dtype."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor):
        self.input = torch.empty_like(example)
        self.input.copy_(example)
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):  # warm-up off the main stream (cuDNN/cuBLAS pick their kernels)
            for _ in range(2):
                fn(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA work during the capture (a server decoding for another
        # session) must neither fail nor be captured; only this thread's calls are checked
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = fn(self.input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.input.copy_(x)
        self.graph.replay()
        return self.output.clone()


class GraphedEncoder:
    """Runs ``fn`` through a CUDA graph per input shape (LRU of :data:`MAX_GRAPHS`), eagerly elsewhere.

    ``fn`` must be a pure function of its input whose weights stay in place (inference only):
    a graph replays the kernels on the addresses it captured.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], max_graphs: int = MAX_GRAPHS):
        self.fn = fn
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[tuple, CapturedCall] = OrderedDict()
        self.failed = False
        # one caller at a time: a graph's input and output buffers are shared (the server's threads
        # may encode on one model at once)
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed or not x.is_cuda or not graphs_enabled() or torch.is_grad_enabled():
            return self.fn(x)
        with self._lock:
            return self._replay(x)

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        call = self.graphs.get(key)
        if call is None:
            try:
                call = CapturedCall(self.fn, x)
            except Exception as exc:  # e.g. an op that cannot be captured: stay eager
                log.warning("CUDA graph capture of the encoder failed (%s); running it eagerly", exc)
                self.failed = True
                self.graphs.clear()
                return self.fn(x)
            self.graphs[key] = call
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        return call(x)
