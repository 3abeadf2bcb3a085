"""Static-shape compilations of OpenVINO's decoder graphs, made for the prompt shapes in use.

The decoders take the prompts as inputs of dynamic shape (``point_coords`` ``(B, N, 2)``: the
number of prompts and of points per prompt). Compiled with dynamic shapes, OpenVINO's CPU plugin
infers the shapes of its ~450 nodes on every call; compiled for one shape, it does that once.
On the 2-core AMX Xeon (bf16) a one-box decode took 0.80x the time (11.3 -> 9.0 ms) and a
propagation step's three margins on the best-of-boxes graph 0.81x, with the same outputs to the
bit (``docs/speed.md``, "Stop 53: decoders compiled for the prompt shapes in use").

A shape gets its compilation on its second use (about 0.1-0.3 s, once per process): a box, the
margins of every propagation step and a repeated point count do; a click sequence whose point
count grows with each click stays on the dynamic graph and pays no compilation. Memory stays
bounded: at most :data:`MAX_SHAPES` compilations per graph, the first shapes to reach their
second use (never dropped: a decode on another thread may still read a compilation's output
buffers), and none for batches of more than :data:`MAX_BATCH` prompts.
``MEDISAM_STATIC_DECODERS=0`` turns it off (every call on the dynamic graph).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

#: static compilations per decoder graph (each holds its own buffers: ~40-80 MiB of RSS)
MAX_SHAPES = 2
#: the largest prompt batch (boxes decoded at once) that gets a static compilation
MAX_BATCH = 4
#: uses of a feed shape after which it gets its own compilation
USES_BEFORE_COMPILE = 2
#: distinct feed shapes whose uses are counted (older counts are forgotten)
MAX_COUNTED = 64

ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]


def static_decoders_enabled() -> bool:
    """False where ``MEDISAM_STATIC_DECODERS=0`` (every decode on the dynamic graph)."""
    return os.environ.get("MEDISAM_STATIC_DECODERS", "1").strip().lower() not in ("0", "false", "no", "off")


def shape_key(feeds: dict[str, np.ndarray], dynamic: tuple[str, ...]) -> ShapeKey:
    """The shapes of the feeds that the graph leaves dynamic, as a hashable key."""
    return tuple((name, tuple(np.shape(feeds[name]))) for name in dynamic if name in feeds)


class Compiled:
    """A compiled model and an infer request per thread (a request is not thread-safe; the
    server decodes for several sessions at once). Dropping it drops its requests too."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self._requests = threading.local()

    def request(self) -> Any:
        """This thread's infer request (created on first use)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        return request

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Feeds -> the outputs in order, zero-copy (valid until this thread's next run)."""
        result = self.request().infer(feeds, share_inputs=True, share_outputs=True)
        return [result[out] for out in self.compiled.outputs]


class StaticShapes:
    """The compiled model to run a graph's feeds on: the dynamic one, or one compiled for their shapes.

    Args:
        dynamic: the graph compiled with dynamic shapes (an openvino ``CompiledModel``).
        compile_for: ``{input name: shape}`` -> the graph compiled for those shapes.
        dynamic_inputs: names of the inputs whose shape is dynamic in ``dynamic``.
    """

    def __init__(self, dynamic: Any, compile_for: Callable[[dict[str, tuple[int, ...]]], Any],
                 dynamic_inputs: tuple[str, ...]):
        self.dynamic = Compiled(dynamic)
        self._compile_for = compile_for
        self._inputs = dynamic_inputs
        self._compiled: dict[ShapeKey, Compiled] = {}
        self._compiling: set[ShapeKey] = set()  # being compiled by a call (outside the lock)
        self._uses: OrderedDict[ShapeKey, int] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, dynamic: Any, compile_for: Callable[[dict[str, tuple[int, ...]]], Any]) -> "StaticShapes":
        """For a compiled graph: its inputs of dynamic shape are the ones to fix."""
        names = tuple(port.get_any_name() for port in dynamic.inputs if port.get_partial_shape().is_dynamic)
        return cls(dynamic, compile_for, names)

    @classmethod
    def dynamic_only(cls, dynamic: Any) -> "StaticShapes":
        """A graph that always runs with dynamic shapes (no compilation per shape)."""
        return cls(dynamic, lambda shapes: None, ())

    @property
    def shapes(self) -> list[ShapeKey]:
        """The feed shapes that have their own compilation, in the order they got it."""
        with self._lock:
            return list(self._compiled)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Feeds -> the outputs in order, on :meth:`pick`'s compiled model."""
        return self.pick(feeds).run(feeds)

    def pick(self, feeds: dict[str, np.ndarray]) -> Compiled:
        """The compiled model for ``feeds``: the static one of their shape where it exists or where
        this is the shape's :data:`USES_BEFORE_COMPILE`-th use, else the dynamic one."""
        if not self._inputs or not static_decoders_enabled():
            return self.dynamic
        key = shape_key(feeds, self._inputs)
        if any(shape[:1] > (MAX_BATCH,) for _, shape in key):
            return self.dynamic
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is not None:
                return compiled
            if key in self._compiling or len(self._compiled) + len(self._compiling) >= MAX_SHAPES:
                return self.dynamic  # full: none is dropped, as a decode on another thread may still read its buffers
            uses = self._uses.pop(key, 0) + 1
            if uses < USES_BEFORE_COMPILE:
                self._uses[key] = uses
                while len(self._uses) > MAX_COUNTED:
                    self._uses.popitem(last=False)
                return self.dynamic
            self._compiling.add(key)
        # compiled in this call, outside the lock: the server's other threads decode meanwhile (on
        # their compiled shapes, or this one's dynamic graph) instead of waiting 0.1-0.3 s for it
        try:
            compiled = Compiled(self._compile_for(dict(key)))
            with self._lock:
                self._compiled[key] = compiled
        finally:
            with self._lock:
                self._compiling.discard(key)
        return compiled
