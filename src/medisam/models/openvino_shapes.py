"""Static-shape compilations of OpenVINO's decoder graphs, made for the prompt shapes in use.

The decoders take the prompts as inputs of dynamic shape (``point_coords`` ``(B, N, 2)``: the
number of prompts and of points per prompt). Compiled with dynamic shapes, OpenVINO's CPU plugin
infers the shapes of its ~450 nodes on every call; compiled for one shape, it does that once.
On the 2-core AMX Xeon (bf16) a one-box decode took 0.80x the time (11.3 -> 9.0 ms) and a
propagation step's three margins on the best-of-boxes graph 0.81x, with the same outputs to the
bit (``docs/speed.md``, "Stop 53: decoders compiled for the prompt shapes in use").

Interactive prompts do not wait for a compilation: a one-prompt feed of up to ``max(buckets)``
points (a box, a box and up to 6 clicks, points alone) is padded to the next of a few fixed point
counts (:data:`POINT_BUCKETS`) with points of label ``PAD_LABEL``, which the fast graphs ignore
exactly (:mod:`~medisam.models.fast_decoder`), and runs on that count's static compilation. A
bucket is compiled on one background thread when a feed first needs it (:meth:`StaticShapes.padded`;
kept in OpenVINO's model cache, a bounded set): until then that feed runs on the dynamic graph,
unpadded, and compiles nothing. So a run of boxes only (a propagation, ``segment``) compiles the
one bucket it uses, as before but off the calling thread; the stall this removes is 0.2-0.5 s
in the user's second box or first click, and in the first click of a new point count.

Any other shape (several prompts: a propagation step's margins, a box batch; more points) gets its
compilation on its second use, in that call (about 0.1-0.3 s, once per process). Memory stays
bounded: at most :data:`MAX_SHAPES` compilations per graph, the first shapes to reach their
second use (never dropped: a decode on another thread may still read a compilation's output
buffers), and none for batches of more than :data:`MAX_BATCH` prompts.
``MEDISAM_STATIC_DECODERS=0`` turns it off (every call on the dynamic graph).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np

#: static compilations per decoder graph (each holds its own buffers: ~40-80 MiB of RSS)
MAX_SHAPES = 2
#: the largest prompt batch (boxes decoded at once) that gets a static compilation
MAX_BATCH = 4
#: uses of a feed shape after which it gets its own compilation
USES_BEFORE_COMPILE = 2
#: distinct feed shapes whose uses are counted (older counts are forgotten)
MAX_COUNTED = 64

#: point counts (box corners and SAM's pad included) that one-prompt feeds are padded to: a box or
#: one click (2), a box and one or two clicks (4), a box and up to six clicks (8)
POINT_BUCKETS = (2, 4, 8)

ShapeKey = tuple[tuple[str, tuple[int, ...]], ...]
log = logging.getLogger(__name__)


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
                 dynamic_inputs: tuple[str, ...], buckets: tuple[int, ...] = (),
                 pad: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None):
        self.dynamic = Compiled(dynamic)
        self._compile_for = compile_for
        self._inputs = dynamic_inputs
        self._compiled: dict[ShapeKey, Compiled] = {}
        self._compiling: set[ShapeKey] = set()  # being compiled by a call (outside the lock)
        self._uses: OrderedDict[ShapeKey, int] = OrderedDict()
        self._lock = threading.Lock()
        #: point counts that one-prompt feeds are padded to (``pad``: coords, labels, count -> padded)
        self._buckets = tuple(sorted(buckets)) if pad is not None else ()
        self._pad = pad
        self._bucket_compiled: dict[int, Compiled] = {}
        #: :meth:`in_background`'s keys asked for, its queue of work and its thread (None: idle)
        self._queued: set[Hashable] = set()
        self._queue: list[Callable[[], object]] = []
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        #: compilations made by this object (the static shapes and the buckets), for tests and benchmarks
        self.compile_count = 0

    @classmethod
    def of(cls, dynamic: Any, compile_for: Callable[[dict[str, tuple[int, ...]]], Any], buckets: tuple[int, ...] = (),
           pad: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = None,
           ) -> "StaticShapes":
        """For a compiled graph: its inputs of dynamic shape are the ones to fix."""
        names = tuple(port.get_any_name() for port in dynamic.inputs if port.get_partial_shape().is_dynamic)
        return cls(dynamic, compile_for, names, buckets, pad)

    @classmethod
    def dynamic_only(cls, dynamic: Any) -> "StaticShapes":
        """A graph that always runs with dynamic shapes (no compilation per shape)."""
        return cls(dynamic, lambda shapes: None, ())

    @property
    def shapes(self) -> list[ShapeKey]:
        """The feed shapes that have their own compilation, in the order they got it."""
        with self._lock:
            return list(self._compiled)

    @property
    def buckets(self) -> list[int]:
        """The point counts whose padded static compilation is made, in the order they got it."""
        with self._lock:
            return list(self._bucket_compiled)

    def bucket_of(self, feeds: dict[str, np.ndarray]) -> int | None:
        """The point count that ``feeds`` are padded to; None for several prompts or too many points."""
        coords = feeds.get("point_coords")
        if not self._buckets or coords is None or coords.shape[0] != 1:
            return None
        return next((b for b in self._buckets if b >= coords.shape[1]), None)

    def in_background(self, key: Hashable, work: Callable[[], object]) -> None:
        """Run ``work`` once per ``key`` on this object's background thread (one at a time, in the
        order asked; started when there is work, ended when there is none), never in the caller."""
        with self._lock:
            if key in self._queued or self._stop.is_set() or not static_decoders_enabled():
                return
            self._queued.add(key)
            self._queue.append(work)
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="medisam-decoder-warm", daemon=True)
                self._worker.start()
                _WARMING.add(self)

    def _drain(self) -> None:
        """The background thread: the queued work in order; it ends (under the lock) when the queue is empty."""
        while True:
            with self._lock:
                if not self._queue or self._stop.is_set():
                    self._worker = None
                    return
                work = self._queue.pop(0)
            try:
                work()
            except Exception as exc:  # an OpenVINO plugin bug must not break the backend: dynamic graph
                log.warning("OpenVINO decoder compilation in the background failed (%s)", exc)

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Wait until no background compilation is queued or running (tests, benchmarks); True when none is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._worker
            if thread is None:
                return True
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False

    def _compile_bucket(self, count: int) -> None:
        """Compile the static decoder for one prompt of ``count`` points (:meth:`in_background`'s work)."""
        compiled = Compiled(self._compile_for({"point_coords": (1, count, 2), "point_labels": (1, count)}))
        with self._lock:
            self._bucket_compiled[count] = compiled
            self.compile_count += 1

    def padded(self, feeds: dict[str, np.ndarray]) -> tuple[Compiled, dict[str, np.ndarray]]:
        """The compiled model and the feeds to run: a one-prompt feed padded to its bucket's static
        compilation where it is made; else :meth:`pick`'s, unpadded (a bucket's feed compiles nothing:
        its bucket is queued for :meth:`in_background`)."""
        count = self.bucket_of(feeds) if static_decoders_enabled() else None
        if count is None:
            return self.pick(feeds), feeds
        with self._lock:
            compiled = self._bucket_compiled.get(count)
        if compiled is None:
            self.in_background(("bucket", count), lambda: self._compile_bucket(count))
            return self.dynamic, feeds
        out = dict(feeds)
        out["point_coords"], out["point_labels"] = self._pad(feeds["point_coords"], feeds["point_labels"], count)
        return compiled, out

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Feeds -> the outputs in order, on :meth:`padded`'s compiled model."""
        compiled, feeds = self.padded(feeds)
        return compiled.run(feeds)

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
                self.compile_count += 1
        finally:
            with self._lock:
                self._compiling.discard(key)
        return compiled


#: objects whose :meth:`StaticShapes.in_background` thread may still run: stopped and joined at exit, so that no
#: compilation is left running in OpenVINO while the interpreter shuts down
_WARMING: "weakref.WeakSet[StaticShapes]" = weakref.WeakSet()


def wait_background(timeout: float = 60.0) -> bool:
    """Wait until no decoder compilation is queued or running in the background (benchmarks: a user's
    next prompt comes seconds after the first, whose compilation runs meanwhile); True when none is."""
    return all([shapes.wait_warm(timeout) for shapes in list(_WARMING)])


@atexit.register
def _stop_warming() -> None:
    """At exit: no new bucket compilation starts; the one running (a fraction of a second) is awaited."""
    warming = list(_WARMING)
    for shapes in warming:
        shapes._stop.set()
    for shapes in warming:
        shapes.wait_warm(30)
