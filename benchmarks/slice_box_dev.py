"""Choose the slice-box rules offline: record each target's runs once, replay any stop rules in numpy.

For each target (prompt of ``propagation_3d.py``'s slice-box variants: the tight 2D box on
its 3D box's middle slice) ``--record`` stores, in a window of the true slice range +-3:
the ``--box3d`` single-axis result (the reference), the unstopped unclipped chain (the
default before issue 19 item 1 is that chain cut by the stop rules) and the unstopped chain
clipped to the user's box (grown by 0 or 4 px). Clipped runs are stored from the 3D-box
engine with the box as extent, which re-prompts a lost slice with the box; a clipped chain
with stop rules is that run cut at its first rejected slice (checked equal to the live run on
hippocampus_011, both labels), so ``--evaluate`` scores any :class:`StopRules` without the model.

    python benchmarks/slice_box_dev.py --record RUNS --cases hippocampus_004,... --embeddings EMB
    python benchmarks/slice_box_dev.py --evaluate RUNS

The final numbers come from ``propagation_3d.py --variants single,slicebox-default,slicebox-noclip``.
"""

from __future__ import annotations

import argparse
import sys
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
from stop_rules_sweep import replay  # noqa: E402

from medisam.predict.stop_rules import StopRules  # noqa: E402
from medisam.prompts import Box  # noqa: E402

MARGINS = (0.0, 0.1)  # growth of the user's box on each side for the clip, as a fraction of its side


def record(out: Path, names: set[str], embeddings: Path | None, window: int = 3) -> None:
    import torch

    from medisam.models import load_model
    from medisam.predict import Predictor, PropagationConfig, VolumeSession
    from medisam.predict.axis_runs import run_iter
    from medisam.predict.slice_box import SliceBoxRules, clip_box
    from medisam.predict.volume import volume_to_display

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("litemedsam", device="cpu", threads=1)
    for case in hippocampus_cases(103, keep=names) + brats_cases(4, keep=names):
        path = out / f"{case.dataset}_{case.name}.npz"
        if path.exists():
            continue
        vol8 = np.rint(volume_to_display(case.image.array, case.image.modality)).astype(np.uint8)
        image8 = case.image.with_array(vol8)
        predictor = Predictor(model, cache=DiskBackedCache(embeddings, max_bytes=(vol8.shape[0] + 4) * (4 << 20)))
        depth, h, w = vol8.shape
        data = {}
        for target, gt in case.targets.items():
            if not gt.any():
                continue
            b3 = tight_box3d(gt)
            z, box = middle_slice_box(gt, b3)
            lo, hi = max(0, b3[2] - window), min(depth - 1, b3[5] + window)
            s = VolumeSession(model, image8, predictor=predictor, config=PropagationConfig(views=1))
            s.add_box3d(b3)
            s.propagate(progress=False)
            single = np.zeros(gt.shape, bool)
            for t, r in s.results(1).items():
                single[t] |= r.mask
            free = PropagationConfig(views=1, stop_rules=StopRules.off(), slice_box=SliceBoxRules(clip=False))
            s = VolumeSession(model, image8, predictor=predictor, config=free)
            s.add_box(z, box, slices=(lo, hi))
            s.propagate(progress=False)
            chain, scores = np.zeros(gt.shape, bool), np.full(depth, np.nan, np.float32)
            for t, r in s.results(1).items():
                chain[t], scores[t] = r.mask, r.score
            data.update({f"{target}/gt": gt, f"{target}/single": single, f"{target}/chain": chain,
                         f"{target}/chain_scores": scores, f"{target}/seed": np.array([z, *box]),
                         f"{target}/window": np.array([lo, hi]), f"{target}/box3d": np.array(b3)})
            for m in MARGINS:
                extent = clip_box(Box(*map(float, box)), (h, w), SliceBoxRules(clip_margin=m))
                s = VolumeSession(model, image8, predictor=predictor, config=PropagationConfig(views=1))
                seed = s.add_box(z, box)
                masks, scores = np.zeros(gt.shape, bool), np.full(depth, np.nan, np.float32)
                masks[z], scores[z] = seed.mask, seed.score
                for step, end in ((1, hi), (-1, lo)):
                    for r in run_iter(s, 1, z, step, end, extent=extent):
                        masks[r.slice], scores[r.slice] = r.mask, r.score
                data[f"{target}/second{m}"], data[f"{target}/second{m}_scores"] = masks, scores
        np.savez_compressed(path, **data)
        print(f"# {path.name}", flush=True)


def evaluate(folder: Path) -> None:
    base = StopRules()
    grid = {f"clip{m} grace5 regrowth{rg} after{ra}": (m, replace(base, grace=5, max_min_growth=rg, regrowth_after=ra))
            for m in MARGINS for rg in (1.5, 2.0, float("inf")) for ra in (1.0, 0.7, 0.5)
            if ra == 1.0 or rg != float("inf")}  # regrowth_after means nothing without regrowth
    rows: dict[str, dict[str, list[float]]] = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as f:
            for target in sorted({k.split("/")[0] for k in f.files}):
                g = {k.split("/")[1]: f[k] for k in f.files if k.startswith(target + "/")}
                res = rows.setdefault(f"{path.stem.split('_')[0]} {target}", {})
                res.setdefault("box3d single", []).append(dice(g["single"], g["gt"]))
                old = replace(base, grace=3)  # the default before item 1: unclipped, grace 3
                res.setdefault("unclipped chain, grace 3 (before)", []).append(
                    dice(replay(g["chain"], g["chain_scores"], g["seed"], old), g["gt"]))
                for name, (m, rules) in grid.items():
                    res.setdefault(name, []).append(
                        dice(replay(g[f"second{m}"], g[f"second{m}_scores"], g["seed"], rules), g["gt"]))
    keys = sorted(rows)
    print("| rules | " + " | ".join(f"{k} (n={len(rows[k]['box3d single'])})" for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name in rows[keys[0]]:
        print(f"| {name} | " + " | ".join(f"{np.mean(rows[k][name]):.3f}" for k in keys) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", type=Path)
    ap.add_argument("--cases", default="", help="comma list of case names to record")
    ap.add_argument("--evaluate", type=Path)
    ap.add_argument("--embeddings", type=Path)
    args = ap.parse_args(argv)
    if args.record:
        record(args.record, set(args.cases.split(",")), args.embeddings)
    if args.evaluate:
        evaluate(args.evaluate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
