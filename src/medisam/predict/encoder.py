"""Plane encoder of a session: each plane of one slicing axis encoded at most once.

Embeddings live in the predictor's :class:`~medisam.predict.cache.EmbeddingCache`. When
the session made that cache, its size comes from the model: after the first encoding the
cache is grown to hold every plane the session may visit (the embedding's own bytes,
whatever the model's channels and side), never below the cache's default, and never above a
quarter of the machine's memory (:func:`cache_budget`: a tri-planar session on a 512 x 512 x 300
CT may visit 1324 planes, 5.2 GiB of LiteMedSAM embeddings).

With a ``stride`` above 1, a propagated plane between two encoded ones (planes ``k*stride``)
gets the linear interpolation of their embeddings instead of its own encoding
(``encode(t, interpolate=True)``): on thin slices neighbouring planes look alike, and the
encoder is most of a propagation's time on a CPU. Interpolated embeddings are made again at
each visit, not cached (stop 49: in a 14-organ CT they were a quarter to half of the cache's
memory), so the cache holds encodings only and a plane the user prompts later is encoded for real.

With a ``coarse`` stride above ``stride``, a propagated plane first takes the interpolation
between planes ``k*coarse`` and may then be refined (``encode(t, True, fine=True)``) to the
interpolation between planes ``k*stride``: the owner decides from the decoded masks where
the object changes too fast for the coarse planes (:mod:`~medisam.predict.axis_runs`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

import numpy as np
import torch

from medisam.predict.cache import CachedEmbedding, embedding_key
from medisam.predict.predictor import Predictor


#: the share of the machine's memory one session's embedding cache may grow to; past it the cache
#: evicts its least recently used planes (a revisit re-encodes them) instead of pushing into swap
CACHE_MEMORY_SHARE = 0.25


def cache_budget() -> int:
    """Bytes a session's embedding cache may grow to: :data:`CACHE_MEMORY_SHARE` of the physical
    memory (a 16 GiB laptop: 4 GiB, about 1000 LiteMedSAM planes); no limit where unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return sys.maxsize
    return int(total * CACHE_MEMORY_SHARE) if total > 0 else sys.maxsize


