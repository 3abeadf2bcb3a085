"""AutoSAM (Shaharabany et al., "AutoSAM: Adapting SAM to Medical Images by Overloading the
Prompt Encoder", arXiv:2306.06370): a learned prompt generator replaces the user's prompts.

Here the generator is a small CNN on the *frozen* image embedding (so embeddings are
computed once and cached, as in decoder fine-tuning). It outputs, per class, SAM prompt
embeddings: ``T`` sparse tokens ``(T, 256)`` and a dense map ``(256, h, w)``, which go
straight into the frozen mask decoder. Trained with Dice + BCE on the original grid.

Checkpoint: ``{"model": generator state, "autosam": {base_model, classes, hidden, tokens, config}}``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from medisam.errors import InputError, ModelError, OutputExistsError
from medisam.io import MedicalImage, atomic_write
from medisam.models import load_model
from medisam.models.promptable import PromptableModel
from medisam.predict import Predictor
from medisam.train.data import TrainImage, load_images, three_way_split
from medisam.train.losses import SegLoss, dice_of_present

log = logging.getLogger(__name__)


class PromptGenerator(nn.Module):
    """Embedding ``(B, C_e, h, w)`` -> sparse ``(B, K, T, C_e)`` and dense ``(B, K, C_e, h, w)`` prompts
    for ``K`` classes."""

    def __init__(self, embed_dim: int = 256, hidden: int = 64, num_classes: int = 1, num_tokens: int = 2):
        super().__init__()
        self.embed_dim, self.num_classes, self.num_tokens = embed_dim, num_classes, num_tokens
        self.body = nn.Sequential(
            nn.Conv2d(embed_dim, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.GELU())
        self.dense = nn.Conv2d(hidden, embed_dim * num_classes, 1)
        self.tokens = nn.Linear(hidden, num_classes * num_tokens * embed_dim)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = embedding.shape
        feat = self.body(embedding)
        dense = self.dense(feat).view(b, self.num_classes, self.embed_dim, h, w)
        sparse = self.tokens(feat.mean(dim=(2, 3))).view(b, self.num_classes, self.num_tokens, self.embed_dim)
        return sparse, dense


def decode(net: nn.Module, generator: PromptGenerator, embeddings: torch.Tensor,
           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: low-res logits ``(K, 1, L, L)`` and IoU ``(K, 1)`` from generated prompts."""
    sparse, dense = generator(embeddings)
    pe = net.prompt_encoder.get_dense_pe()
    out = []
    for b in range(embeddings.shape[0]):
        out.append(net.mask_decoder(image_embeddings=embeddings[b:b + 1], image_pe=pe,
                                    sparse_prompt_embeddings=sparse[b], dense_prompt_embeddings=dense[b],
                                    multimask_output=False))
    return out


def class_targets(img: TrainImage, classes: Sequence[int] | None) -> np.ndarray:
    """``(K, H, W)`` bool: one mask per class value, or the union of all labels (binary)."""
    labels = img.labels if img.labels is not None else img.targets
    if classes is None:
        return (labels > 0)[None]
    return np.stack([labels == c for c in classes])


@dataclass
class AutoSamResult:
    output: Path
    best_val_dice: float | None
    epochs_run: int
    seconds: float
    history: list[dict[str, float]]


