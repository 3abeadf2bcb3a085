"""What every loaded model has, whatever it can do: spec, network, device, weights identity."""

from __future__ import annotations

import torch
import torch.nn as nn

from medisam.models.embedding_cache import CacheSignature
from medisam.models.spec import Capabilities, ModelSpec


class LoadedModel:
    """A network built from a :class:`ModelSpec` with its weights loaded, in eval mode.

    Attributes:
        spec: the registry entry (``spec.capabilities`` says what the model can do).
        net: the ``nn.Module`` (eval mode, on ``device``).
        device: torch device.
        checkpoint: path of the weights loaded (None for random test weights).
        checkpoint_sha256: hash of those weights (part of the embedding cache key).
        backend: the runtime that executes it (``"torch"`` here; see :mod:`medisam.models.backends`).
    """

    backend = "torch"

    def __init__(self, spec: ModelSpec, net: nn.Module, device: torch.device,
                 checkpoint: str | None = None, checkpoint_sha256: str | None = None):
        self.spec = spec
        self.net = net.to(device).eval()
        self.device = device
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def capabilities(self) -> Capabilities:
        return self.spec.capabilities

    @property
    def signature(self) -> CacheSignature:
        """The typed embedding-cache signature: model, weights, preprocessing, backend, precision."""
        s = self.spec
        return CacheSignature(s.name, self.checkpoint_sha256 or "random", str(s.input_size), s.resize,
                              s.intensity, s.interpolation, self.backend, getattr(self, "precision", "fp32"))

    @property
    def cache_signature(self) -> str:
        """:attr:`signature` as text (the backends add their precision; ``str(signature)``
        spells the same)."""
        s = self.spec
        return (f"{s.name}|{self.checkpoint_sha256 or 'random'}|{s.input_size}|{s.resize}|"
                f"{s.intensity}|{s.interpolation}|{self.backend}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, backend={self.backend!r}, device={self.device})"
