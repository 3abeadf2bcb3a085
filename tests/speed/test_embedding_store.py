"""On-disk embedding cache (refuses other signatures) and encode_many."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.models.embedding_store import (DiskEmbeddingCache, EmbeddingCacheMismatch,
                                            signature_fields)
from medisam.models.pipeline import encode_many, iter_encode
from medisam.predict import Predictor
from tests.conftest import disk_image


def test_predictor_reuses_disk_cache_across_instances(tiny_model, tmp_path):
    image, _ = disk_image(96)
    store = DiskEmbeddingCache(tmp_path / "emb", tiny_model.cache_signature)
    first = Predictor(tiny_model, cache=store).set_image(image).predict(box=(20, 20, 80, 80))
    assert store.misses == 1 and len(store) == 1
    again = DiskEmbeddingCache(tmp_path / "emb", tiny_model.cache_signature)
    second = Predictor(tiny_model, cache=again).set_image(image).predict(box=(20, 20, 80, 80))
    assert again.hits == 1 and again.misses == 0
    assert np.array_equal(first.masks, second.masks)
    assert np.allclose(first.low_res_logits, second.low_res_logits)


def test_mismatched_signature_is_refused_naming_the_field(tiny_model, tmp_path):
    DiskEmbeddingCache(tmp_path / "emb", tiny_model.cache_signature)
    other = tiny_model.cache_signature.replace("|torch", "|onnx") + "|int8"
    with pytest.raises(EmbeddingCacheMismatch, match="backend='torch'.*backend='onnx'"):
        DiskEmbeddingCache(tmp_path / "emb", other)
    fields = signature_fields(tiny_model.cache_signature)
    changed = "|".join([*tiny_model.cache_signature.split("|")[:1], "abc123",
                        *tiny_model.cache_signature.split("|")[2:]])
    with pytest.raises(EmbeddingCacheMismatch, match="weights"):
        DiskEmbeddingCache(tmp_path / "emb", changed)
    assert fields["backend"] == "torch" and fields["precision"] == "fp32"


def test_encode_many_batches_and_caches(tiny_model, tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.rand(1, 3, 256, 256, generator=gen) for _ in range(3)]
    single = torch.cat([tiny_model.encode(t) for t in tensors])
    batched = encode_many(tiny_model, tensors, batch_size=2)
    assert batched.shape == (3, 256, 64, 64)
    assert torch.allclose(batched, single, atol=1e-4)
    store = DiskEmbeddingCache(tmp_path / "emb", tiny_model.cache_signature)
    encode_many(tiny_model, tensors, batch_size=2, cache=store)
    assert len(store) == 3
    again = list(iter_encode(tiny_model, tensors, cache=store, prefetch=1))
    assert store.hits == 3
    assert torch.allclose(torch.cat(again), single, atol=1e-4)


def test_entry_copied_from_another_cache_is_refused(tiny_model, tmp_path):
    import shutil

    image, _ = disk_image(64, radius=15, center=(32, 32))
    source = DiskEmbeddingCache(tmp_path / "a", tiny_model.cache_signature)
    Predictor(tiny_model, cache=source).set_image(image)
    other_sig = tiny_model.cache_signature.replace("|torch", "|onnx")
    target = DiskEmbeddingCache(tmp_path / "b", other_sig)
    entry = next((tmp_path / "a").glob("*/*.pt"))
    (tmp_path / "b" / entry.parent.name).mkdir()
    shutil.copy(entry, tmp_path / "b" / entry.parent.name / entry.name)
    with pytest.raises(EmbeddingCacheMismatch, match="backend"):
        target.get(entry.stem)
