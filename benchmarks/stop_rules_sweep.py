"""Tune the slice-box stop rules offline: record unstopped runs once, replay any rules in numpy.

A run with stop rules is the unstopped run cut at the first slice a rule rejects (until
then both prompt every slice with the previous mask's box), so one unstopped propagation per
target (``--record``) lets any :class:`medisam.predict.stop_rules.StopRules` be scored
without the model (``--evaluate``). The prompt is the one of ``propagation_3d.py``'s
``slicebox`` variant: the target's tight 2D box on its 3D box's middle slice.

    python benchmarks/stop_rules_sweep.py --record runs/ --hippo-cases 103 --brats-cases 6 \
        --embeddings emb/ --threads 1
    python benchmarks/stop_rules_sweep.py --evaluate runs/

The final numbers come from ``propagation_3d.py --variants single,slicebox`` (same run as
the box3d reference); this script is the development loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from propagation_3d import (  # noqa: E402
    DiskBackedCache,
    brats_cases,
    dice,
    hippocampus_cases,
    middle_slice_box,
    tight_box3d,
)

from medisam.predict.stop_rules import SeedStopper, StopRules  # noqa: E402
from medisam.prompts import Box  # noqa: E402


def record(out: Path, hippo: int, brats: int, embeddings: Path | None, threads: int) -> None:
    import torch

    from medisam.models import load_model
    from medisam.predict import Predictor, PropagationConfig, VolumeSession
    from medisam.predict.volume import volume_to_display

    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("litemedsam", device="cpu", threads=threads or None)
    config = PropagationConfig(views=1, stop_rules=StopRules.off())
    for case in hippocampus_cases(hippo) + brats_cases(brats):
        path = out / f"{case.dataset}_{case.name}.npz"
        if path.exists():
            continue
        t0 = time.perf_counter()
        vol8 = np.rint(volume_to_display(case.image.array, case.image.modality)).astype(np.uint8)
        cache = DiskBackedCache(embeddings, max_bytes=(vol8.shape[0] + 4) * (4 << 20))
        predictor = Predictor(model, cache=cache)
        data = {}
        for target, gt in case.targets.items():
            if not gt.any():
                continue
            z, box = middle_slice_box(gt, tight_box3d(gt))
            session = VolumeSession(model, case.image.with_array(vol8), predictor=predictor, config=config)
            masks, scores = chain_of(session, z, box, gt.shape)
            data.update({f"{target}/gt": gt, f"{target}/masks": masks, f"{target}/scores": scores,
                         f"{target}/seed": np.array([z, *box])})
        np.savez_compressed(path, **data)
        print(f"# {path.name}: {time.perf_counter() - t0:.0f} s", flush=True)


def chain_of(session, z: int, box, shape: tuple[int, ...],  # noqa: ANN001 - a VolumeSession, a box
             slices: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Propagate ``box`` on slice ``z`` (within ``slices``) as object 1 of ``session``: its masks as a
    ``shape`` volume and each slice's predicted IoU (NaN where none)."""
    session.add_box(z, box, obj_id=1, slices=slices)
    session.propagate(progress=False)
    masks, scores = np.zeros(shape, bool), np.full(shape[0], np.nan, np.float32)
    for t, r in session.results(1).items():
        masks[t], scores[t] = r.mask, r.score
    return masks, scores


def replay(masks: np.ndarray, scores: np.ndarray, seed: np.ndarray, rules: StopRules,
           spacing: tuple[float, float, float] | None = None) -> np.ndarray:
    """The mask a run with ``rules`` keeps: each direction cut at its first rejected slice (``spacing``:
    the voxel spacing the live run tells the stopper, for the size rules; None: not told)."""
    z, box = int(seed[0]), Box(*(float(v) for v in seed[1:]))
    out = np.zeros_like(masks)
    out[z] = masks[z]
    for step in (1, -1):
        stopper = SeedStopper(masks[z], float(scores[z]), box, rules, spacing=spacing)
        prev, t = masks[z], z + step
        while 0 <= t < len(masks) and masks[t].any():
            if stopper.reason(masks[t], float(scores[t]), prev, abs(t - z)) is not None:
                break
            out[t], prev, t = masks[t], masks[t], t + step
    return out


