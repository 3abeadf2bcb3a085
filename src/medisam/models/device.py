"""Torch device choice: ``"auto"`` = CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from medisam.errors import ModelError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"invalid device {device!r}: use auto, cpu, cuda or mps") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' is not available here (no CUDA); use the CPU")
    return resolved
