"""SAMAug (Zhang et al., "Input Augmentation with SAM", arXiv:2304.11332).

SAM's everything mode gives masks with stability scores; SAMAug turns them into two
priors and stacks them with the image as a 3-channel input for any segmentation network:

* segmentation prior: every pixel sums the stability scores of the masks covering it
  (clipped to [0, 1]);
* boundary prior: 1 on the (thick, scikit-image ``find_boundaries``) boundary of any mask.

The augmented image is ``(raw grey, segmentation prior, boundary prior)`` as uint8 RGB.

Where the masks come from (``grid``): the shared automatic mask generator
(:mod:`medisam.prompting.automatic`): ``points`` (a grid of single points, as in SAM and the
SAMAug paper), ``boxes`` (a multi-scale grid of box prompts) or ``auto`` (default: boxes for
models trained on box prompts only, such as LiteMedSAM, whose point grid keeps no mask at
all), each with its own filter defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from medisam.errors import InputError
from medisam.io import MedicalImage, atomic_write, read_image, to_display
from medisam.predict import Predictor

if TYPE_CHECKING:
    from medisam.prompting.automatic import AutoMaskConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamAugPriors:
    """``segmentation`` float32 ``(H, W)`` in [0, 1]; ``boundary`` bool ``(H, W)``; ``n_masks`` used."""

    segmentation: np.ndarray
    boundary: np.ndarray
    n_masks: int


def samaug_config(points_per_side: int = 16, pred_iou_thresh: float | None = None,
                  stability_thresh: float | None = None, grid: str = "auto",
                  box_scales: tuple[float, ...] | None = None) -> AutoMaskConfig:
    """SAMAug's everything-mode settings, checked before any work: those of
    :class:`~medisam.prompting.automatic.AutoMaskConfig`, and thresholds of at least 0 (the scores are 0..1;
    -1 kept every mask, as 0 does). SAMAug's own rule: the generator still takes -1e9 for "keep everything"."""
    from medisam.prompting.automatic import AutoMaskConfig

    config = AutoMaskConfig(points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                            stability_score_thresh=stability_thresh, grid=grid, box_scales=box_scales)
    for name, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_thresh", stability_thresh)):
        if value is not None and value < 0:
            raise InputError(f"{name} {value:g}: pred_iou_thresh and stability_thresh are scores from 0 to 1; "
                             "give a threshold from 0 (keep every mask) to below 1")
    return config


def compute_priors(predictor: Predictor, display: np.ndarray, points_per_side: int = 16,
                   pred_iou_thresh: float | None = None, stability_thresh: float | None = None, grid: str = "auto",
                   box_scales: tuple[float, ...] | None = None) -> SamAugPriors:
    """Everything-mode masks on one ``(H, W, 3)`` display image -> SAMAug priors (original grid).

    ``grid``, ``points_per_side``, the thresholds (None: the grid's defaults) and ``box_scales``
    (None: from ``points_per_side``) are those of :class:`~medisam.prompting.automatic.AutoMaskConfig`.
    """
    from skimage.segmentation import find_boundaries

    from medisam.prompting.automatic import generate_masks

    config = samaug_config(points_per_side, pred_iou_thresh, stability_thresh, grid, box_scales)
    predictor.set_display_image(display)
    auto = generate_masks(predictor, config)
    h, w = display.shape[:2]
    seg = np.zeros((h, w), np.float32)
    boundary = np.zeros((h, w), bool)
    for i, stability in enumerate(auto.stability):  # one dense mask at a time
        mask = auto.mask(i)
        seg[mask] += float(stability)
        boundary |= find_boundaries(mask, mode="thick")
    return SamAugPriors(np.clip(seg, 0.0, 1.0), boundary, len(auto))


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


def samaug_targets(inputs: Sequence[Path], out_dir: str | Path, force: bool = False) -> list[Path]:
    """``<out_dir>/<stem>.png`` per input, checked before any work: no two the same (InputError naming both
    inputs), none existing without ``force`` (OutputExistsError), none an input."""
    from medisam.io.atomic import check_output

    targets: list[Path] = []
    for p in inputs:
        target = Path(out_dir) / f"{Path(p).name.split('.')[0]}.png"
        if target in targets:
            raise InputError(f"{inputs[targets.index(target)]} and {p} have the same file stem: both would be "
                             f"written to {target}; rename one")
        targets.append(target)
    for t in targets:
        check_output(t, force=force, protected=inputs)
    return targets


def samaug_files(inputs: Iterable[str | Path], out_dir: str | Path, predictor: Predictor, *, force: bool = False,
                 points_per_side: int = 16, pred_iou_thresh: float | None = None,
                 stability_thresh: float | None = None,
                 grid: str = "auto", progress: bool = True) -> list[tuple[Path, int]]:
    """Write ``<out_dir>/<stem>.png`` (SAMAug image) for every input; return ``(path, n_masks)``.

    The settings (:func:`samaug_config`) and all output names are checked before any work
    (OutputExistsError without ``force``).
    """
    from tqdm.auto import tqdm

    samaug_config(points_per_side, pred_iou_thresh, stability_thresh, grid)
    inputs = [Path(p) for p in inputs]
    targets = samaug_targets(inputs, out_dir, force)
    written = []
    for src, dst in tqdm(list(zip(inputs, targets)), desc="samaug", disable=not progress):
        display = image_display(read_image(src))
        priors = compute_priors(predictor, display, points_per_side, pred_iou_thresh, stability_thresh, grid)
        write_png(augmented_image(display, priors), dst, force=force, protected=inputs)
        log.info("%s: %d masks -> %s", src, priors.n_masks, dst)
        written.append((dst, priors.n_masks))
    return written
