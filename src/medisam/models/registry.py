"""Model registry: the registered specs and ``load_model``.

The specs of LiteMedSAM, SAM and MedSAM are registered here, the SAM 2 ones in
:mod:`medisam.models.sam2_family`; weights load through :mod:`medisam.models.loading`
(never downloaded), other backends through :mod:`medisam.models.backends`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medisam.models import litemedsam, sam
from medisam.models.catalog import MODELS, get_spec, register
from medisam.models.device import resolve_device
from medisam.models.loaded import LoadedModel
from medisam.models.loading import find_checkpoint, load_torch, weights_dir
from medisam.models.spec import ModelSpec

__all__ = ["MODELS", "find_checkpoint", "get_spec", "load_model", "register", "resolve_device", "weights_dir"]

log = logging.getLogger(__name__)

SAM_PAPER = "Kirillov et al., Segment Anything, ICCV 2023"
MEDSAM_PAPER = "Ma et al., Segment anything in medical images, Nat Commun 15:654 (2024)"


register(ModelSpec(
    name="litemedsam", family="litemedsam", builder=litemedsam.build_litemedsam, input_size=256,
    resize="longest", intensity="minmax", interpolation="area", checkpoint_file="lite_medsam.pth",
    sha256=litemedsam.LITEMEDSAM_SHA256, bundled=True, licence="Apache-2.0", integer_boxes=True,
    box_from_points=True,
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
    resize="square", intensity="minmax", interpolation="bicubic", prompts=("box",), box_from_points=True,
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


def load_model(name: str = "litemedsam", checkpoint: str | Path | None = None,
               device: str | torch.device = "auto", backend: str = "auto",
               precision: str | None = None, threads: int | None = None) -> LoadedModel:
    """Build the model ``name`` and load its weights.

    Returns a :class:`~medisam.models.promptable.PromptableModel` for 2D-promptable models
    and a :class:`~medisam.models.sam2_model.Sam2Model` for SAM 2 ones
    (``spec.capabilities`` says which).

    Args:
        name: registry name (``medisam models`` lists them).
        checkpoint: weights file; default: bundled weights or the published file name in
            ``$MEDISAM_WEIGHTS``. Test models start from seeded random weights.
        device: ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        backend: ``"auto"`` (default: the fastest backend measured on this machine whose
            masks pass the Dice guard against torch fp32; torch on GPUs and for SAM 2),
            ``"torch"``, ``"onnx"`` or ``"openvino"``; see :mod:`medisam.models.backends`.
            Training and anything that needs the torch network's gradients pass ``"torch"``.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA) or ``"int8"`` (onnx encoder); None
            (default): what ``auto`` measured, fp32 on a named backend.
        threads: CPU threads (default ``$MEDISAM_THREADS`` or all CPUs available).

    Raises:
        ModelError: unknown name, missing/corrupt checkpoint, hash or state-dict mismatch.
    """
    spec = get_spec(name)
    if backend != "torch" or precision not in (None, "fp32") or threads is not None:
        from medisam.models import backends

        return backends.load_backend(spec, checkpoint, device, backend, precision, threads)
    return load_torch(spec, checkpoint, device)


from medisam.models import sam2_family  # noqa: E402,F401 - registers the SAM 2.1 / MedSAM2 specs
