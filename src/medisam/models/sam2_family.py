"""SAM 2.1 and MedSAM2: registry entries and builders on top of the official ``sam2`` package.

Every SAM 2 model is built as ``sam2.sam2_video_predictor.SAM2VideoPredictor`` (a
``SAM2Base`` subclass with the same parameters and state-dict keys), through sam2's own
Hydra configs (``configs/sam2.1/*.yaml`` inside the installed package) plus overrides, so
the memory-based propagation in :mod:`medisam.predict.sam2_session` can drive it directly.

Checkpoints store their weights under ``"model"`` (as sam2's ``_load_checkpoint`` expects);
:func:`medisam.models.registry.load_model` reads them with ``read_checkpoint`` and loads them
strictly with ``apply_state_dict`` (one-line ``ModelError`` naming mismatched keys).

MedSAM2 (Ma et al., "MedSAM2: Segment Anything in 3D Medical Images and Videos", 2025;
github.com/bowang-lab/MedSAM2). Verified in that repository's public code: the released
weights are ``MedSAM2_latest.pt`` (``checkpoints/download_medsam2_models.py``, HF repo
``wanglab/MedSAM2``, together with ``MedSAM2_2411.pt``, ``MedSAM2_US_Heart.pt``,
``MedSAM2_MRI_LiverLesion.pt``, ``MedSAM2_CTLesion.pt``); they load with
``build_sam2_video_predictor_npz("configs/sam2.1_hiera_t512.yaml", ...)``; the training config
``sam2.1_hiera_tiny512_*.yaml`` is the SAM 2.1 Hiera-T architecture with ``image_size: 512`` and
RoPE ``feat_sizes: [32, 32]``, initialised from ``sam2.1_hiera_tiny.pt``; inference
(``medsam2_infer_3D_CT.py``) windows the volume to uint8, resizes every slice to 512x512
(PIL, RGB), divides by 255 and applies ImageNet mean/std. Not verified (no file here): the
sha256 of the published checkpoints, so ``sha256`` stays ``None``.
"""

from __future__ import annotations

import logging

import torch.nn as nn

from medisam.errors import ModelError, first_line, require
from medisam.models.catalog import register
from medisam.models.spec import ModelSpec

log = logging.getLogger(__name__)

SAM2_PAPER = "Ravi et al., SAM 2: Segment Anything in Images and Videos, ICLR 2025"
MEDSAM2_PAPER = "Ma et al., MedSAM2: Segment Anything in 3D Medical Images and Videos, arXiv:2504.03600 (2025)"

#: sam2's video-predictor settings from ``build_sam2_video_predictor`` (apply_postprocessing).
#: ``fill_hole_area`` is 0 because hole filling needs sam2's optional CUDA extension; the
#: memory attention is sam2's with a dtype fix for CPU (see :mod:`medisam.models.sam2_modules`).
#: ``add_all_frames_to_correct_as_cond``: a click on a frame sam2 has tracked becomes a conditioning
#: frame, as in sam2's interactive training (its MOSE fine-tuning config): with sam2's default it was a
#: correction of that frame's output only, which the next propagation tracked over, so the click was lost.
VIDEO_PREDICTOR_OVERRIDES = (
    "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "++model.memory_attention._target_=medisam.models.sam2_modules.DtypeSafeMemoryAttention",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=0",
    "++model.add_all_frames_to_correct_as_cond=true",
)


def _resolution_overrides(image_size: int) -> list[str]:
    """Input size and the memory attention's RoPE grid (image_size / 16) that goes with it."""
    side = image_size // 16
    return [f"++model.image_size={image_size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes=[{side},{side}]",
            f"++model.memory_attention.layer.cross_attention.feat_sizes=[{side},{side}]"]


#: Small random-weight variant for tests: 128 px input, Hiera with 5 blocks, 64-d SAM heads.
TINY_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",  # not a q-pool block (first of a stage)
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=128",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=64",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.memory_encoder.fuser.num_layers=1",
    "++model.num_maskmem=3",
)


def build_sam2_net(config: str, image_size: int | None = None,
                   extra_overrides: tuple[str, ...] = ()) -> nn.Module:
    """Instantiate ``configs/sam2.1/<config>`` from the installed sam2 package as a video predictor.

    Args:
        config: file name in sam2's ``configs/sam2.1`` folder, e.g. ``"sam2.1_hiera_t.yaml"``.
        image_size: input side in pixels when it differs from the config's 1024 (MedSAM2: 512).
        extra_overrides: further Hydra overrides (the tiny test variant).
    """
    require("sam2", "sam2")
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = list(VIDEO_PREDICTOR_OVERRIDES) + list(extra_overrides)
    if image_size is not None:
        overrides += _resolution_overrides(image_size)
    try:
        cfg = compose(config_name=f"configs/sam2.1/{config}", overrides=overrides)
    except Exception as exc:  # hydra raises several types for a missing config
        raise ModelError(f"sam2 config {config!r} not found in the installed sam2 package: "
                         f"{first_line(exc)}") from exc
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def build_sam2_tiny() -> nn.Module:
    """Random-weight 128 px SAM 2 for tests (about 1.3 M parameters)."""
    return build_sam2_net("sam2.1_hiera_t.yaml", image_size=128, extra_overrides=TINY_OVERRIDES)


_SAM2_COMMON = dict(family="sam2", resize="square", intensity="imagenet", interpolation="bicubic",
                    licence="Apache-2.0")

for _name, _config, _file in (
    ("tiny", "sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    ("small", "sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    ("base-plus", "sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    ("large", "sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
):
    register(ModelSpec(
        name=f"sam2.1-hiera-{_name}", builder=(lambda c=_config: build_sam2_net(c)), input_size=1024,
        checkpoint_file=_file, paper=SAM2_PAPER,
        description=f"official SAM 2.1 Hiera-{_name}; memory-based video/volume propagation; user checkpoint",
        **_SAM2_COMMON))

register(ModelSpec(
    name="medsam2", builder=lambda: build_sam2_net("sam2.1_hiera_t.yaml", image_size=512),
    input_size=512, checkpoint_file="MedSAM2_latest.pt", paper=MEDSAM2_PAPER,
    description="MedSAM2 (SAM 2.1 Hiera-T fine-tuned on 3D medical images and videos, 512 px); "
                "user checkpoint", **_SAM2_COMMON))

register(ModelSpec(
    name="sam2-tiny", builder=build_sam2_tiny, input_size=128, is_test_model=True,
    description="tiny random-weight SAM 2 (128 px) for tests", **_SAM2_COMMON))
