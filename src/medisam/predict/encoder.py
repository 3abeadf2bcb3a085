"""Plane encoder of a session: each plane of one slicing axis encoded at most once.

Embeddings live in the predictor's :class:`~medisam.predict.cache.EmbeddingCache`. When
the session made that cache, its size comes from the model: after the first encoding the
cache is grown to hold every plane the session may visit (the embedding's own bytes,
whatever the model's channels and side), never below the cache's default.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from medisam.predict.cache import CachedEmbedding, embedding_key
from medisam.predict.predictor import Predictor


class PlaneEncoder:
    """Encodes planes ``t`` of one axis (pixels from ``display(t)``) into ``predictor``'s cache.

    Args:
        predictor: the predictor whose cache and current image are used.
        axis: the slicing axis (for the ``(axis, index)`` plane sets).
        display: ``t -> (H, W, 3)`` float32 0-255 encoder input of plane ``t``.
        planes: planes the cache must hold when ``size_cache`` (sized on first encoding).
        batch: planes encoded together ahead of a propagation front (``prefetch``).

    Attributes:
        encoded / visited: planes the encoder ran on / whose embedding was used.
        encoded_planes / visited_planes: the same as ``(axis, index)`` pairs; an owner may
            add other views' planes to them.
    """

    def __init__(self, predictor: Predictor, axis: int, display: Callable[[int], np.ndarray], planes: int,
                 size_cache: bool, batch: int = 1):
        self.predictor = predictor
        self.model = predictor.model
        self.axis = axis
        self.display = display
        self.planes = planes
        self.batch = batch
        self._size_cache = size_cache
        self._keys: dict[int, str] = {}  # plane -> embedding key (the display never changes)
        self.encoded: set[int] = set()
        self.visited: set[int] = set()
        self.encoded_planes: set[tuple[int, int]] = set()
        self.visited_planes: set[tuple[int, int]] = set()

    def key(self, t: int) -> str:
        """Embedding key of plane ``t``, hashed once (planes are revisited often)."""
        key = self._keys.get(t)
        if key is None:
            key = self._keys[t] = embedding_key(self.display(t), self.model.cache_signature)
        return key

    def _fit_cache(self, embedding: torch.Tensor) -> None:
        """Grow the cache to ``planes + 2`` embeddings of this model (once)."""
        if self._size_cache:
            self._size_cache = False
            cache = self.predictor.cache
            cache.max_bytes = max(cache.max_bytes, (self.planes + 2) * embedding.element_size() * embedding.nelement())

    def _mark_encoded(self, t: int) -> None:
        self.encoded.add(t)
        self.encoded_planes.add((self.axis, t))

    def encode(self, t: int) -> None:
        """Make plane ``t`` the predictor's current image (encoding it unless cached)."""
        self.visited.add(t)
        self.visited_planes.add((self.axis, t))
        cache = self.predictor.cache
        before = cache.misses
        self.predictor.set_display_image(self.display(t), key=self.key(t))
        if cache.misses > before:
            self._mark_encoded(t)
            self._fit_cache(self.predictor.get_image_embedding())

    def prefetch(self, t: int, step: int, end: int) -> None:
        """Encode up to ``batch`` upcoming planes ``t, t + step, ...`` (not past ``end``) in one batch."""
        if self.batch <= 1:
            return
        cache = self.predictor.cache
        todo = []
        s = t
        while len(todo) < self.batch and (end - s) * step >= 0:
            key = self.key(s)
            if cache.get(key) is None:
                todo.append((s, key))
            s += step
        if len(todo) < 2:
            return
        tensors, transforms = zip(*(self.model.preprocess(self.display(s)) for s, _ in todo))
        embeddings = self.model.encode(torch.cat(tensors))
        self._fit_cache(embeddings[:1])
        for i, (s, key) in enumerate(todo):
            cache.put(key, CachedEmbedding(embeddings[i:i + 1].clone(), transforms[i]))
            self._mark_encoded(s)
