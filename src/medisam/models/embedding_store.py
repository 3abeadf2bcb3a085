"""An on-disk embedding cache that refuses embeddings made by a different model setup.

A cache folder belongs to ONE model signature (``PromptableModel.cache_signature``:
model name, weights hash, input size, resize, intensity, interpolation, backend,
precision), recorded in ``signature.json`` when the folder is created. Opening the folder
with another signature raises :class:`EmbeddingCacheMismatch` naming the first field that
differs, so an fp32 torch embedding is never silently reused by an int8 model.

It has the ``get(key)`` / ``put(key, item)`` interface of
:class:`medisam.predict.EmbeddingCache`, so it plugs into the predictor and the volume
session unchanged::

    store = DiskEmbeddingCache("~/.cache/medisam/emb/case01", model.cache_signature)
    predictor = Predictor(model, cache=store)
    session = VolumeSession(model, volume, predictor=predictor)   # slices persist on disk

Keys are whatever the caller uses (the predictor's content hash of the pixels + the
signature); :func:`content_key` makes one for raw input tensors.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medisam.errors import ModelError
from medisam.models.transform import InputTransform

log = logging.getLogger(__name__)

#: Names of the ``|``-separated fields of ``PromptableModel.cache_signature``.
SIGNATURE_FIELDS = ("model", "weights", "input_size", "resize", "intensity", "interpolation",
                    "backend", "precision")
STORE_VERSION = 1


class EmbeddingCacheMismatch(ModelError):
    """The cache on disk was written by a different model / weights / preprocessing / backend."""


@dataclass(frozen=True)
class StoredEmbedding:
    """Same fields as the predictor's ``CachedEmbedding``: ``(1, C, h, w)`` embedding + transform
    (None for raw tensors cached by :func:`medisam.models.pipeline.iter_encode`)."""

    embedding: torch.Tensor
    transform: InputTransform | None


def signature_fields(signature: str) -> dict[str, str]:
    """Split a cache signature into named fields (precision defaults to fp32, as torch's)."""
    parts = signature.split("|")
    fields = {name: parts[i] for i, name in enumerate(SIGNATURE_FIELDS) if i < len(parts)}
    fields.setdefault("precision", "fp32")
    for i in range(len(SIGNATURE_FIELDS), len(parts)):
        fields[f"field{i}"] = parts[i]
    return fields


def first_difference(expected: dict[str, str], actual: dict[str, str]) -> str | None:
    """The first field name whose values differ (None when equal)."""
    for name in list(SIGNATURE_FIELDS) + sorted(set(expected) | set(actual)):
        if expected.get(name) != actual.get(name):
            return name
    return None


def content_key(array: np.ndarray | torch.Tensor, signature: str) -> str:
    """SHA-1 of the exact values, shape and dtype of an input + the model signature."""
    a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    a = np.ascontiguousarray(a)
    digest = hashlib.sha1(a.view(np.uint8).ravel())
    digest.update(f"{a.shape}{a.dtype}{signature}".encode())
    return digest.hexdigest()


class DiskEmbeddingCache:
    """Embeddings as one ``.pt`` file per key under ``folder`` (safe to share between processes).

    Raises:
        EmbeddingCacheMismatch: ``folder`` holds embeddings of another signature (the
            message names the differing field, e.g. ``precision``).
    """

    def __init__(self, folder: str | Path, signature: str):
        self.folder = Path(folder).expanduser()
        self.signature = signature
        self.hits = 0
        self.misses = 0
        self._check_or_create()

    def _check_or_create(self) -> None:
        meta_path = self.folder / "signature.json"
        mine = signature_fields(self.signature)
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                theirs = {str(k): str(v) for k, v in meta["fields"].items()}
            except (OSError, ValueError, KeyError, AttributeError) as exc:
                raise EmbeddingCacheMismatch(f"embedding cache {self.folder} has an unreadable "
                                             f"signature.json ({exc}); use another folder") from exc
            field = first_difference(theirs, mine)
            if field is not None:
                raise EmbeddingCacheMismatch(
                    f"embedding cache {self.folder} was written with {field}={theirs.get(field)!r} "
                    f"but this model has {field}={mine.get(field)!r}; use another folder or delete it")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {"version": STORE_VERSION, "signature": self.signature, "fields": mine}
        self._atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())

    def _path(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdefABCDEF" for c in key):
            raise ValueError(f"cache keys are hex digests, got {key!r}")
        return self.folder / key[:2] / f"{key}.pt"

    def _atomic_write_bytes(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> StoredEmbedding | None:
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            field = first_difference(signature_fields(saved["signature"]),
                                     signature_fields(self.signature))
            if field is not None:  # a file copied in from another cache folder
                raise EmbeddingCacheMismatch(f"cached embedding {path} was made with another {field}")
            t = saved["transform"]
            transform = None if t is None else InputTransform(
                tuple(t["original_hw"]), tuple(t["resized_hw"]), int(t["input_size"]),
                tuple(t["scale_xy"]))
        except EmbeddingCacheMismatch:
            raise
        except Exception as exc:  # truncated or foreign file: recompute rather than fail
            log.warning("ignoring unreadable cached embedding %s: %s", path, exc)
            self.misses += 1
            return None
        self.hits += 1
        return StoredEmbedding(saved["embedding"], transform)

    def put(self, key: str, item) -> None:
        """Store ``item.embedding`` (moved to CPU) and ``item.transform`` (may be None) under ``key``."""
        path = self._path(key)
        if path.is_file():
            return
        t: InputTransform | None = item.transform
        payload = {"signature": self.signature,
                   "embedding": item.embedding.detach().cpu().contiguous(),
                   "transform": None if t is None else {
                       "original_hw": list(t.original_hw), "resized_hw": list(t.resized_hw),
                       "input_size": t.input_size, "scale_xy": list(t.scale_xy)}}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        self._atomic_write_bytes(path, buffer.getvalue())

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.pt"))
