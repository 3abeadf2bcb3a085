"""SAMAug (Zhang et al., "Input Augmentation with SAM", arXiv:2304.11332).

SAM's everything mode gives masks with stability scores; SAMAug turns them into two
priors and stacks them with the image as a 3-channel input for any segmentation network:

* segmentation prior: every pixel sums the stability scores of the masks covering it
  (clipped to [0, 1]);
* boundary prior: 1 on the (thick, scikit-image ``find_boundaries``) boundary of any mask.

The augmented image is ``(raw grey, segmentation prior, boundary prior)`` as uint8 RGB.

Where the masks come from (``grid``):

* ``points``: the shared automatic mask generator (``medisam.prompting.automatic``), a
  grid of single points as in SAM and the SAMAug paper;
* ``boxes``: a multi-scale grid of box prompts (each scale tiles the image with 50 %
  overlap), filtered by predicted IoU and stability like SAM's generator. LiteMedSAM was
  trained with box prompts: on BUSI its single-point masks have predicted IoU ~0.2 and
  stability 0, so the point grid keeps no mask at all (its box masks score IoU ~0.85 and
  stability ~0.8, so use thresholds around 0.8 / 0.7 with boxes); ``auto`` (default) therefore uses
  boxes for the ``litemedsam`` family and points otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from medisam.errors import InputError
from medisam.io import MedicalImage, atomic_write, read_image, to_display
from medisam.predict import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamAugPriors:
    """``segmentation`` float32 ``(H, W)`` in [0, 1]; ``boundary`` bool ``(H, W)``; ``n_masks`` used."""

    segmentation: np.ndarray
    boundary: np.ndarray
    n_masks: int


def grid_boxes(height: int, width: int, scales: tuple[float, ...] = (1.0, 0.5, 0.25)) -> np.ndarray:
    """``(N, 4)`` XYXY boxes: per scale ``s``, boxes of ``s*W x s*H`` tiled with 50 % overlap."""
    boxes = []
    for s in scales:
        bw, bh = width * s, height * s
        nx, ny = max(1, round(2 / s) - 1), max(1, round(2 / s) - 1)
        for y0 in np.linspace(0, height - bh, ny):
            for x0 in np.linspace(0, width - bw, nx):
                boxes.append((x0, y0, min(width, x0 + bw), min(height, y0 + bh)))
    return np.asarray(boxes, np.float32)


def box_grid_masks(predictor: Predictor, pred_iou_thresh: float, stability_thresh: float,
                   scales: tuple[float, ...] = (1.0, 0.5, 0.25)) -> tuple[list[np.ndarray], list[float]]:
    """Masks and stability scores from :func:`grid_boxes` prompts on the current image."""
    import torch
    from segment_anything.utils.amg import calculate_stability_score

    h, w = predictor.image_size
    pred = predictor.predict_batch(list(grid_boxes(h, w, scales)))
    stability = calculate_stability_score(torch.from_numpy(pred.low_res_logits), 0.0, 1.0).numpy()
    keep = (pred.scores > pred_iou_thresh) & (stability >= stability_thresh) & pred.masks.any(axis=(1, 2))
    return [m for m in pred.masks[keep]], [float(s) for s in stability[keep]]


def compute_priors(predictor: Predictor, display: np.ndarray, points_per_side: int = 16,
                   pred_iou_thresh: float = 0.88, stability_thresh: float = 0.95, grid: str = "auto",
                   box_scales: tuple[float, ...] = (1.0, 0.5, 0.25)) -> SamAugPriors:
    """Everything-mode masks on one ``(H, W, 3)`` display image -> SAMAug priors (original grid).

    ``grid``: ``points`` (SAM automatic mask generator), ``boxes`` (multi-scale box grid) or
    ``auto`` (boxes for LiteMedSAM-family models, points otherwise; see the module docstring).
    """
    from skimage.segmentation import find_boundaries

    from medisam.prompting.automatic import AutoMaskConfig, generate_masks

    if grid == "auto":
        grid = "boxes" if predictor.model.spec.family == "litemedsam" else "points"
    if grid not in ("points", "boxes"):
        raise InputError(f"grid must be auto, points or boxes, got {grid!r}")
    predictor.set_display_image(display)
    if grid == "boxes":
        masks, stabilities = box_grid_masks(predictor, pred_iou_thresh, stability_thresh, box_scales)
    else:
        auto = generate_masks(predictor, AutoMaskConfig(points_per_side=points_per_side,
                                                        pred_iou_thresh=pred_iou_thresh,
                                                        stability_score_thresh=stability_thresh))
        masks, stabilities = list(auto.masks), [float(s) for s in auto.stability]
    h, w = display.shape[:2]
    seg = np.zeros((h, w), np.float32)
    boundary = np.zeros((h, w), bool)
    for mask, stability in zip(masks, stabilities):
        seg[mask] += float(stability)
        boundary |= find_boundaries(mask, mode="thick")
    return SamAugPriors(np.clip(seg, 0.0, 1.0), boundary, len(masks))


def augmented_image(display: np.ndarray, priors: SamAugPriors) -> np.ndarray:
    """``(H, W, 3)`` uint8: channel 0 raw grey (mean of the display channels), 1 segmentation
    prior x 255, 2 boundary prior x 255."""
    grey = np.asarray(display, np.float32).mean(axis=-1)
    out = np.stack([grey, priors.segmentation * 255.0, priors.boundary.astype(np.float32) * 255.0], axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def image_display(image: MedicalImage, window: str | tuple[float, float] | None = None) -> np.ndarray:
    """The 2D display image of a MedicalImage (SAMAug works on 2D images)."""
    if image.is_volume:
        raise InputError("SAMAug works on 2D images; convert volume slices to 2D files first")
    return to_display(image.array, image.modality, window)


def write_png(rgb: np.ndarray, path: Path, force: bool, protected: Iterable[Path] = ()) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG atomically (never over an input)."""
    from PIL import Image

    with atomic_write(path, force=force, protected=protected) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path


def samaug_files(inputs: Iterable[str | Path], out_dir: str | Path, predictor: Predictor, *, force: bool = False,
                 points_per_side: int = 16, pred_iou_thresh: float = 0.88, stability_thresh: float = 0.95,
                 grid: str = "auto", progress: bool = True) -> list[tuple[Path, int]]:
    """Write ``<out_dir>/<stem>.png`` (SAMAug image) for every input; return ``(path, n_masks)``.

    All output names are checked before any work (OutputExistsError without ``force``).
    """
    from tqdm.auto import tqdm

    inputs = [Path(p) for p in inputs]
    out_dir = Path(out_dir)
    targets = []
    for p in inputs:
        stem = p.name.split(".")[0]
        targets.append(out_dir / f"{stem}.png")
    if len(set(targets)) != len(targets):
        raise InputError("two inputs have the same file stem; their outputs would collide")
    from medisam.io.atomic import check_output

    for t in targets:
        check_output(t, force=force, protected=inputs)
    written = []
    for src, dst in tqdm(list(zip(inputs, targets)), desc="samaug", disable=not progress):
        display = image_display(read_image(src))
        priors = compute_priors(predictor, display, points_per_side, pred_iou_thresh, stability_thresh, grid)
        write_png(augmented_image(display, priors), dst, force=force, protected=inputs)
        log.info("%s: %d masks -> %s", src, priors.n_masks, dst)
        written.append((dst, priors.n_masks))
    return written
