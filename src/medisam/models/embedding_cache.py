"""The one embedding cache: a memory tier (LRU bounded by bytes) over an optional disk tier.

An entry is one image's encoder output plus the transform that maps it back to pixels.
Its key is typed: :class:`EmbeddingKey` = a content digest of the exact model input
(pixels, shape, dtype) + the :class:`CacheSignature` of the model that encoded it (name,
weights, preprocessing, backend, precision). A disk folder belongs to one signature
(``signature.json``); opening it with another raises :class:`EmbeddingCacheMismatch`
naming the first field that differs, so an fp32 torch embedding is never silently reused
by an int8 model::

    cache = EmbeddingCache(max_bytes=512 << 20)                           # memory only
    cache = EmbeddingCache(folder="~/.cache/medisam/emb/ct01", signature=model.signature)
    predictor = Predictor(model, cache=cache)                             # disk + memory

``get``/``put`` also take the hex digest of a key (:attr:`EmbeddingKey.hex`), the form the
predictor and the volume session pass today; both spell the same digest.
:class:`medisam.predict.cache.EmbeddingCache` (memory only) and
:class:`medisam.models.embedding_store.DiskEmbeddingCache` (disk only) are this class with
one tier.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from threading import Lock
from typing import Union

import numpy as np
import torch

from medisam.errors import ModelError
from medisam.models.transform import InputTransform

log = logging.getLogger(__name__)

STORE_VERSION = 1


class EmbeddingCacheMismatch(ModelError):
    """The cache on disk was written by a different model / weights / preprocessing / backend."""


@dataclass(frozen=True)
class CacheSignature:
    """What makes two embeddings of the same pixels interchangeable (``LoadedModel.signature``)."""

    model: str
    weights: str
    input_size: str
    resize: str
    intensity: str
    interpolation: str
    backend: str
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for f in fields(self):  # one spelling per value, whatever type the caller had
            object.__setattr__(self, f.name, str(getattr(self, f.name)))

    def __str__(self) -> str:
        """The models' ``cache_signature`` text (torch fp32 omits the precision, as ever)."""
        values = [getattr(self, f.name) for f in fields(self)]
        if self.backend == "torch" and self.precision == "fp32":
            values = values[:-1]
        return "|".join(values)

    @classmethod
    def parse(cls, text: str) -> "CacheSignature":
        """From a ``cache_signature`` string (signatures written by older versions)."""
        parts = text.split("|")
        names = [f.name for f in fields(cls)]
        if not len(names) - 1 <= len(parts) <= len(names):
            raise ValueError(f"not a cache signature: {text!r}")
        return cls(*parts)

    @classmethod
    def of(cls, signature: "CacheSignature | str") -> "CacheSignature":
        return signature if isinstance(signature, CacheSignature) else cls.parse(signature)

    def fields(self) -> dict[str, str]:
        return asdict(self)

    def first_difference(self, other: "CacheSignature") -> str | None:
        """The first field whose values differ (None when equal)."""
        return next((f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)), None)


@dataclass(frozen=True)
class EmbeddingKey:
    """One model input (content digest of its exact values, shape and dtype) + the signature
    of the model that encodes it; ``hex`` digests both (file names, the predictor's keys)."""

    content: str
    signature: CacheSignature
    hex: str

    @classmethod
    def of(cls, array: np.ndarray | torch.Tensor, signature: CacheSignature | str) -> "EmbeddingKey":
        """Key of an input: a display image ``(H, W, 3)`` or a preprocessed tensor."""
        a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        a = np.ascontiguousarray(a)
        sig = CacheSignature.of(signature)
        digest = hashlib.sha1(a.view(np.uint8).ravel())
        digest.update(f"{a.shape}{a.dtype}".encode())
        content = digest.hexdigest()
        digest.update(str(sig).encode())
        return cls(content, sig, digest.hexdigest())


@dataclass(frozen=True)
class CachedEmbedding:
    """``(1, C, h, w)`` embedding + the transform of its image (None for raw tensors)."""

    embedding: torch.Tensor
    transform: InputTransform | None


Key = Union[EmbeddingKey, str]


def _hex(key: Key) -> str:
    return key.hex if isinstance(key, EmbeddingKey) else key


def _nbytes(item: CachedEmbedding) -> int:
    return item.embedding.element_size() * item.embedding.nelement()


