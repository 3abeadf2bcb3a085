"""The predictor's embedding cache: the one cache of :mod:`medisam.models.embedding_cache`
(memory tier, optional disk tier, typed keys), re-exported where predict/ code imports it."""

from __future__ import annotations

import numpy as np

from medisam.models.embedding_cache import CachedEmbedding, EmbeddingCache, EmbeddingKey

__all__ = ["CachedEmbedding", "EmbeddingCache", "EmbeddingKey", "embedding_key"]


def embedding_key(display_image: np.ndarray, model_signature: str) -> str:
    """Key = hash of the exact pixels fed to the model + model/weights/preprocessing signature."""
    return EmbeddingKey.of(display_image, model_signature).hex
