"""Fine-tuning demonstration: box-prompted Dice on UNSEEN images before and after adaptation.

For each dataset the cases are split (by case, from --seed) into train / validation /
held-out test; ``medisam.train.finetune`` adapts LiteMedSAM on train in ``--mode``
(decoder, adapter, lora or full; early stopping on validation, learning rate annealed
over the time budget), then both the bundled model and the fine-tuned checkpoint (loaded
through ``medisam.load_model(base, checkpoint=...)``, the path every command uses) segment
every object of the held-out test cases from its tight box, as ``medisam segment --box``
does. Volumes (hippocampus) are evaluated on up to ``--test-slices`` labelled slices per
test case, one box per label per slice (the 2D key-slice protocol of the benchmark).
The test cases are never read by training, validation or early stopping.

    python benchmarks/finetune_demo.py --datasets drive --mode adapter --time-limit 8
    python benchmarks/finetune_demo.py --datasets msd_task04_hippocampus --mode decoder --time-limit 10
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.predict.cache import embedding_key
from medisam.prompting import tight_box
from medisam.train.config import MODES, FinetuneConfig
from medisam.train.data import TrainImage, load_images, three_way_split
from medisam.train.distributed import DistInfo
from medisam.train.trainer import finetune, prepare_inputs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Per-dataset training settings (objects per image differ by two orders of magnitude).
#: ``epochs`` is an upper bound: the time limit usually ends the run, and the cosine
#: schedule anneals over whichever budget runs out first.
SETTINGS = {
    "drive": {"targets_per_image": 1, "batch_size": 1, "lr": 5e-4, "prompt": "box,box-jitter5",
              "epochs": 8, "patience": 4},
    "miccai_dp_nuclei": {"targets_per_image": 4, "batch_size": 1, "lr": 3e-4, "prompt": "box,box-jitter10",
                         "val_targets_per_image": 16, "epochs": 8, "patience": 4},
    # 103 small MR volumes: 4 labelled slices per training volume, both labels per slice
    "msd_task04_hippocampus": {"targets_per_image": 2, "batch_size": 4, "lr": 5e-4, "prompt": "box,box-jitter5",
                               "val_targets_per_image": 2, "max_slices": 4, "epochs": 30, "patience": 6},
}

#: Per-mode changes on top of the dataset settings. Encoder modes (adapter, lora, full)
#: run the encoder forward and backward every step, so they see far fewer epochs on a CPU
#: in the same time; adapters/LoRA also train the mask decoder (as Medical SAM Adapter);
#: all three use MedSAM's smaller learning rate (1e-4): at the decoder-only rate (5e-4)
#: adapter and LoRA runs collapsed to validation Dice 0 after the first epoch on DRIVE.
MODE_SETTINGS = {
    "decoder": {},
    "adapter": {"lr": 1e-4, "train_decoder": True, "epochs": 20, "patience": 5},
    "lora": {"lr": 1e-4, "train_decoder": True, "epochs": 20, "patience": 5},
    "full": {"lr": 1e-4, "epochs": 20, "patience": 5},
}


def test_images(data: Path, test_ids: list[str], max_slices: int, min_area: int) -> list[TrainImage]:
    """The held-out test cases as 2D images (volumes: up to ``max_slices`` labelled slices each)."""
    return load_images(data, max_slices=max_slices, min_area=min_area, case_ids=test_ids)


def box_dice(model_name: str, checkpoints: list[str | None], images: list[TrainImage], max_objects: int,
             share_encoder: bool = False, chunk: int = 64) -> tuple[list[float], int, float]:
    """Mean Dice per checkpoint over the objects of ``images`` (tight box each), #objects, seconds.

    ``None`` is the bundled model. ``max_objects`` > 0 keeps only the largest objects per
    image. ``share_encoder`` (decoder mode: the fine-tuned encoder is bit-identical to the
    base one) encodes each image once with the first model and decodes it with every model.
    """
    models = [load_model(model_name, checkpoint=c, device="cpu") for c in checkpoints]
    predictors = [Predictor(m) for m in models]
    if share_encoder:
        first = models[0].net.image_encoder.state_dict()
        for m in models[1:]:
            assert all(torch.equal(v, first[k]) for k, v in m.net.image_encoder.state_dict().items())
    scores: list[list[float]] = [[] for _ in models]
    start = time.perf_counter()
    for img in images:
        masks = [img.targets == v for v in img.values]
        if max_objects:
            masks = sorted(masks, key=lambda m: -int(m.sum()))[:max_objects]
        predictors[0].set_display_image(img.display)
        shared = predictors[0].cache.get(embedding_key(img.display, models[0].cache_signature))
        for j, predictor in enumerate(predictors):
            if j and share_encoder:  # hand the base embedding to the fine-tuned predictor's cache
                predictor.cache.put(embedding_key(img.display, models[j].cache_signature), shared)
            predictor.set_display_image(img.display)
            for s in range(0, len(masks), chunk):
                part = masks[s:s + chunk]
                pred = predictor.predict_batch([tight_box(m) for m in part])
                scores[j] += [dice(p, m) for p, m in zip(pred.masks, part)]
    return [float(np.mean(x)) for x in scores], len(scores[0]), time.perf_counter() - start


def precompute_embeddings(cfg: FinetuneConfig, case_ids: list[str]) -> float:
    """Decoder mode: encode the train + validation images into the on-disk cache the trainer
    reads (one-off; reruns reuse it), so the training time limit is spent training. Seconds."""
    start = time.perf_counter()
    model = load_model(cfg.model, checkpoint=cfg.checkpoint, device="cpu")
    images = load_images(cfg.data, cfg.max_slices, cfg.min_area, window=cfg.window, targets=cfg.targets,
                         case_ids=case_ids)
    prepare_inputs(model, images, True, Path(cfg.cache_dir), DistInfo(), progress=False)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="drive,miccai_dp_nuclei")
    ap.add_argument("--data-root", type=Path, default=DATA)
    ap.add_argument("--mode", default="decoder", choices=MODES)
    ap.add_argument("--model", default="litemedsam")
    ap.add_argument("--max-test-objects", type=int, default=0,
                    help="evaluate only the largest N objects per test image (0 = all)")
    ap.add_argument("--test-slices", type=int, default=4, help="labelled slices per test volume (0 = all)")
    ap.add_argument("--time-limit", type=float, default=10.0,
                    help="training minutes per dataset (decoder mode: after the one-off embedding pass)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epoch cap")
    ap.add_argument("--lr", type=float, default=None, help="override the learning rate")
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--val", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medisam-finetune-demo"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets.split(","):
        data = args.data_root / name
        settings = {**SETTINGS.get(name, {}), **MODE_SETTINGS[args.mode]}
        settings.update({k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None})
        cfg = FinetuneConfig(data=str(data), output=str(args.out / f"{name}-{args.mode}.pt"), model=args.model,
                             mode=args.mode, time_limit_min=args.time_limit,
                             val_fraction=args.val, holdout_fraction=args.holdout,
                             seed=args.seed, device="cpu", cache_dir=str(args.out / "embeddings"), **settings)
        ids = sorted({i.case_id for i in load_images(data, cfg.max_slices, cfg.min_area)})  # as the trainer
        train, val, test = three_way_split(ids, cfg.val_fraction, cfg.holdout_fraction, cfg.seed)
        embed = precompute_embeddings(cfg, train + val) if args.mode == "decoder" else 0.0
        t0 = time.perf_counter()
        result = finetune(cfg, force=True, progress=False)
        wall = time.perf_counter() - t0
        images = test_images(data, test, args.test_slices, cfg.min_area)
        (before, after), n, t_eval = box_dice(args.model, [None, cfg.output], images, args.max_test_objects,
                                              share_encoder=(args.mode == "decoder"))
        rows.append((name, len(train), len(val), len(test), len(images), n, before, after, result.epochs_run,
                     result.stopped, wall / 60, result.best_val_dice, embed / 60))
        print(f"[{name}] {args.mode}: train {len(train)} / val {len(val)} / test {len(test)} cases; "
              f"embeddings {embed / 60:.1f} min; {result.epochs_run} epochs ({result.stopped}) in "
              f"{wall / 60:.1f} min; test Dice {before:.4f} -> {after:.4f} ({n} objects on {len(images)} "
              f"images; eval {t_eval:.0f} s); history {result.history}", flush=True)
    print()
    print(f"Box-prompted Dice on held-out test cases, {args.model} bundled vs fine-tuned ({args.mode} mode, "
          f"seed {args.seed}, CPU threads {torch.get_num_threads()})")
    print("| dataset | mode | train/val/test cases | test images | test objects | Dice before | Dice after | gain "
          "| epochs (stop) | embed min | train min | best val Dice |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        val = "n/a" if r[11] is None else f"{r[11]:.4f}"
        print(f"| {r[0]} | {args.mode} | {r[1]}/{r[2]}/{r[3]} | {r[4]} | {r[5]} | {r[6]:.4f} | {r[7]:.4f} | "
              f"{r[7] - r[6]:+.4f} | {r[8]} ({r[9]}) | {r[12]:.1f} | {r[10]:.1f} | {val} |")


if __name__ == "__main__":
    main()
