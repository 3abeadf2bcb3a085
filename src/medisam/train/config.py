"""Fine-tuning configuration: one frozen dataclass, YAML/JSON overlay, saved beside every output."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from medisam.errors import InputError

#: Fine-tuning modes: which parameters train (see :mod:`medisam.train.modes`).
MODES = ("full", "decoder", "adapter", "lora")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything one fine-tuning run depends on (saved as ``<output>.config.json``).

    Attributes:
        data: dataset folder (2D ``images/`` + ``masks/``, or MSD-style ``imagesTr/`` + ``labelsTr/``).
        output: checkpoint file to write (``.pt``/``.pth``).
        model: base registry name (``litemedsam``, ``litemedsam-tiny``, ``sam-vit-b``...).
        checkpoint: base weights (default: bundled / ``$MEDISAM_WEIGHTS``).
        mode: ``full`` | ``decoder`` | ``adapter`` | ``lora``.
        epochs: maximum epochs; ``time_limit_min`` stops earlier (checked after each step).
        val_fraction: fraction of *cases* (files/volumes) held out for validation.
        holdout_fraction: fraction of cases set aside as an untouched test split (neither
            trained nor validated on; :func:`medisam.train.data.three_way_split` recovers it).
        batch_size: images per optimiser step (before accumulation).
        targets_per_image: objects (labels/instances) sampled per image per step.
        val_targets_per_image: objects per validation image (a fixed seeded subset; 0 = all);
            bounds validation time on instance-dense images.
        accumulate: gradient accumulation steps.
        lr, weight_decay: AdamW; ``schedule`` ``cosine`` (with warm-up; with a time limit it
            follows the time budget when that runs out first) or ``onecycle``.
        patience, min_delta: early stopping on validation Dice (0 patience: never stop early).
        prompt: shared prompt strategies (``medisam.prompting``), comma-separated; each
            step draws one, e.g. ``box-jitter10`` (MedSAM-like), ``box,points1,point``.
        targets: ``label`` | ``component`` | ``instance`` (default: the dataset's own setting).
        max_slices: for volumes, labelled slices taken per volume (evenly spaced; 0 = all).
        max_cases: cap on the number of cases read (0 = all), for quick runs.
        min_area: objects smaller than this many pixels are skipped.
        adapter_dim, adapter_scale: Medical SAM Adapter bottleneck width and MLP-branch scale.
        lora_rank, lora_alpha, lora_dropout: peft LoRA on the encoder's attention qkv/proj.
        train_decoder: also train the mask decoder in ``adapter``/``lora`` modes.
        cache_dir: where ``decoder`` mode stores embeddings (default ``<output>.embeddings/``).
        device: ``auto`` | ``cpu`` | ``cuda``...; ``amp``: mixed precision on CUDA.
        seed: seeds the split, prompt simulation and initialisation.
        window: CT window preset or ``WIDTH,LEVEL`` for CT data (None: per-modality default).
    """

    data: str
    output: str
    model: str = "litemedsam"
    checkpoint: str | None = None
    mode: str = "decoder"
    epochs: int = 10
    time_limit_min: float | None = None
    val_fraction: float = 0.2
    holdout_fraction: float = 0.0
    batch_size: int = 4
    targets_per_image: int = 8
    val_targets_per_image: int = 32
    accumulate: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_fraction: float = 0.05
    patience: int = 5
    min_delta: float = 1e-3
    prompt: str = "box-jitter10"
    targets: str | None = None
    max_slices: int = 8
    max_cases: int = 0
    min_area: int = 4
    adapter_dim: int = 32
    adapter_scale: float = 0.5
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    train_decoder: bool = False
    cache_dir: str | None = None
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    window: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        for strategy in self.strategies():
            if strategy.interactive or strategy.dims != 2 or strategy.name.startswith("everything"):
                raise InputError(f"prompt strategy {strategy.name!r} cannot be simulated for training; "
                                 "use box, box-jitterP, point, pointsK or pointsKnegM")
        if not 0.0 <= self.holdout_fraction < 1.0 or self.val_fraction + self.holdout_fraction >= 1.0:
            raise InputError("holdout_fraction must be in [0, 1) and leave cases for training")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.schedule not in ("cosine", "onecycle"):
            raise InputError(f"schedule must be cosine or onecycle, got {self.schedule!r}")
        for name in ("epochs", "batch_size", "targets_per_image", "accumulate"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.time_limit_min is not None and self.time_limit_min <= 0:
            raise InputError(f"time limit must be positive, got {self.time_limit_min} minutes")

    def strategies(self) -> list:
        """The parsed prompt strategies (PromptError for an unknown name)."""
        from medisam.prompting import parse_strategies

        return parse_strategies(self.prompt)

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)

    @staticmethod
    def from_dict(values: dict[str, Any]) -> "FinetuneConfig":
        """Build from a mapping; unknown keys are an InputError naming them."""
        known = {f.name for f in fields(FinetuneConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown configuration keys: {', '.join(unknown)}")
        return FinetuneConfig(**values)

    @staticmethod
    def read_overlay(path: str | Path) -> dict[str, Any]:
        """Read a YAML or JSON file of configuration values (to overlay on defaults)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file not found: {path}")
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        if not isinstance(values, dict):
            raise InputError(f"{path} must hold a mapping of configuration values")
        return values

    def save(self, path: str | Path, force: bool = True) -> Path:
        """Write the configuration as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically."""
        from medisam.io import atomic_write

        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        with atomic_write(path, force=force) as tmp:
            tmp.write_text(text)
        return path


def config_path_for(output: str | Path) -> Path:
    """``model.pt`` -> ``model.config.json`` (saved beside the checkpoint)."""
    output = Path(output)
    return output.with_name(output.stem + ".config.json")


def state_path_for(output: str | Path) -> Path:
    """``model.pt`` -> ``model.state.pt``: optimiser/scheduler/epoch state for ``--resume``."""
    output = Path(output)
    return output.with_name(output.stem + ".state.pt")
