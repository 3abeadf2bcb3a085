"""A bounded, content-keyed cache of image embeddings (one encoder pass per image)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

import numpy as np
import torch

from medisam.models.transform import InputTransform


@dataclass(frozen=True)
class CachedEmbedding:
    embedding: torch.Tensor
    transform: InputTransform


def embedding_key(display_image: np.ndarray, model_signature: str) -> str:
    """Key = hash of the exact pixels fed to the model + model/weights/preprocessing signature."""
    digest = hashlib.sha1(np.ascontiguousarray(display_image).view(np.uint8).ravel())
    digest.update(str(display_image.shape).encode())
    digest.update(str(display_image.dtype).encode())
    digest.update(model_signature.encode())
    return digest.hexdigest()


class EmbeddingCache:
    """LRU cache bounded by total tensor bytes (default 512 MiB); thread-safe."""

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, CachedEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedEmbedding | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: str, item: CachedEmbedding) -> None:
        size = item.embedding.element_size() * item.embedding.nelement()
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.embedding.element_size() * old.embedding.nelement()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
