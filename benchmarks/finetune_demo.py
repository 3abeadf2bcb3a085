"""Fine-tuning demonstration: box-prompted Dice on UNSEEN images before and after adaptation.

For each dataset the cases are split (by case, from --seed) into train / validation /
held-out test; ``medisam.train.finetune`` adapts LiteMedSAM on train (early stopping on
validation), then both the bundled model and the fine-tuned checkpoint (loaded through
``medisam.load_model(base, checkpoint=...)``, the path every command uses) segment every
object of the held-out test cases from its tight box, as ``medisam segment --box`` does.

    python benchmarks/finetune_demo.py --datasets drive,miccai_dp_nuclei --mode decoder \
        --time-limit 10 --out /tmp/medisam-finetune-demo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from medisam.bench.datasets import DatasetOptions, iter_cases
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.prompting import tight_box
from medisam.train.config import FinetuneConfig
from medisam.train.data import load_images, three_way_split
from medisam.train.trainer import finetune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Per-dataset training settings (objects per image differ by two orders of magnitude).
SETTINGS = {
    "drive": {"targets_per_image": 1, "batch_size": 1, "lr": 5e-4, "prompt": "box,box-jitter5",
              "epochs": 8, "patience": 4},
    "miccai_dp_nuclei": {"targets_per_image": 4, "batch_size": 1, "lr": 3e-4, "prompt": "box,box-jitter10",
                         "val_targets_per_image": 16, "epochs": 8, "patience": 4},
}


def box_dice(model_name: str, checkpoint: str | None, data: Path, test_ids: set[str], max_objects: int,
             chunk: int = 64) -> tuple[float, int, float]:
    """Mean Dice over every object of the test cases (tight box each), #objects, seconds."""
    model = load_model(model_name, checkpoint=checkpoint, device="cpu")
    predictor = Predictor(model)
    scores = []
    start = time.perf_counter()
    for case in iter_cases(data, DatasetOptions(min_area=4, max_targets=max_objects or None)):
        if case.case_id not in test_ids:
            continue
        if case.image.is_volume:
            raise SystemExit("volume datasets: evaluate slices with benchmarks (not in this demo)")
        predictor.set_image(case.image)
        targets = case.targets
        for s in range(0, len(targets), chunk):
            part = targets[s:s + chunk]
            pred = predictor.predict_batch([tight_box(t.mask) for t in part])
            scores += [dice(m, t.mask) for m, t in zip(pred.masks, part)]
    return float(np.mean(scores)), len(scores), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="drive,miccai_dp_nuclei")
    ap.add_argument("--data-root", type=Path, default=DATA)
    ap.add_argument("--mode", default="decoder")
    ap.add_argument("--model", default="litemedsam")
    ap.add_argument("--max-test-objects", type=int, default=0,
                    help="evaluate only the largest N objects per test image (0 = all)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="training minutes per dataset")
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--val", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medisam-finetune-demo"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in args.datasets.split(","):
        data = args.data_root / name
        settings = SETTINGS.get(name, {})
        cfg = FinetuneConfig(data=str(data), output=str(args.out / f"{name}-{args.mode}.pt"), model=args.model,
                             mode=args.mode, time_limit_min=args.time_limit,
                             val_fraction=args.val, holdout_fraction=args.holdout,
                             seed=args.seed, device="cpu", cache_dir=str(args.out / "embeddings"), **settings)
        ids = [i.case_id for i in load_images(data, cfg.max_slices, cfg.min_area)]
        train, val, test = three_way_split(ids, cfg.val_fraction, cfg.holdout_fraction, cfg.seed)
        t0 = time.perf_counter()
        result = finetune(cfg, force=True, progress=False)
        wall = time.perf_counter() - t0
        before, n, _ = box_dice(args.model, None, data, set(test), args.max_test_objects)
        after, _, _ = box_dice(args.model, cfg.output, data, set(test), args.max_test_objects)
        rows.append((name, len(train), len(val), len(test), n, before, after, result.epochs_run, result.stopped,
                     wall / 60, result.best_val_dice))
        print(f"[{name}] train {len(train)} / val {len(val)} / test {len(test)} cases; "
              f"{result.epochs_run} epochs ({result.stopped}) in {wall / 60:.1f} min; "
              f"test Dice {before:.4f} -> {after:.4f}", flush=True)
    print()
    print(f"Box-prompted Dice on held-out test cases, {args.model} bundled vs fine-tuned ({args.mode} mode, "
          f"seed {args.seed}, CPU threads {torch.get_num_threads()})")
    print("| dataset | train/val/test cases | test objects | Dice before | Dice after | gain | epochs (stop) "
          "| train min | best val Dice |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]}/{r[2]}/{r[3]} | {r[4]} | {r[5]:.4f} | {r[6]:.4f} | {r[6] - r[5]:+.4f} | "
              f"{r[7]} ({r[8]}) | {r[9]:.1f} | {r[10]:.4f} |")


if __name__ == "__main__":
    main()