def oracle(masks: np.ndarray, gt: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The best cut per direction (upper bound for any stop rule on this run)."""
    z = int(seed[0])
    out = np.zeros_like(masks)
    out[z] = masks[z]
    for step in (1, -1):
        best, best_t, t = -1.0, z, z + step
        ends = [z]
        while 0 <= t < len(masks) and masks[t].any():
            ends.append(t)
            t += step
        for end in ends:
            trial = out.copy()
            lo, hi = sorted((z, end))
            trial[lo:hi + 1] = masks[lo:hi + 1]
            d = dice(trial, gt)
            if d > best:
                best, best_t = d, end
        lo, hi = sorted((z, best_t))
        out[lo:hi + 1] = masks[lo:hi + 1]
    return out


def evaluate(folder: Path, grid: dict[str, StopRules]) -> None:
    runs = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as f:
            for target in sorted({k.split("/")[0] for k in f.files}):
                runs.append((path.stem.split("_")[0], target, f[f"{target}/gt"], f[f"{target}/masks"],
                             f[f"{target}/scores"], f[f"{target}/seed"]))
    keys = sorted({(d, t) for d, t, *_ in runs})
    print("| rules | " + " | ".join(f"{d} {t} (n={sum(1 for r in runs if r[:2] == (d, t))})" for d, t in keys) + " |")
    print("|---|" + "---|" * len(keys))
    res = {k: [] for k in keys}
    for d, t, gt, masks, scores, seed in runs:
        res[(d, t)].append(dice(oracle(masks, gt, seed), gt))
    print("| oracle cut | " + " | ".join(f"{np.mean(res[k]):.4f}" for k in keys) + " |", flush=True)
    for name, rules in grid.items():
        res = {k: [] for k in keys}
        for d, t, gt, masks, scores, seed in runs:
            res[(d, t)].append(dice(replay(masks, scores, seed, rules), gt))
        print(f"| {name} | " + " | ".join(f"{np.mean(res[k]):.4f}" for k in keys) + " |", flush=True)


def default_grid() -> dict[str, StopRules]:
    base = StopRules()
    grid = {"off": StopRules.off(), "default": base}
    for c in (0.4, 0.6):
        grid[f"cons{c}"] = replace(base, min_consecutive_dice=c)
    for g in (1.5, 2.5, 3.0):
        grid[f"growth{g}"] = replace(base, max_seed_growth=g)
    for g in (1.5, 2.5, 3.0):
        grid[f"regrowth{g}"] = replace(base, max_min_growth=g)
    for g in (1.25, 2.0):
        grid[f"boxgrowth{g}"] = replace(base, max_seed_box_growth=g)
    grid["collapse0.3"] = replace(base, min_seed_area_ratio=0.3)
    grid["drift1.5"] = replace(base, max_centroid_shift=1.5)
    grid["grace2"] = replace(base, grace=2)
    grid["grace3"] = replace(base, grace=3)
    grid["grace4"] = replace(base, grace=4)
    grid["grace5"] = replace(base, grace=5)
    grid["grace3+regrowth2.5"] = replace(base, grace=3, max_min_growth=2.5)
    grid["grace3+boxgrowth1.25"] = replace(base, grace=3, max_seed_box_growth=1.25)
    grid["grace3+regrowth1.5"] = replace(base, grace=3, max_min_growth=1.5)
    return grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", type=Path)
    ap.add_argument("--evaluate", type=Path)
    ap.add_argument("--hippo-cases", type=int, default=103)
    ap.add_argument("--brats-cases", type=int, default=6)
    ap.add_argument("--embeddings", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.record:
        record(args.record, args.hippo_cases, args.brats_cases, args.embeddings, args.threads)
    if args.evaluate:
        evaluate(args.evaluate, default_grid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
