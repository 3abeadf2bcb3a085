"""The fine-tuning loop: data -> prompted targets -> Dice+BCE -> AdamW + schedule -> best checkpoint.

One function, :func:`finetune`, runs single-process or under ``torchrun`` (DDP). It saves
``config.output`` (best validation Dice; ``{"model": state, "medisam": metadata}``, loadable
with ``medisam.load_model(base, checkpoint=...)``; the model as loaded when no epoch beats it on
validation, so a run never hands back a worse model), ``<output>.config.json`` and
``<output>.state.pt`` (weights, optimiser, schedule, epoch, early-stopping state, mode and
base model: ``--resume``). A time limit counts training only, from the first step.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from medisam.bench.datasets import detect_layout
from medisam.errors import InputError, MedisamError, OutputExistsError, first_line, require
from medisam.io import atomic_write
from medisam.io.atomic import check_output
from medisam.models import load_model
from medisam.models.checkpoint import load_error
from medisam.models.registry import resolve_device
from medisam.train import distributed as dist_utils
from medisam.train import modes
from medisam.train.config import FinetuneConfig, config_path_for, option_flag, state_path_for
from medisam.train.data import (PromptedDataset, TrainImage, collate, embedding_file, load_images,
                                three_way_split)
from medisam.train.losses import SegLoss, dice_per_target

log = logging.getLogger(__name__)

#: Targets decoded at once during validation (bounds memory on instance-dense images).
VAL_CHUNK = 32


@dataclass
class EarlyStopping:
    """Stop when the monitored value (higher is better) has not improved by ``min_delta``
    for ``patience`` consecutive epochs; ``patience <= 0`` never stops."""

    patience: int = 5
    min_delta: float = 1e-3
    best: float = -math.inf
    bad_epochs: int = 0

    def step(self, value: float) -> bool:
        """Record one epoch's value; return True when it is a new best."""
        if value > self.best + self.min_delta or self.best == -math.inf:
            self.best = value
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


@dataclass
class FinetuneResult:
    """What a run did: where it wrote, best validation Dice, per-epoch history."""

    output: Path
    best_val_dice: float | None
    epochs_run: int
    stopped: str  # "epochs" | "early_stopping" | "time_limit"
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    test_cases: list[str] = field(default_factory=list)  # held out (--holdout-fraction): never trained on
    base_val_dice: float | None = None  # the same validation targets before training (the model as loaded)
    kept_base: bool = False  # no epoch beat the model as loaded: ``output`` holds its weights

    @property
    def worse_than_base(self) -> bool:
        """True when no epoch beat the model as loaded on validation (a fresh run's ``output`` then
        holds the base weights, :attr:`kept_base`; a resumed run's keeps what the earlier run wrote)."""
        return self.best_val_dice is not None and self.base_val_dice is not None and \
            self.best_val_dice < self.base_val_dice


class TrainClock:
    """Seconds of training: the clock starts at the first training step, so loading the model
    and data and the embedding pass (minutes on a cold cache) never use up the time limit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started: float | None = None

    def start(self) -> None:
        """Start counting (the first call only)."""
        if self._started is None:
            self._started = self._clock()

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (0 before it)."""
        return 0.0 if self._started is None else self._clock() - self._started

    def over(self, minutes: float | None) -> bool:
        """Whether more than ``minutes`` of training have passed (never without a limit)."""
        return minutes is not None and self.elapsed() > minutes * 60


