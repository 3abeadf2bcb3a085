"""SAMAug benchmark: a small MONAI UNet trained on the raw image vs on SAMAug inputs.

Both runs use the same case split, seed, epochs and augmentation; the only difference is
the input: 1 channel (grey) vs 3 channels (grey, SAM segmentation prior, SAM boundary
prior; ``medisam.train.samaug``). Dice is measured on held-out test cases at the UNet
resolution (--size, masks resized with nearest neighbour).

    python benchmarks/samaug_unet.py --data ../shared/data/busi_breast_us_mini --epochs 60
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from medisam.bench.datasets import iter_cases
from medisam.io import to_display
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.train.data import split_cases
from medisam.train.samaug import augmented_image, compute_priors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "busi_breast_us_mini"


def build_inputs(data: Path, size: int, scales: tuple[float, ...], iou: float, stab: float, cache: Path,
                 max_cases: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray, float]:
    """Per case: SAMAug image (size x size x 3 uint8) and binary mask; priors cached in ``cache``."""
    predictor = Predictor(load_model("litemedsam", device="cpu"))
    ids, xs, ys, n_masks = [], [], [], []
    start = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    for case in iter_cases(data, max_cases=max_cases):
        display = to_display(case.image.array, case.image.modality)
        f = cache / f"{case.case_id}-boxes{'-'.join(map(str, scales))}-{iou}-{stab}.npy"
        if f.is_file():
            aug = np.load(f)
        else:
            priors = compute_priors(predictor, display, pred_iou_thresh=iou, stability_thresh=stab, grid="boxes",
                                    box_scales=scales)
            n_masks.append(priors.n_masks)
            aug = augmented_image(display, priors)
            np.save(f, aug)
        ids.append(case.case_id)
        xs.append(cv2.resize(aug, (size, size), interpolation=cv2.INTER_AREA))
        ys.append(cv2.resize((case.labels.array > 0).astype(np.uint8), (size, size),
                             interpolation=cv2.INTER_NEAREST))
    if n_masks:
        print(f"SAMAug masks per image: mean {np.mean(n_masks):.1f}, min {min(n_masks)}", flush=True)
    return ids, np.stack(xs), np.stack(ys), time.perf_counter() - start


def train_eval(x_tr, y_tr, x_te, y_te, epochs: int, seed: int) -> float:
    """Train a MONAI UNet (Dice + CE) and return mean test Dice."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = UNet(spatial_dims=2, in_channels=x_tr.shape[1], out_channels=1, channels=(16, 32, 64, 128),
               strides=(2, 2, 2), num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = DiceCELoss(sigmoid=True)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for _ in range(epochs):
        net.train()
        for b in np.array_split(rng.permutation(len(xt)), max(1, len(xt) // 4)):
            x, y = xt[b], yt[b]
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(x_te)) > 0
    truth = torch.from_numpy(y_te) > 0.5
    inter = (pred & truth).flatten(1).sum(1).float()
    total = (pred.flatten(1).sum(1) + truth.flatten(1).sum(1)).float()
    return float(torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--box-scales", default="1.0,0.5", help="box grid scales (fraction of the image)")
    ap.add_argument("--pred-iou-thresh", type=float, default=0.8)
    ap.add_argument("--stability-thresh", type=float, default=0.7)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--max-cases", type=int, default=0, help="first N cases by id (0 = all)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/medisam-samaug-cache"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    scales = tuple(float(v) for v in args.box_scales.split(","))
    ids, aug, masks, prior_s = build_inputs(args.data, args.size, scales, args.pred_iou_thresh,
                                            args.stability_thresh, args.cache, args.max_cases or None)
    x_aug = aug.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    x_raw = x_aug[:, :1]
    y = masks[:, None].astype(np.float32)
    train_ids, test_ids = split_cases(ids, args.test_fraction, 0)
    tr = np.array([i in set(train_ids) for i in ids])
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        raw = train_eval(x_raw[tr], y[tr], x_raw[~tr], y[~tr], args.epochs, seed)
        t1 = time.perf_counter()
        sam = train_eval(x_aug[tr], y[tr], x_aug[~tr], y[~tr], args.epochs, seed)
        rows.append((seed, raw, sam, t1 - t0, time.perf_counter() - t1))
        print(f"seed {seed}: raw {raw:.4f}  samaug {sam:.4f}", flush=True)
    print()
    print(f"MONAI UNet on {args.data.name}: {tr.sum()} train / {(~tr).sum()} test cases, {args.size}px, "
          f"{args.epochs} epochs; SAMAug priors (LiteMedSAM, box grid scales {scales}) "
          f"took {prior_s:.0f} s for {len(ids)} images")
    print("| seed | Dice raw (1 ch) | Dice SAMAug (3 ch) | diff | train s raw | train s SAMAug |")
    print("|---|---|---|---|---|---|")
    for seed, raw, sam, a, b in rows:
        print(f"| {seed} | {raw:.4f} | {sam:.4f} | {sam - raw:+.4f} | {a:.0f} | {b:.0f} |")
    raw_m, sam_m = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    print(f"| mean | {raw_m:.4f} | {sam_m:.4f} | {sam_m - raw_m:+.4f} | | |")


if __name__ == "__main__":
    main()