class PlaneEncoder:
    """Encodes planes ``t`` of one axis (pixels from ``display(t)``) into ``predictor``'s cache.

    Args:
        predictor: the predictor whose cache and current image are used.
        axis: the slicing axis (for the ``(axis, index)`` plane sets).
        display: ``t -> (H, W, 3)`` float32 0-255 encoder input of plane ``t``.
        planes: planes the cache must hold when ``size_cache`` (sized on first encoding).
        batch: planes encoded together ahead of a propagation front (``prefetch``).
        count: planes on the axis (0..count-1); ``stride``, ``coarse``: see the module.

    Attributes:
        encoded / visited: planes the encoder ran on / whose embedding was used.
        interpolated: planes that were given an interpolated embedding.
        timed_ms: the fastest single-plane encoding this encoder ran (None before one), for
            cost estimates of models the speed profile does not measure.
        warm_ms: the same without the first encoding, which warms the graphs and caches up (a hunt
            saw 7.4 s for it, then about 1.6 s each: a plan built on it said 6 min for 61 s of work).
        own: planes whose own embedding was used (encoded here or found in a shared cache):
            what the propagation would have encoded alone.
        encoded_planes / visited_planes: the same as ``(axis, index)`` pairs; an owner may
            add other views' planes to them.
    """

    def __init__(self, predictor: Predictor, axis: int, display: Callable[[int], np.ndarray], planes: int,
                 size_cache: bool, batch: int = 1, count: int = 0, stride: int = 1,
                 coarse: int = 0):
        self.predictor = predictor
        self.model = predictor.model
        self.axis = axis
        self.display = display
        self.planes = planes
        self.batch = batch
        self.count = count
        self.stride = max(1, int(stride))
        self.coarse = max(self.stride, int(coarse))
        self._size_cache = size_cache
        self._keys: dict[int, str] = {}  # plane -> embedding key (the display never changes)
        self.encoded: set[int] = set()
        self.visited: set[int] = set()
        self.interpolated: set[int] = set()
        self.own: set[int] = set()
        self.timed_ms: float | None = None
        self.warm_ms: float | None = None
        self.encoded_planes: set[tuple[int, int]] = set()
        self.visited_planes: set[tuple[int, int]] = set()

    def key(self, t: int) -> str:
        """Embedding key of plane ``t``, hashed once (planes are revisited often)."""
        key = self._keys.get(t)
        if key is None:
            key = self._keys[t] = embedding_key(self.display(t), self.model.cache_signature)
        return key

    def _fit_cache(self, embedding: torch.Tensor) -> None:
        """Grow the cache to ``planes + 2`` embeddings of this model (once), within
        :func:`cache_budget` (a session's cache never takes more than its share of the machine)."""
        if self._size_cache:
            self._size_cache = False
            cache = self.predictor.cache
            wanted = (self.planes + 2) * embedding.element_size() * embedding.nelement()
            cache.max_bytes = max(cache.max_bytes, min(wanted, cache_budget()))

    def _mark_encoded(self, t: int) -> None:
        self.encoded.add(t)
        self.encoded_planes.add((self.axis, t))

    def anchors(self, t: int, fine: bool = False) -> tuple[int, int] | None:
        """The encoded planes whose embeddings plane ``t`` interpolates (at the coarse stride, or
        at ``stride`` when ``fine``), None when it is encoded itself."""
        stride = self.stride if fine else self.coarse
        if stride <= 1 or t % stride == 0 or t >= self.count - 1:
            return None
        lo = t - t % stride
        return lo, min(lo + stride, self.count - 1)  # past the last multiple: the axis's last plane

    def refinable(self, t: int) -> bool:
        """Whether plane ``t``'s fine embedding differs from its coarse one."""
        return self.coarse > self.stride and self.anchors(t) != self.anchors(t, fine=True)

    def interval(self, t: int) -> int:
        """The first plane of the coarse interval holding plane ``t``."""
        return t - t % self.coarse

    def encode(self, t: int, interpolate: bool = False, fine: bool = False) -> None:
        """Make plane ``t`` the predictor's current image (encoding it unless cached).

        ``interpolate``: a propagated plane may take the interpolation of its anchors'
        embeddings (:meth:`anchors`, at the fine stride when ``fine``) instead of its own."""
        pair = self.anchors(t, fine) if interpolate else None
        if pair is not None:
            self._interpolate(t, *pair)
            return
        self._used(t)
        cache = self.predictor.cache
        before = cache.misses
        started = time.perf_counter()
        self.predictor.set_display_image(self.display(t), key=self.key(t))
        if cache.misses > before:
            ms = (time.perf_counter() - started) * 1000.0
            if self.timed_ms is not None:  # a second encoding or later: warm
                self.warm_ms = ms if self.warm_ms is None else min(self.warm_ms, ms)
            self.timed_ms = ms if self.timed_ms is None else min(self.timed_ms, ms)
            self._mark_encoded(t)
            self._fit_cache(self.predictor.get_image_embedding())

    def _used(self, t: int) -> None:
        """Record that plane ``t``'s own embedding served this encoder (``visited``, ``own``)."""
        self.visited.add(t)
        self.visited_planes.add((self.axis, t))
        self.own.add(t)

    def _interpolate(self, t: int, lo: int, hi: int) -> None:
        """Make the interpolation of planes ``lo`` and ``hi``'s embeddings plane ``t``'s current
        image. It is made again at each visit (one pass over the two cached anchors, about a
        millisecond) rather than cached: the cache holds only what an encoding paid for."""
        self.encode(lo)
        low = self.predictor.get_image_embedding()
        self.encode(hi)
        high, transform = self.predictor.get_image_embedding(), self.predictor.transform
        lerp = torch.lerp(low, high, (t - lo) / (hi - lo))  # one pass, no temporaries
        self.predictor.use_embedding(self.display(t), CachedEmbedding(lerp, transform))
        self.visited.add(t)
        self.visited_planes.add((self.axis, t))
        self.interpolated.add(t)

    def prefetch(self, t: int, step: int, end: int) -> None:
        """Encode up to ``batch`` upcoming planes ``t, t + step, ...`` (not past ``end``; their
        anchors where they are interpolated) in one batch."""
        if self.batch <= 1:
            return
        cache = self.predictor.cache
        todo: list[tuple[int, str]] = []
        s = t
        while len(todo) < self.batch and (end - s) * step >= 0:
            for p in self.anchors(s) or (s,):  # the planes a propagation at plane s encodes
                key = self.key(p)
                if (p, key) not in todo and cache.get(key) is None:
                    todo.append((p, key))
            s += step
        if len(todo) < 2:
            return
        tensors, transforms = zip(*(self.model.preprocess(self.display(s)) for s, _ in todo))
        embeddings = self.model.encode(torch.cat(tensors))
        self._fit_cache(embeddings[:1])
        for i, (s, key) in enumerate(todo):
            cache.put(key, CachedEmbedding(embeddings[i:i + 1].clone(), transforms[i]))
            self._mark_encoded(s)
