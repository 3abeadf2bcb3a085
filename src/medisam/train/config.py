"""Fine-tuning configuration: one frozen dataclass, YAML/JSON overlay, saved beside every output."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

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
        epochs: maximum epochs; ``time_limit_min`` stops earlier (checked after each optimiser
            step; minutes of training, counted from the first step, so loading the data and
            the embedding pass do not use it up).
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
        values = self.to_dict()
        check_options(values)
        if self.schedule not in ("cosine", "onecycle"):
            raise InputError(f"schedule must be cosine or onecycle, got {self.schedule!r}")
        for name, value in values.items():  # the saved JSON never holds NaN or Infinity
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value}")

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
        try:  # an image given as --config, or a YAML/JSON syntax error, printed the parser's traceback
            text = path.read_text()
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - utf-8, json and yaml errors have many types
            raise InputError(f"--config {path}: cannot parse config ({exc.__class__.__name__}); "
                             "give a YAML or JSON mapping") from None
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
            text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
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


#: CLI flags whose names differ from their configuration field.
_FLAGS = {"time_limit_min": "--time-limit"}


def option_flag(name: str) -> str:
    """The CLI flag that sets configuration field ``name`` (``val_fraction`` -> ``--val-fraction``)."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _number(values: Mapping[str, Any], name: str, spell: Callable[[str], str]) -> float:
    """``values[name]`` as a finite number (InputError naming it otherwise)."""
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{spell(name)} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{spell(name)} must be a finite number, got {value}")
    return value


def _at_least(values: Mapping[str, Any], name: str, low: int, spell: Callable[[str], str]) -> None:
    value = values[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{spell(name)} must be a whole number, got {value!r}")
    if value < low:
        raise InputError(f"{spell(name)} must be >= {low}, got {value}")


def check_options(values: Mapping[str, Any], spell: Callable[[str], str] = str) -> None:
    """Refuse bad training options shared by fine-tuning and AutoSAM, with a one-line InputError.

    ``values`` holds (some of) ``epochs``, ``batch_size``, ``max_cases``, ``lr``,
    ``time_limit_min``, ``val_fraction``, ``holdout_fraction``; ``spell`` names a field in
    the message (the CLI passes :func:`option_flag`, so the user reads the flag they typed).
    """
    for name, low in (("epochs", 1), ("batch_size", 1), ("max_cases", 0), ("seed", 0), ("patience", 0),
                      ("max_slices", 0), ("accumulate", 1), ("targets_per_image", 1)):
        if values.get(name) is not None:  # seed -1 was numpy's traceback; patience/max_slices -1 trained anyway
            _at_least(values, name, low, spell)
    from medisam.bench.datasets import TARGET_MODES  # the dataset readers' (lazy: they import scipy)

    if values.get("targets") is not None and values["targets"] not in TARGET_MODES:  # "pixel" trained as labels
        raise InputError(f"{spell('targets')} must be {', '.join(TARGET_MODES[:-1])} or {TARGET_MODES[-1]}, "
                         f"got {values['targets']!r}")
    if "lr" in values and _number(values, "lr", spell) <= 0:
        raise InputError(f"{spell('lr')} must be positive, got {values['lr']}")
    if values.get("time_limit_min") is not None:
        if isinstance(values["time_limit_min"], float) and math.isinf(values["time_limit_min"]):
            raise InputError(f"{spell('time_limit_min')} must be a finite number of minutes; "
                             "leave it out for no limit")
        if _number(values, "time_limit_min", spell) <= 0:
            raise InputError(f"{spell('time_limit_min')} must be positive, got {values['time_limit_min']} minutes")
    fractions = [name for name in ("val_fraction", "holdout_fraction") if name in values]
    for name in fractions:
        if not 0.0 <= _number(values, name, spell) < 1.0:
            raise InputError(f"{spell(name)} must be in [0, 1), got {values[name]}")
    if len(fractions) == 2 and values["val_fraction"] + values["holdout_fraction"] >= 1.0:
        raise InputError(f"{spell('val_fraction')} {values['val_fraction']} and {spell('holdout_fraction')} "
                         f"{values['holdout_fraction']} leave no cases for training; their sum must be below 1")