def make_scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig, total_steps: int,
                   timer: TrainClock | None = None):
    """Cosine decay with linear warm-up, or one-cycle, over ``total_steps`` optimiser steps.

    With ``config.time_limit_min`` and a ``timer``, the cosine's progress is the larger of
    the step fraction and the fraction of the time budget used, so a run that the time
    limit cuts short (a laptop, a slow encoder mode) still anneals to a low learning rate
    instead of stopping at its peak. The timer counts training only (from the first step)
    and the current process only (a resumed run gets a fresh budget, as its time limit does).
    """
    total_steps = max(1, total_steps)
    budget = config.time_limit_min * 60 if config.time_limit_min and timer is not None else None
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                   pct_start=max(config.warmup_fraction, 0.01))
    warmup = int(total_steps * config.warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if budget is not None:
            progress = max(progress, min(1.0, timer.elapsed() / budget))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(device: torch.device, enabled: bool):
    """bf16 (or fp16) autocast on CUDA; a no-op elsewhere (CPU autocast gains nothing here)."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any], force: bool = True) -> Path:
    """Write ``{"model": state, "medisam": meta}`` atomically."""
    with atomic_write(path, force=force) as tmp:
        torch.save({"model": state, "medisam": meta}, tmp)
    return path


def _to_device(item: dict, device: torch.device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in item.items()}


def _item_loss(loss_fn: SegLoss, item: dict, low_res: torch.Tensor, iou: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and per-target Dice of one image, on its original pixel grid."""
    logits = item["transform"].logits_to_original(low_res.float())  # (K, 1, H, W)
    target = item["masks"][:, None]
    return loss_fn(logits, target, iou), dice_per_target(logits.detach(), target)


def _chunks(item: dict, size: int):
    """Split an item's K targets into chunks of ``size`` (validation on instance-dense images)."""
    k = item["masks"].shape[0]
    for start in range(0, k, size):
        sl = slice(start, start + size)
        yield {key: (v[sl] if isinstance(v, torch.Tensor) and key != "input" else v) for key, v in item.items()}


@torch.no_grad()
def evaluate(segmenter: nn.Module, dataset: PromptedDataset, indices: Sequence[int], device: torch.device,
             amp: bool) -> tuple[float, float]:
    """Sum of per-target Dice and number of targets over ``indices`` (every object, fixed prompts)."""
    total, count = 0.0, 0.0
    for i in indices:
        item = _to_device(dataset[i], device)
        x = item["input"][None]
        for chunk in _chunks(item, VAL_CHUNK):
            with _autocast(device, amp):
                (low_res, _), = segmenter(x, [chunk])
            d = dice_per_target(chunk["transform"].logits_to_original(low_res.float()), chunk["masks"][:, None])
            total += float(d.sum())
            count += d.numel()
    return total, count


def prepare_inputs(model, images: Sequence[TrainImage], from_embeddings: bool, cache_dir: Path,
                    info: dist_utils.DistInfo, progress: bool) -> tuple[list, list]:
    """Model inputs per image: preprocessed tensors, or cached embedding files (decoder mode).

    Embeddings are computed by rank 0 with the *frozen* encoder and stored under
    ``cache_dir``, keyed by pixels + model signature, so later runs reuse them.
    """
    from tqdm.auto import tqdm

    inputs, transforms = [], []
    todo = []
    for img in images:
        tensor, transform = model.preprocess(img.display)
        transforms.append(transform)
        if from_embeddings:
            path = embedding_file(cache_dir, img.display, model.cache_signature)
            inputs.append(path)
            if not path.is_file():
                todo.append((tensor, path))
        else:
            inputs.append(tensor[0].cpu())
    if todo and info.is_main:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for tensor, path in tqdm(todo, desc="encoding", disable=not progress, leave=False):
            emb = model.encode(tensor)[0].cpu().contiguous()
            with atomic_write(path, force=True) as tmp:
                torch.save(emb, tmp)
    dist_utils.barrier(info)
    return inputs, transforms


def check_extras(mode: str) -> None:
    """The ``[train]`` extra's modules a run of ``mode`` imports (the loss; peft for LoRA), checked before
    any work: without them a decoder run encoded the whole dataset, then stopped at the loss."""
    require("monai.losses", "train")
    if mode == "lora":
        require("peft", "train")


def finetune(config: FinetuneConfig, *, force: bool = False, resume: str | Path | None = None,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune ``config.model`` on ``config.data`` in ``config.mode``; write the best checkpoint.

    The time limit counts training only (from the first step, see :class:`TrainClock`).

    Raises:
        OutputExistsError: an output (checkpoint, state, config) exists and neither ``force``
            nor a resume of this run was asked.
        InputError: bad data folder, nothing to train on; a resume state that is unreadable,
            saved in another mode or for another model, already at ``epochs``, or that an output
            would overwrite; a checkpoint whose adapters ``config.mode`` cannot keep.
        MedisamError: training ended without an optimiser step that could change the weights.
    """
    from tqdm.auto import tqdm

    started = time.monotonic()
    output = Path(config.output)
    state_path = state_path_for(output)
    detect_layout(Path(config.data))  # a missing dataset is told before any output is
    check_outputs(output, force, resume)
    check_extras(config.mode)  # before the model loads and the images are read (or encoded)
    resume_state = _read_resume(resume_state_path(resume), config) if resume is not None else None
    device = resolve_device(config.device)
    info = dist_utils.init_from_env(device)
    device = dist_utils.device_for(info, device)
    show = progress and info.is_main
    torch.manual_seed(config.seed)

    model = load_model(config.model, checkpoint=config.checkpoint, device=device, backend="torch")
    net = model.net
    config = modes.continue_from(net, config)
    images = load_images(config.data, config.max_slices, config.min_area, config.max_cases, config.window,
                         config.targets)
    train_ids, val_ids, test_ids = three_way_split([i.case_id for i in images], config.val_fraction,
                                                   config.holdout_fraction, config.seed)
    train_imgs = [i for i in images if i.case_id in set(train_ids)]
    val_imgs = [i for i in images if i.case_id in set(val_ids)]
    log.info("split: %d train cases (%d images), %d val cases (%d images), %d held-out test cases",
             len(train_ids), len(train_imgs), len(val_ids), len(val_imgs), len(test_ids))
    case_split = {"train": list(train_ids), "val": list(val_ids), "test": list(test_ids)}  # in the checkpoint's meta

    from_embeddings = config.mode == "decoder"
    cache_dir = Path(config.cache_dir) if config.cache_dir else output.with_name(output.stem + ".embeddings")
    strategies = config.strategies()
    datasets = {}
    for split, imgs in (("train", train_imgs), ("val", val_imgs)):
        inputs, transforms = prepare_inputs(model, imgs, from_embeddings, cache_dir, info, show)
        k = config.targets_per_image if split == "train" else config.val_targets_per_image
        datasets[split] = PromptedDataset(imgs, inputs, transforms, strategies, k,
                                          config.seed, deterministic=(split == "val"))

    modes.prepare(net, config)
    net.to(device)
    segmenter: nn.Module = modes.PromptedSegmenter(net, from_embeddings)
    if info.enabled:
        segmenter = nn.parallel.DistributedDataParallel(
            segmenter, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if info.enabled:
        sampler = torch.utils.data.DistributedSampler(datasets["train"], info.world_size, info.rank,
                                                      shuffle=True, seed=config.seed)
    else:
        sampler = torch.utils.data.RandomSampler(datasets["train"],
                                                 generator=torch.Generator().manual_seed(config.seed))
    loader = torch.utils.data.DataLoader(datasets["train"], batch_size=config.batch_size, sampler=sampler,
                                         collate_fn=collate, num_workers=0)
    steps_per_epoch = math.ceil(len(loader) / config.accumulate)
    timer = TrainClock()
    scheduler = make_scheduler(optimizer, config, steps_per_epoch * config.epochs, timer)
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    loss_fn = SegLoss()
    stopper = EarlyStopping(config.patience, config.min_delta)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume_state is not None:
        _restore(resume_state, resume, config, net, optimizer, scheduler)
        if hasattr(scheduler, "total_steps"):  # one-cycle: the run may now have more epochs
            scheduler.total_steps = max(scheduler.total_steps, steps_per_epoch * config.epochs)
        _rate_at_restored_step(optimizer, scheduler)
        stopper.load_state_dict(resume_state["early_stopping"])
        history = list(resume_state.get("history", []))
        start_epoch = int(resume_state["epoch"]) + 1
        log.info("resumed from %s at epoch %d", resume, start_epoch)

    val_indices = list(range(len(datasets["val"])))[info.rank::info.world_size]
    if resume_state is not None:
        base_val = resume_state.get("base_val_dice")
    else:  # the model as loaded, on the same targets: what the epochs must beat
        base_val = _val_dice(segmenter, datasets["val"], val_indices, device, config.amp, info)
        if base_val is not None and info.is_main:
            log.info("validation Dice before training: %.4f", base_val)
            if show:
                tqdm.write(f"val_dice before training={base_val:.4f}")
    # the output until an epoch beats it on validation (a fresh run; a resumed one already wrote its output)
    base_state = modes.export_state(net, config) if resume_state is None and base_val is not None \
        and info.is_main else None
    stopped = "epochs"
    epoch = start_epoch - 1
    wrote_output = False  # an epoch's weights were saved to output
    moved = 0  # optimiser steps with a learning rate above 0
    for epoch in range(start_epoch, config.epochs):
        if isinstance(sampler, torch.utils.data.DistributedSampler):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(config.seed * 1000 + epoch)
        datasets["train"].set_epoch(epoch)
        modes.set_train_mode(net, config.mode)
        run_loss, run_dice, n_targets, n_items = 0.0, 0.0, 0, 0
        out_of_time = False
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show, leave=False)
        optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(bar):
            timer.start()
            items = [_to_device(item, device) for item in batch]
            x = torch.stack([item["input"] for item in items])
            with _autocast(device, config.amp):
                outputs = segmenter(x, items)
            losses, dices = [], []
            for item, (low_res, iou) in zip(items, outputs):
                loss_i, dice_i = _item_loss(loss_fn, item, low_res, iou)
                losses.append(loss_i)
                dices.append(dice_i)
            loss = torch.stack(losses).mean() / config.accumulate
            (scaler.scale(loss) if scaler else loss).backward()
            stepped = (step + 1) % config.accumulate == 0 or step + 1 == len(loader)
            if stepped:
                moved += _optimizer_step(optimizer, scheduler, scaler)
            d = torch.cat(dices)
            run_loss += float(loss.detach()) * config.accumulate
            run_dice += float(d.sum())
            n_targets += d.numel()
            n_items += 1
            bar.set_postfix(loss=f"{run_loss / n_items:.4f}", dice=f"{run_dice / max(n_targets, 1):.3f}")
            if stepped and config.time_limit_min is not None:  # never between accumulated batches
                if dist_utils.broadcast_flag(timer.over(config.time_limit_min), info, device):
                    out_of_time = True
                    break
        bar.close()
        if not moved:
            raise MedisamError(f"training made no optimiser step that could change the weights in epoch "
                               f"{epoch + 1} (no batch, or a learning rate of 0 throughout); nothing written")
        net.eval()
        s_loss, s_items, s_dice, s_targets = dist_utils.all_sum([run_loss, n_items, run_dice, n_targets], info, device)
        record = {"epoch": epoch + 1, "train_loss": s_loss / max(s_items, 1),
                  "train_dice": s_dice / max(s_targets, 1)}
        if datasets["val"].images:
            record["val_dice"] = _val_dice(segmenter, datasets["val"], val_indices, device, config.amp, info)
            improved = stopper.step(record["val_dice"])
        else:
            improved = True  # no validation set: keep the latest weights
        history.append(record)
        if info.is_main:
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in record.items()})
            if show:
                tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if improved and beats_base(record.get("val_dice"), base_val):
                state, extra = modes.export_state(net, config)
                meta = {"base_model": config.model, "mode": config.mode, "config": config.to_dict(),
                        "epoch": epoch + 1, "val_dice": record.get("val_dice"), "base_val_dice": base_val,
                        "split": case_split, **extra}
                save_checkpoint(output, state, meta)
                wrote_output = True
            if epoch == start_epoch:
                config.save(config_path_for(output), force=True)
            _save_state(state_path, config, net, optimizer, scheduler, stopper, history, epoch, base_val)
        dist_utils.barrier(info)
        if out_of_time:
            stopped = "time_limit"
            break
        if stopper.should_stop:
            stopped = "early_stopping"
            break
    # a fresh run's output is this run's (an old file left there under force=True is never handed back)
    kept_base = base_state is not None and not wrote_output
    if kept_base:  # no epoch beat the model as loaded: hand it back, not a worse one
        state, extra = base_state
        save_checkpoint(output, state, {"base_model": config.model, "mode": config.mode, "config": config.to_dict(),
                                        "epoch": 0, "val_dice": base_val, "base_val_dice": base_val,
                                        "kept_base": True, "split": case_split, **extra})
    elif not output.exists() and info.is_main:  # e.g. resumed after the last epoch
        state, extra = modes.export_state(net, config)
        save_checkpoint(output, state, {"base_model": config.model, "mode": config.mode,
                                        "config": config.to_dict(), "epoch": epoch + 1, "split": case_split, **extra})
    dist_utils.barrier(info)
    dist_utils.cleanup(info)
    best = stopper.best if stopper.best != -math.inf else None
    result = FinetuneResult(output, best, len(history), stopped, time.monotonic() - started, history,
                            list(test_ids), base_val, kept_base)
    if result.worse_than_base and info.is_main:
        kept = "it holds the base weights" if kept_base else "it keeps what the earlier run wrote"
        log.warning("no epoch beat %s as loaded on the validation cases (best val Dice %.4f, %.4f before "
                    "training): %s was not overwritten by a worse model, %s; train longer (--time-limit, "
                    "--epochs, --resume) or lower --lr", config.model, best, base_val, output, kept)
    return result


def beats_base(val_dice: float | None, base_val_dice: float | None) -> bool:
    """Whether an epoch's validation Dice may replace the output: above the model as loaded (the first
    steps of a decoder run on DRIVE trade its box-filling mask for an empty one, 0.21 -> 0.02, and a
    short run ended there and saved that). True where either is unknown (no validation set)."""
    return val_dice is None or base_val_dice is None or val_dice > base_val_dice


def _val_dice(segmenter: nn.Module, dataset: PromptedDataset, indices: Sequence[int], device: torch.device,
              amp: bool, info) -> float | None:  # noqa: ANN001 - dist_utils' DistInfo
    """Mean Dice over the validation targets (every rank's share summed), or None without validation images."""
    if not dataset.images:
        return None
    plain = segmenter.module if info.enabled else segmenter  # no collectives in uneven eval
    total, count = evaluate(plain, dataset, indices, device, amp)
    total, count = dist_utils.all_sum([total, count], info, device)
    return total / max(count, 1)


def _optimizer_step(optimizer: torch.optim.Optimizer, scheduler, scaler) -> bool:
    """One optimiser and schedule step; True when it could change the weights (learning rate above 0)."""
    moves = any(group["lr"] > 0 for group in optimizer.param_groups)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return moves


#: What a fine-tuned checkpoint may be called (it loads with ``--checkpoint``).
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def output_paths(output: str | Path) -> list[Path]:
    """Every file a run writes: the checkpoint, its training state and its configuration."""
    output = Path(output)
    return [output, state_path_for(output), config_path_for(output)]


def resume_state_path(resume: str | Path) -> Path:
    """The training state ``resume`` names: a ``.state.pt`` file, or the checkpoint it lies beside."""
    path = Path(resume)
    return path if path.name.endswith(".state.pt") else state_path_for(path)


def check_outputs(output: Path, force: bool, resume: str | Path | None) -> None:
    """Refuse, before any work, outputs that exist (without ``force``) or that are the resume input.

    Resuming a run into its own files (``resume`` is ``output`` or its state) continues that
    run in place and needs no ``force``; with ``force`` it is refused, since ``force`` means
    overwriting and the state is the input.
    """
    if output.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{output}: a checkpoint is written as {' or '.join(CHECKPOINT_SUFFIXES)} "
                         f"(its state and config go beside it); name it e.g. {output.stem}.pth")
    state = resume_state_path(resume) if resume is not None else None
    in_place = state is not None and state.resolve() == state_path_for(output).resolve()
    if in_place and force:
        raise InputError(f"{state} is the training state of {output}, an input that force=True would overwrite; "
                         "drop force=True to continue that run in place, or write to another output")
    protected = [state] if state is not None and not in_place else []
    for path, what in zip(output_paths(output), ("", "the training state", "the configuration")):
        try:
            check_output(path, force=force or in_place, protected=protected)
        except OutputExistsError:
            if not what:
                raise
            raise OutputExistsError(f"{path} ({what} a run writes beside {output}) exists; pass force=True to "
                                    f"overwrite it, or write to another output") from None


def _save_state(path: Path, config: FinetuneConfig, net: nn.Module, optimizer, scheduler, stopper: EarlyStopping,
                history: list[dict[str, float]], epoch: int, base_val_dice: float | None = None) -> None:
    state = {"net": {k: v.detach().cpu() for k, v in net.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "early_stopping": stopper.state_dict(), "history": history, "epoch": epoch,
             "base_val_dice": base_val_dice,
             "mode": config.mode, "base_model": config.model, "config": config.to_dict()}
    with atomic_write(path, force=True) as tmp:
        torch.save(state, tmp)


def _read_resume(path: Path, config: FinetuneConfig) -> dict[str, Any]:
    """The training state at ``path``; refused unless saved for ``config``'s model and mode with epochs to go."""
    if not path.is_file():
        raise InputError(f"no training state to resume: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read training state {path}: {load_error(exc)}") from None
    for key in ("net", "optimizer", "scheduler", "early_stopping", "epoch"):
        if not isinstance(state, dict) or key not in state:
            raise InputError(f"{path} is not a medisam training state (missing {key!r})")
    saved = state.get("mode") or modes.mode_of_state(state["net"])
    if saved is not None and saved != config.mode:
        raise InputError(f"{path} was saved in {saved} mode, not {config.mode}: resume it in {saved} mode")
    base = state.get("base_model")
    if base is not None and base != config.model:
        raise InputError(f"{path} was saved for model {base!r}, not {config.model!r}: resume it with that model")
    _check_same_run(path, state.get("config"), config)
    done = int(state["epoch"]) + 1
    if done >= config.epochs:
        raise InputError(f"{path} already ran {done} epoch(s) of {config.epochs}: "
                         f"resume with more than {done} epochs (--epochs) to train on")
    return state


def _rate_at_restored_step(optimizer: torch.optim.Optimizer, scheduler) -> None:
    """Set each group's learning rate to the schedule's value at the restored step, over the resumed
    run's length: the optimiser kept the rate the earlier run ended with (0 once its cosine ran
    out), so the resumed run's first step (an epoch's only one on a small set) changed nothing."""
    import warnings

    with warnings.catch_warnings():  # get_lr outside step() warns; here it is the point
        warnings.simplefilter("ignore", UserWarning)
        rates = scheduler.get_lr()
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate


#: What a resumed run may change: how long it goes on, and where it runs and writes. Every other
#: setting decides what it trains and validates on and how (the split, the prompts, the model), so a
#: resume keeps the run's own: a resume without --holdout-fraction trained on the held-out cases.
RESUMABLE = frozenset({"output", "epochs", "time_limit_min", "patience", "min_delta", "device", "amp", "cache_dir"})


def saved_settings(resume: str | Path) -> dict[str, Any] | None:
    """The configuration the training state ``resume`` names was saved with, the base a resumed run
    starts from (None: a state from before stop 71, or one :func:`_read_resume` will refuse)."""
    try:
        state = torch.load(resume_state_path(resume), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - missing or unreadable: _read_resume says so in its words
        return None
    saved = state.get("config") if isinstance(state, dict) else None
    return {k: v for k, v in saved.items() if k not in RESUMABLE} if isinstance(saved, dict) else None


def _check_same_run(path: Path, saved: Any, config: FinetuneConfig) -> None:
    """Refuse a resume whose settings (but :data:`RESUMABLE`) differ from the run's own, ``saved``."""
    if not isinstance(saved, dict):
        return  # saved before stop 71
    derived = {"adapter_dim", "adapter_scale"}  # an adapter checkpoint's own (modes.continue_from), not a choice
    changed = [name for name, value in saved.items() if name not in RESUMABLE | derived and hasattr(config, name)
               and not _same(name, value, getattr(config, name))]
    if changed:
        said = "; ".join(f"{option_flag(n)} was {saved[n]!r}, now {getattr(config, n)!r}" for n in changed)
        raise InputError(f"{path} continues a run with other settings ({said}): a resume changes only "
                         "--epochs, --time-limit, --patience and --device; start a new run for the others")


def _same(name: str, a: Any, b: Any) -> bool:
    """Whether a setting is the same (paths by the file they name)."""
    if name in ("data", "checkpoint") and a and b:
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def _restore(state: dict[str, Any], resume: str | Path, config: FinetuneConfig, net: nn.Module,
             optimizer: torch.optim.Optimizer, scheduler) -> None:
    """Load a resume state's weights, optimiser and schedule (one-line InputError when they do not fit)."""
    try:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"cannot resume from {resume}: its state does not fit {config.model} in {config.mode} "
                         f"mode ({first_line(exc, 120)})") from None
