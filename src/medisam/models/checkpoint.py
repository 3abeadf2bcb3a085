"""Reading checkpoint files safely and loading them into a network with clear errors."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from medisam.errors import CheckpointError, first_line

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> str:
    """Return the file's hash; raise CheckpointError when ``expected`` is given and differs."""
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        raise CheckpointError(f"checkpoint {path} has sha256 {actual[:16]}..., expected {expected[:16]}... "
                         "(corrupt or wrong file)")
    return actual


_PARTIAL_ZIP = "not a complete PyTorch zip archive (a truncated or partial download?)"


def load_error(exc: BaseException) -> str:
    """One line on why ``torch.load(..., weights_only=True)`` failed (never PyTorch's advice to drop it)."""
    if isinstance(exc, EOFError):
        return "the file is empty or truncated"
    if "failed finding central directory" in str(exc) or "failed reading zip archive" in str(exc):
        return _PARTIAL_ZIP
    if "weights only load failed" in str(exc).lower() or "weightsunpickler" in str(exc).lower():
        return ("it holds Python objects besides tensors; medisam loads weights only and never "
                "runs code from a checkpoint (save a state dict: torch.save(model.state_dict(), path))")
    return first_line(exc)


#: how a torch.save file starts: a zip archive (PyTorch >= 1.6) or a pickle of protocol 2 or later (legacy)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
#: what a file given by mistake often is, by its first bytes
_KNOWN_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8", "a JPEG image"), (b"\x08", "an ONNX model?"),
                (b"\x1f\x8b", "a gzip file (a .nii.gz image?)"), (b"DICM", "a DICOM file"))


def _not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a torch.save file, from its first bytes (None when it may be one): torch's own
    errors for an image or a text file were "101" or advice about Python objects in the checkpoint."""
    with open(path, "rb") as f:
        head = f.read(132)
    if head.startswith(_TORCH_MAGIC):
        return None
    kind = next((what for magic, what in _KNOWN_MAGIC if head.startswith(magic)), None)
    if kind is None and head[128:132] == b"DICM":
        kind = "a DICOM file"
    if kind is None and head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        kind = "a text file"
    said = f"the file is {kind}" if kind else f"the file starts with {head[:8]!r}"
    return f"not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle): {said}"


def _truncated_zip(path: Path) -> bool:
    """A file that starts as a zip archive (torch.save since PyTorch 1.6) but whose table of contents,
    at the end of the file, is missing: cut short."""
    with open(path, "rb") as f:
        if f.read(4) != _TORCH_MAGIC[0]:
            return False
    return not zipfile.is_zipfile(path)


def check_checkpoint_file(path: str | Path) -> Path:
    """What can be told of a checkpoint without loading it (milliseconds, any size): it exists, is not
    empty, starts as a torch.save file does, and a zip archive's table of contents is whole (a truncated
    download). Commands run it before their slow steps; :func:`read_checkpoint` runs it first too."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    not_torch = _not_a_checkpoint(path)
    if not_torch:
        raise CheckpointError(f"cannot read checkpoint {path}: {not_torch}")
    if _truncated_zip(path):
        raise CheckpointError(f"cannot read checkpoint {path}: {_PARTIAL_ZIP}")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and return the whole saved dict.

    A bare state dict is wrapped as ``{"model": state_dict}`` so callers always find the
    weights under ``"model"``; medisam's own checkpoints also carry a ``"medisam"`` entry.
    """
    path = check_checkpoint_file(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {load_error(exc)}") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict")
    for key in ("model", "state_dict"):
        if key in saved and isinstance(saved[key], dict):
            return {**saved, "model": saved[key]}
    return {"model": saved}


def _first(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def apply_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, naming missing, unexpected and mis-shaped keys on failure."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                   for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_first(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch: {_first(wrong_shape, 3)}")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match the architecture: " + "; ".join(problems))
    net.load_state_dict(state, strict=True)
