"""The one embedding cache: typed key, memory tier over a disk tier, the old names on top of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.models.embedding_cache import (CachedEmbedding, CacheSignature, EmbeddingCache,
                                            EmbeddingCacheMismatch, EmbeddingKey)
from medisam.predict import Predictor
from medisam.predict.cache import embedding_key
from tests.conftest import disk_image


def test_typed_signature_spells_every_models_cache_signature(tiny_model, monkeypatch):
    from medisam.models.backends import TorchModel

    # the signature, not bf16 arithmetic, is under test: allow bf16 on CPUs without AVX512_BF16/AMX
    monkeypatch.setattr("medisam.models.precision.cpu_has_bf16", lambda: True)

    assert str(tiny_model.signature) == tiny_model.cache_signature
    bf16 = TorchModel(tiny_model, "bf16")
    assert str(bf16.signature) == bf16.cache_signature and bf16.signature.precision == "bf16"
    assert CacheSignature.parse(bf16.cache_signature) == bf16.signature
    assert tiny_model.signature.first_difference(bf16.signature) == "precision"
    with pytest.raises(ValueError):
        CacheSignature.parse("litemedsam|abc")


def test_key_digest_is_the_predictors_key(tiny_model):
    image = np.random.default_rng(0).uniform(0, 255, (40, 50, 3)).astype(np.float32)
    key = EmbeddingKey.of(image, tiny_model.signature)
    assert key.hex == embedding_key(image, tiny_model.cache_signature)
    assert key == EmbeddingKey.of(image.copy(), tiny_model.cache_signature)
    assert key != EmbeddingKey.of(image[:, :49], tiny_model.signature)


def test_memory_tier_over_disk_tier(tiny_model, tmp_path):
    image, _ = disk_image(96)
    cache = EmbeddingCache(max_bytes=1 << 30, folder=tmp_path / "emb", signature=tiny_model.signature)
    first = Predictor(tiny_model, cache=cache).set_image(image).predict(box=(20, 20, 80, 80))
    assert (cache.misses, cache.hits, len(cache)) == (1, 0, 1) and cache.nbytes > 0
    Predictor(tiny_model, cache=cache).set_image(image)
    assert cache.hits == 1  # from memory
    fresh = EmbeddingCache(max_bytes=1 << 30, folder=tmp_path / "emb", signature=tiny_model.signature)
    second = Predictor(tiny_model, cache=fresh).set_image(image).predict(box=(20, 20, 80, 80))
    assert (fresh.hits, fresh.misses) == (1, 0) and fresh.nbytes > 0  # from disk, promoted to memory
    assert np.array_equal(first.masks, second.masks)
    other = CacheSignature(**{**tiny_model.signature.fields(), "precision": "int8", "backend": "onnx"})
    with pytest.raises(EmbeddingCacheMismatch, match="backend='torch'.*backend='onnx'"):
        EmbeddingCache(folder=tmp_path / "emb", signature=other)


def test_memory_tier_is_bounded_by_bytes(tiny_model):
    sig = tiny_model.signature
    item = CachedEmbedding(torch.zeros(1, 4, 8, 8), None)
    cache = EmbeddingCache(max_bytes=2 * item.embedding.nelement() * 4)
    keys = [EmbeddingKey.of(np.full(3, i), sig) for i in range(3)]
    for key in keys:
        cache.put(key, item)
    assert len(cache) == 2 and cache.get(keys[0]) is None and cache.get(keys[2].hex) is item
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