def train_autosam(data: str | Path, output: str | Path, *, model: str = "litemedsam",
                  checkpoint: str | None = None, multiclass: bool = False, epochs: int = 20,
                  time_limit_min: float | None = None, lr: float = 1e-3, batch_size: int = 4,
                  val_fraction: float = 0.2, holdout_fraction: float = 0.0, seed: int = 0, hidden: int = 64,
                  tokens: int = 2, max_slices: int = 8, max_cases: int = 0, cache_dir: str | None = None,
                  device: str = "auto", force: bool = False, progress: bool = True) -> AutoSamResult:
    """Train a prompt generator for ``model``'s frozen decoder on a dataset; save the best epoch.

    ``multiclass``: one output per label value (else foreground = any label). ``time_limit_min``
    counts training only (from the first step). ``best_val_dice`` is None without a validation split.
    """
    from tqdm.auto import tqdm

    from medisam.train.config import FinetuneConfig, check_options
    from medisam.train.distributed import DistInfo
    from medisam.train.trainer import TrainClock, make_scheduler, prepare_inputs

    started = time.monotonic()
    check_options({"epochs": epochs, "batch_size": batch_size, "max_cases": max_cases, "lr": lr,
                   "time_limit_min": time_limit_min, "val_fraction": val_fraction,
                   "holdout_fraction": holdout_fraction, "seed": seed})
    output = Path(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass force=True to overwrite")
    torch.manual_seed(seed)
    base = load_model(model, checkpoint=checkpoint, device=device, backend="torch")
    net = base.net.eval().requires_grad_(False)
    images = load_images(data, max_slices, 4, max_cases)
    classes = sorted({int(v) for i in images for v in np.unique(i.labels) if v != 0}) if multiclass else None
    train_ids, val_ids, _ = three_way_split([i.case_id for i in images], val_fraction, holdout_fraction, seed)
    cache = Path(cache_dir) if cache_dir else output.with_name(output.stem + ".embeddings")
    splits = {}
    for name, ids in (("train", set(train_ids)), ("val", set(val_ids))):
        imgs = [i for i in images if i.case_id in ids]
        inputs, transforms = prepare_inputs(base, imgs, True, cache, DistInfo(), progress)
        splits[name] = (imgs, inputs, transforms)
    gen = PromptGenerator(net.mask_decoder.transformer_dim, hidden, len(classes or [1]), tokens).to(base.device)
    opt = torch.optim.AdamW(gen.parameters(), lr=lr, weight_decay=0.01)
    n_train = len(splits["train"][0])
    steps = math.ceil(n_train / batch_size)
    timer = TrainClock()
    sched = make_scheduler(opt, FinetuneConfig(data=str(data), output=str(output), lr=lr,
                                               time_limit_min=time_limit_min), steps * epochs, timer)
    loss_fn = SegLoss(iou_weight=0.0)
    rng = np.random.default_rng(seed)
    best, history = -math.inf, []
    meta = {"base_model": model, "classes": classes, "hidden": hidden, "tokens": tokens,
            # the base weights the prompt generator learnt to drive: predict loads them, or refuses others
            "base_checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
            "base_sha256": base.checkpoint_sha256,
            "config": {"data": str(data), "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                       "val_fraction": val_fraction, "holdout_fraction": holdout_fraction}}

    def run(name: str, order: Sequence[int], train: bool) -> float:
        imgs, inputs, transforms = splits[name]
        total, count = 0.0, 0
        for s in range(0, len(order), batch_size if train else 1):
            timer.start()
            idx = order[s:s + (batch_size if train else 1)]
            emb = torch.stack([torch.load(inputs[i], weights_only=True) for i in idx]).to(base.device)
            with torch.set_grad_enabled(train):
                outs = decode(net, gen, emb)
                losses = []
                for i, (low_res, _) in zip(idx, outs):
                    logits = transforms[i].logits_to_original(low_res.float())
                    target = torch.from_numpy(class_targets(imgs[i], classes))[:, None].to(base.device)
                    losses.append(loss_fn(logits, target))
                    d_sum, d_count = dice_of_present(logits.detach(), target)
                    total, count = total + d_sum, count + d_count
            if train:
                opt.zero_grad(set_to_none=True)
                torch.stack(losses).mean().backward()
                opt.step()
                sched.step()
            if train and timer.over(time_limit_min):
                break
        return total / count if count else 1.0  # no class anywhere, none predicted

    epoch = 0
    for epoch in tqdm(range(epochs), desc="autosam", disable=not progress):
        gen.train()
        train_dice = run("train", list(rng.permutation(n_train)), True)
        gen.eval()
        record = {"epoch": epoch + 1, "train_dice": train_dice}
        if splits["val"][0]:
            record["val_dice"] = run("val", list(range(len(splits["val"][0]))), False)
        history.append(record)
        log.info("autosam epoch %s", record)
        score = record.get("val_dice", train_dice)
        if score > best:
            best = score
            with atomic_write(output, force=True) as tmp:
                torch.save({"model": {k: v.detach().cpu() for k, v in gen.state_dict().items()},
                            "autosam": {**meta, "epoch": epoch + 1, "val_dice": record.get("val_dice")}}, tmp)
        if timer.over(time_limit_min):
            break
    best_val = max((r["val_dice"] for r in history if "val_dice" in r), default=None)
    return AutoSamResult(output, best_val, len(history), time.monotonic() - started, history)


@dataclass
class AutoSam:
    """A loaded AutoSAM: base model + prompt generator + class values (None = binary)."""

    model: PromptableModel
    generator: PromptGenerator
    classes: list[int] | None

    @staticmethod
    def load(path: str | Path, checkpoint: str | None = None, device: str = "auto") -> "AutoSam":
        """Load an AutoSAM checkpoint on the base weights it was trained on (its own record of them,
        or ``checkpoint``, which must hold those weights: a generator drives only the encoder it learnt)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"AutoSAM checkpoint not found: {path}")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            meta: dict[str, Any] = saved["autosam"]
        except Exception as exc:
            raise ModelError(f"{path} is not an AutoSAM checkpoint ({exc.__class__.__name__})") from None
        model = load_model(meta["base_model"], checkpoint=checkpoint or _trained_on(path, meta), device=device)
        if "base_sha256" in meta and model.checkpoint_sha256 != meta["base_sha256"]:
            where = meta.get("base_checkpoint") or f"the default {meta['base_model']} weights"
            raise ModelError(f"{path} was trained on {where}, not on {checkpoint or 'the default weights'}: "
                             f"predict with the weights it was trained on"
                             + (f" (--checkpoint {meta['base_checkpoint']})" if meta.get("base_checkpoint") else
                                " (leave --checkpoint out)"))
        classes = meta.get("classes")
        gen = PromptGenerator(model.net.mask_decoder.transformer_dim, int(meta["hidden"]),
                              len(classes or [1]), int(meta["tokens"]))
        gen.load_state_dict(saved["model"])
        return AutoSam(model, gen.to(model.device).eval(), classes)

    @torch.no_grad()
    def predict(self, image: MedicalImage | np.ndarray, slice: int | None = None) -> np.ndarray:
        """Label map ``(H, W)`` (uint8/uint16) of a 2D image or slice, without any prompt."""
        predictor = Predictor(self.model)
        predictor.set_image(image, slice=slice)
        (low_res, _), = decode(self.model.net, self.generator, predictor.get_image_embedding())
        masks = predictor.logits_to_masks(low_res[:, 0])
        values = self.classes or [1]
        out = np.zeros(masks.shape[1:], np.uint16 if max(values) > 255 else np.uint8)
        for value, mask in zip(values, masks):
            out[mask] = value
        return out


def check_2d(image: MedicalImage, slice: int | None) -> None:
    if image.is_volume and slice is None:
        raise InputError(f"a volume of {image.spatial_shape} (Z,Y,X) needs slice=K")


def _trained_on(path: Path, meta: dict[str, Any]) -> str | None:
    """The base checkpoint an AutoSAM file was trained on, where it recorded one (None: the default
    weights, or a file from before stop 71); a missing file is an error naming it."""
    base = meta.get("base_checkpoint")
    if base and not Path(base).is_file():
        raise ModelError(f"{path} was trained on the base weights {base}, which are not there now: "
                         "pass them with --checkpoint")
    return base
