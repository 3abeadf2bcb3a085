"""What every loaded model has, whatever it can do: spec, network, device, weights identity."""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn as nn

from medisam.models.embedding_cache import CacheSignature
from medisam.models.spec import Capabilities, ModelSpec

#: A built network, or a function that builds it when first needed (see :attr:`LoadedModel.net`).
NetSource = Union[nn.Module, Callable[[], nn.Module]]


class LoadedModel:
    """A network built from a :class:`ModelSpec` with its weights loaded, in eval mode.

    Attributes:
        spec: the registry entry (``spec.capabilities`` says what the model can do).
        net: the ``nn.Module`` (eval mode, on ``device``), built on first access when given
            as a builder: a fast backend with its graphs already exported never needs it, and
            building LiteMedSAM's (importing timm and torchvision) costs seconds per command.
        device: torch device.
        checkpoint: path of the weights loaded (None for random test weights).
        checkpoint_sha256: hash of those weights (part of the embedding cache key).
        backend: the runtime that executes it (``"torch"`` here; see :mod:`medisam.models.backends`).
    """

    backend = "torch"

    def __init__(self, spec: ModelSpec, net: NetSource, device: torch.device,
                 checkpoint: str | None = None, checkpoint_sha256: str | None = None):
        self.spec = spec
        self.device = device
        self._build: Callable[[], nn.Module] | None = None
        self._net: nn.Module | None = None
        if isinstance(net, nn.Module):
            self._net = net.to(device).eval()
        else:
            self._build = net
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256

    @property
    def net(self) -> nn.Module:
        """The network (built now if it was given as a builder)."""
        if self._net is None:
            self._net = self._build().to(self.device).eval()  # type: ignore[misc]
            self._build = None
        return self._net

    @net.setter
    def net(self, net: nn.Module) -> None:
        self._net, self._build = net, None

    @property
    def net_built(self) -> bool:
        """Whether the network exists yet (False until a lazy builder runs)."""
        return self._net is not None

    def net_source(self) -> NetSource:
        """The network if built, else a builder of this model's network (shared, built once)."""
        return self._net if self._net is not None else (lambda: self.net)

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
