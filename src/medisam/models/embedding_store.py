"""An on-disk embedding cache that refuses embeddings made by a different model setup.

:class:`DiskEmbeddingCache` is :class:`medisam.models.embedding_cache.EmbeddingCache` with
its disk tier only (kept for old imports; new code passes ``folder=`` to ``EmbeddingCache``
to get both tiers). A folder belongs to ONE model signature, recorded in
``signature.json``; opening it with another raises :class:`EmbeddingCacheMismatch` naming
the first field that differs::

    store = DiskEmbeddingCache("~/.cache/medisam/emb/case01", model.cache_signature)
    predictor = Predictor(model, cache=store)
    session = VolumeSession(model, volume, predictor=predictor)   # slices persist on disk
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from medisam.models.embedding_cache import (STORE_VERSION, CacheSignature, CachedEmbedding,  # noqa: F401
                                            EmbeddingCache, EmbeddingCacheMismatch, EmbeddingKey)

#: Names of the fields of a cache signature (:class:`CacheSignature`).
SIGNATURE_FIELDS = tuple(f.name for f in fields(CacheSignature))
#: Old name of the cache entry type.
StoredEmbedding = CachedEmbedding


def signature_fields(signature: str | CacheSignature) -> dict[str, str]:
    """A cache signature's named fields (precision defaults to fp32, as torch's)."""
    return CacheSignature.of(signature).fields()


def content_key(array: np.ndarray | torch.Tensor, signature: str | CacheSignature) -> str:
    """Hex digest of an input's exact values, shape and dtype + the model signature."""
    return EmbeddingKey.of(array, signature).hex


class DiskEmbeddingCache(EmbeddingCache):
    """Embeddings as one ``.pt`` file per key under ``folder`` (no memory tier).

    Raises:
        EmbeddingCacheMismatch: ``folder`` holds embeddings of another signature (the
            message names the differing field, e.g. ``precision``).
    """

    def __init__(self, folder: str | Path, signature: str | CacheSignature):
        super().__init__(max_bytes=0, folder=folder, signature=signature)
        self.folder = self.disk.folder
        self.signature = str(signature)
