"""Training data: dataset cases -> 2D images with objects -> prompted targets per step.

Data path (shared with the benchmark): ``medisam.io.read_image`` -> the benchmark's
dataset adapters (``medisam.bench.datasets.iter_cases``, with their target rules) ->
:class:`TrainImage` (display pixels + target map, original grid) -> prompts from the
shared strategies (``medisam.prompting``). Multi-class and instance label maps give one
binary target per label / instance, each prompted separately.
Losses are computed on the original pixel grid (logits upsampled by the model's
``InputTransform``), exactly as inference produces masks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medisam.errors import InputError
from medisam.io import to_display
from medisam.models.embedding_cache import CacheSignature, EmbeddingKey
from medisam.models.transform import InputTransform

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainImage:
    """One 2D training image.

    Attributes:
        case_id: the case it came from (train/val split is by case, never by slice).
        name: ``case_id`` or ``case_id:z<slice>`` for volume slices.
        display: ``(H, W, 3)`` float32 in [0, 255], what the model preprocesses.
        targets: ``(H, W)`` int32 map, value ``k`` = pixels of target ``k`` (0 = none).
            Targets come from one label map, so they never overlap; storing one map instead
            of K masks keeps instance-dense images (hundreds of nuclei) small.
        values: target values present with at least ``min_area`` pixels on this image.
        labels: ``(H, W)`` the case's label map (class values), for class-level training (AutoSAM).
    """

    case_id: str
    name: str
    display: np.ndarray
    targets: np.ndarray
    values: tuple[int, ...]
    labels: np.ndarray | None = None


def _present(target_map: np.ndarray, min_area: int) -> tuple[int, ...]:
    values, counts = np.unique(target_map, return_counts=True)
    return tuple(int(v) for v, c in zip(values, counts) if v != 0 and c >= min_area)


def case_images(case, max_slices: int = 8, min_area: int = 4,
                window: str | tuple[float, float] | None = None) -> list[TrainImage]:
    """2D training images of a benchmark case: the image, or up to ``max_slices`` labelled slices.

    Volume slices are taken along array axis 0 (Z), evenly spaced among the slices that
    hold any target; intensities go through :func:`medisam.io.to_display` with the image's
    modality, exactly as the Predictor does.
    """
    image = case.image
    target_map = np.zeros(case.labels.array.shape[:image.spatial_ndim], dtype=np.int32)
    for k, target in enumerate(case.targets, start=1):
        target_map[target.box][target.box_mask] = k
    if image.is_volume:
        labelled = [z for z in range(target_map.shape[0]) if target_map[z].any()]
        if max_slices and len(labelled) > max_slices:
            idx = np.linspace(0, len(labelled) - 1, max_slices).round().astype(int)
            labelled = [labelled[i] for i in idx]
        out = []
        for z in labelled:
            values = _present(target_map[z], min_area)
            if values:
                out.append(TrainImage(case.case_id, f"{case.case_id}:z{z}",
                                      to_display(image.slice2d(z), image.modality, window),
                                      target_map[z], values, np.asarray(case.labels.array[z])))
        return out
    values = _present(target_map, min_area)
    if not values:
        return []
    return [TrainImage(case.case_id, case.case_id, to_display(image.array, image.modality, window),
                       target_map, values, np.asarray(case.labels.array))]


def split_cases(case_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split case ids into (train, val) reproducibly from ``seed`` (at least one train case)."""
    ids = sorted(set(case_ids))
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(ids) > 1:
        n_val = min(max(n_val, 1), len(ids) - 1)
    else:
        n_val = 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def three_way_split(case_ids: Sequence[str], val_fraction: float, holdout_fraction: float, seed: int,
                    ) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) case ids: the test split is taken first (from ``seed + 1``) and never
    seen by training; validation is then split from the rest."""
    rest, test = split_cases(case_ids, holdout_fraction, seed + 1) if holdout_fraction > 0 else (
        sorted(set(case_ids)), [])
    train, val = split_cases(rest, val_fraction / max(1e-9, 1 - holdout_fraction), seed)
    return train, val, test


def load_images(root: str | Path, max_slices: int = 8, min_area: int = 4, max_cases: int = 0,
                window: str | tuple[float, float] | None = None, targets: str | None = None,
                case_ids: Sequence[str] | None = None) -> list[TrainImage]:
    """Read a dataset folder (benchmark adapters) into 2D training images.

    ``targets``: ``label`` | ``component`` | ``instance`` (default: the dataset's setting).
    ``case_ids`` restricts reading to those cases. InputError if nothing is labelled.
    """
    from medisam.bench.datasets import DatasetOptions, iter_cases

    options = DatasetOptions(targets=targets, min_area=min_area)
    images: list[TrainImage] = []
    n = 0
    wanted = set(case_ids) if case_ids is not None else None
    for case in iter_cases(root, options, max_cases=max_cases or None):
        if wanted is not None and case.case_id not in wanted:
            continue
        images.extend(case_images(case, max_slices, min_area, window))
        n += 1
    if not images:
        raise InputError(f"{root}: no labelled images found")
    log.info("read %d cases -> %d 2D images, %d targets", n, len(images), sum(len(i.values) for i in images))
    return images


# --------------------------------------------------------------------------- prompts
def simulate_prompts(masks: Sequence[np.ndarray], transform: InputTransform, strategies: Sequence,
                     rng: np.random.Generator) -> dict[str, torch.Tensor | None]:
    """Prompts for K binary masks with the shared strategies, on the model grid.

    Each target draws one of ``strategies`` (``medisam.prompting`` objects, e.g. box-jitter10,
    points1) from ``rng``. Returns ``boxes`` (K, 4) XYXY, ``points`` (K, P, 2) XY and
    ``point_labels`` (K, P). One call uses one strategy for all K targets (SAM's decoder
    batches prompts of one shape); point-only prompts get SAM's padding point (label -1),
    as the Predictor adds.
    """
    strategy = strategies[int(rng.integers(len(strategies)))] if len(strategies) > 1 else strategies[0]
    sets = [strategy.simulate(m, rng) for m in masks]
    boxes = points = labels = None
    if sets[0].box is not None:
        boxes = torch.from_numpy(transform.coords_to_model(np.stack([s.box.as_array() for s in sets])))
    if sets[0].points is not None:
        coords = np.stack([transform.coords_to_model(s.points.coords) for s in sets]).astype(np.float32)
        lab = np.stack([s.points.labels for s in sets]).astype(np.int64)
        if boxes is None:
            coords = np.concatenate([coords, np.zeros((len(sets), 1, 2), np.float32)], axis=1)
            lab = np.concatenate([lab, -np.ones((len(sets), 1), np.int64)], axis=1)
        points, labels = torch.from_numpy(coords), torch.from_numpy(lab)
    return {"boxes": boxes, "points": points, "point_labels": labels}


# --------------------------------------------------------------------------- dataset
class PromptedDataset(torch.utils.data.Dataset):
    """Item ``i`` = image ``i`` (or its cached embedding) + up to K prompted targets.

    Prompts and target choice come from ``rng = default_rng([seed, epoch, i])``, so a run
    (and a resumed run) reproduces exactly whatever the worker or rank order. With
    ``deterministic=True`` (validation) the epoch is ignored, so the same objects and prompts are used every epoch.
    """

    def __init__(self, images: Sequence[TrainImage], inputs: Sequence, transforms: Sequence[InputTransform],
                 strategies: Sequence, targets_per_image: int, seed: int, deterministic: bool = False):
        self.images = list(images)
        self.inputs = list(inputs)  # tensors (3,S,S) / (C,h,w) or paths of cached embeddings
        self.transforms = list(transforms)
        self.strategies = list(strategies)
        self.k = targets_per_image
        self.seed = seed
        self.deterministic = deterministic
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        img = self.images[i]
        rng = np.random.default_rng([self.seed, 0 if self.deterministic else self.epoch + 1, i])
        values = list(img.values)
        if len(values) > self.k > 0:
            values = [values[j] for j in rng.choice(len(values), self.k, replace=False)]
        masks = [img.targets == v for v in values]
        x = self.inputs[i]
        if isinstance(x, (str, Path)):
            x = torch.load(x, map_location="cpu", weights_only=True)
        return {"input": x, "transform": self.transforms[i], "name": img.name,
                "masks": torch.from_numpy(np.stack(masks)),
                **simulate_prompts(masks, self.transforms[i], self.strategies, rng)}


def collate(items: list[dict]) -> list[dict]:
    """Images differ in size and target count: a batch is a plain list of items."""
    return items


def embedding_file(cache_dir: Path, display: np.ndarray, signature: str | CacheSignature) -> Path:
    """Cache file of one image's embedding: the :class:`EmbeddingKey` digest of pixels + model
    signature (the key of :class:`~medisam.models.embedding_cache.EmbeddingCache`)."""
    return cache_dir / f"{EmbeddingKey.of(display, signature).hex}.pt"