class DiskTier:
    """Entries as one ``.pt`` file per key under ``folder`` (atomic writes; safe to share
    between processes); the folder belongs to one signature (``signature.json``)."""

    def __init__(self, folder: str | Path, signature: CacheSignature):
        self.folder = Path(folder).expanduser()
        self.signature = signature
        self._check_or_create()

    def _check_or_create(self) -> None:
        meta_path = self.folder / "signature.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                theirs = CacheSignature(**{str(k): str(v) for k, v in meta["fields"].items()})
            except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
                raise EmbeddingCacheMismatch(f"embedding cache {self.folder} has an unreadable "
                                             f"signature.json ({exc}); use another folder") from exc
            field = theirs.first_difference(self.signature)
            if field is not None:
                raise EmbeddingCacheMismatch(
                    f"embedding cache {self.folder} was written with {field}={getattr(theirs, field)!r} "
                    f"but this model has {field}={getattr(self.signature, field)!r}; "
                    "use another folder or delete it")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {"version": STORE_VERSION, "signature": str(self.signature), "fields": self.signature.fields()}
        self._atomic_write(meta_path, json.dumps(meta, indent=2).encode())

    def path(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdefABCDEF" for c in key):
            raise ValueError(f"cache keys are hex digests, got {key!r}")
        return self.folder / key[:2] / f"{key}.pt"

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> CachedEmbedding | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            field = CacheSignature.parse(saved["signature"]).first_difference(self.signature)
            if field is not None:  # a file copied in from another cache folder
                raise EmbeddingCacheMismatch(f"cached embedding {path} was made with another {field}")
            t = saved["transform"]
            transform = None if t is None else InputTransform(
                tuple(t["original_hw"]), tuple(t["resized_hw"]), int(t["input_size"]), tuple(t["scale_xy"]))
        except EmbeddingCacheMismatch:
            raise
        except Exception as exc:  # truncated or foreign file: recompute rather than fail
            log.warning("ignoring unreadable cached embedding %s: %s", path, exc)
            return None
        return CachedEmbedding(saved["embedding"], transform)

    def put(self, key: str, item: CachedEmbedding) -> None:
        path = self.path(key)
        if path.is_file():
            return
        t = item.transform
        payload = {"signature": str(self.signature),
                   "embedding": item.embedding.detach().cpu().contiguous(),
                   "transform": None if t is None else {
                       "original_hw": list(t.original_hw), "resized_hw": list(t.resized_hw),
                       "input_size": t.input_size, "scale_xy": list(t.scale_xy)}}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        self._atomic_write(path, buffer.getvalue())

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.pt"))


class EmbeddingCache:
    """Memory tier (LRU bounded by tensor bytes, ``max_bytes``; 0 = none) over an optional disk
    tier (``folder`` + ``signature``); thread-safe. A disk hit is promoted to memory.

    ``hits``/``misses`` count lookups answered by either tier / by neither; ``len()`` is the
    number of entries of the largest tier (disk when there is one).
    """

    def __init__(self, max_bytes: int = 512 << 20, folder: str | Path | None = None,
                 signature: CacheSignature | str | None = None):
        if folder is not None and signature is None:
            raise ValueError("a disk tier needs the model's signature")
        self.max_bytes = max_bytes
        self.disk = DiskTier(folder, CacheSignature.of(signature)) if folder is not None else None
        self._items: OrderedDict[str, CachedEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Key) -> CachedEmbedding | None:
        k = _hex(key)
        with self._lock:
            item = self._items.get(k)
            if item is not None:
                self._items.move_to_end(k)
                self.hits += 1
                return item
        item = self.disk.get(k) if self.disk is not None else None
        with self._lock:
            if item is None:
                self.misses += 1
                return None
            self.hits += 1
            self._remember(k, item)
        return item

    def put(self, key: Key, item: CachedEmbedding) -> None:
        k = _hex(key)
        if self.disk is not None:
            self.disk.put(k, item)
        with self._lock:
            self._remember(k, item)

    def _remember(self, key: str, item: CachedEmbedding) -> None:
        if self.max_bytes <= 0 or key in self._items:
            return
        self._items[key] = item
        self._bytes += _nbytes(item)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= _nbytes(old)

    def __len__(self) -> int:
        return len(self.disk) if self.disk is not None else len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        return self._bytes

    def clear(self) -> None:
        """Empty the memory tier (files on disk stay)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
