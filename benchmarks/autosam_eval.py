"""AutoSAM vs box-prompted LiteMedSAM on held-out cases of one dataset.

AutoSAM (``medisam.train.autosam``) learns prompts for the frozen LiteMedSAM decoder from
the training cases and segments the test cases with no prompt at all; the reference is
the bundled LiteMedSAM given the tight ground-truth box of every object (an oracle prompt).

    python benchmarks/autosam_eval.py --data ../shared/data/drive --epochs 30 --time-limit 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from medisam.bench.datasets import iter_cases
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.prompting import tight_box
from medisam.train.autosam import AutoSam, train_autosam
from medisam.train.data import load_images, three_way_split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "drive"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--time-limit", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medisam-autosam"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/medisam-finetune-demo/embeddings"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    ids = [i.case_id for i in load_images(args.data)]
    _, _, test = three_way_split(ids, 0.15, args.holdout, args.seed)
    ckpt = args.out / f"{args.data.name}-autosam.pt"
    t0 = time.perf_counter()
    result = train_autosam(args.data, ckpt, epochs=args.epochs, time_limit_min=args.time_limit, lr=args.lr,
                           val_fraction=0.15, holdout_fraction=args.holdout, seed=args.seed,
                           cache_dir=str(args.cache), device="cpu", force=True, progress=False)
    train_min = (time.perf_counter() - t0) / 60
    auto = AutoSam.load(ckpt, device="cpu")
    predictor = Predictor(load_model("litemedsam", device="cpu"))
    box_scores, auto_scores = [], []
    for case in iter_cases(args.data):
        if case.case_id not in set(test):
            continue
        predicted = auto.predict(case.image) > 0
        truth = case.labels.array > 0
        auto_scores.append(dice(predicted, truth))
        predictor.set_image(case.image)
        boxes = [tight_box(t.mask) for t in case.targets]
        masks = predictor.predict_batch(boxes).masks
        box_scores.append(dice(masks.any(axis=0), truth))
    print(f"{args.data.name}: {len(test)} held-out test cases; AutoSAM trained {result.epochs_run} epochs in "
          f"{train_min:.1f} min (best val Dice {result.best_val_dice:.4f})")
    print("| method | prompt at test time | mean Dice (foreground, per case) |")
    print("|---|---|---|")
    print(f"| LiteMedSAM (bundled) | tight ground-truth box per object | {np.mean(box_scores):.4f} |")
    print(f"| AutoSAM (learned prompts, frozen LiteMedSAM decoder) | none | {np.mean(auto_scores):.4f} |")


if __name__ == "__main__":
    main()
