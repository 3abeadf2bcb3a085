"""Encoding many images (slices, frames) with any backend: batches, optional cache, prefetch.

The hook for propagation (``VolumeSession``, video sessions, benchmarks): hand over the
preprocessed ``(1, 3, S, S)`` tensors of the slices a run will visit and consume the
embeddings in order; with ``prefetch=1`` the next batch is encoded in a background
thread while the caller decodes the current slice (ONNX Runtime, OpenVINO and torch
release the GIL while they compute). Whether the overlap gains depends on the cores left
over by the encoder's own threads; measure it on the machine at hand.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import torch

from medisam.models.embedding_cache import CachedEmbedding, EmbeddingKey
from medisam.models.promptable import PromptableModel


def _batches(tensors: Iterable[torch.Tensor], batch_size: int) -> Iterator[list[torch.Tensor]]:
    batch: list[torch.Tensor] = []
    for t in tensors:
        batch.append(t if t.dim() == 4 else t[None])
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_encode(model: PromptableModel, tensors: Iterable[torch.Tensor], batch_size: int = 1,
                cache=None, prefetch: int = 0) -> Iterator[torch.Tensor]:
    """Yield one ``(1, C, h, w)`` embedding per input tensor ``(1, 3, S, S)`` (or ``(3, S, S)``).

    Args:
        batch_size: images per ``model.encode`` call (torch batches them; the ONNX and
            OpenVINO graphs take one image at a time, so for them it only groups calls).
        cache: any object with ``get(key)``/``put(key, item)`` whose items have an
            ``embedding`` attribute, e.g. :class:`~medisam.models.embedding_cache.EmbeddingCache`;
            keys are ``EmbeddingKey.of(tensor, model.signature)``.
        prefetch: batches encoded ahead in a background thread (0 = none).
    """
    signature = model.signature

    def encode_batch(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        keys = [EmbeddingKey.of(t, signature) for t in batch] if cache is not None else [None] * len(batch)
        out: list[torch.Tensor | None] = [None] * len(batch)
        todo = []
        for i, key in enumerate(keys):
            hit = cache.get(key) if cache is not None else None
            if hit is not None:
                out[i] = hit.embedding.to(model.device)
            else:
                todo.append(i)
        if todo:
            embeddings = model.encode(torch.cat([batch[i] for i in todo]).to(model.device))
            for j, i in enumerate(todo):
                out[i] = embeddings[j:j + 1]
                if cache is not None:
                    cache.put(keys[i], CachedEmbedding(out[i], None))
        return out  # type: ignore[return-value]

    batches = _batches(tensors, batch_size)
    if prefetch <= 0:
        for batch in batches:
            yield from encode_batch(batch)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medisam-encode") as pool:
        pending = []
        for batch in batches:
            pending.append(pool.submit(encode_batch, batch))
            if len(pending) > prefetch:
                yield from pending.pop(0).result()
        for future in pending:
            yield from future.result()


def encode_many(model: PromptableModel, tensors: Sequence[torch.Tensor] | Iterable[torch.Tensor],
                batch_size: int = 4, cache=None) -> torch.Tensor:
    """Encode all tensors and stack the embeddings: ``(N, C, h, w)`` (mind the memory: 4 MiB each for LiteMedSAM)."""
    return torch.cat(list(iter_encode(model, tensors, batch_size=batch_size, cache=cache)))

