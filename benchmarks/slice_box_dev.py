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

Stop 73 (``StopRules.size_grace``, the grace bounded by the object's size in mm): ``--record-chain``
stores the live default chain without stop rules (clipped to the user's box grown by a tenth) in a
window of the true range +-``--window``, with the voxel spacing, optionally on volumes thinned to
every ``--step``-th slice (thick slices from the 1 mm sets), and lung1 as ``medisam propagate`` sees
it (``--cases lung1``: the CT window of the prompt box); ``--evaluate-size`` replays size rules on it:

    python benchmarks/slice_box_dev.py --record-chain RUNS5 --cases all --step 5 --embeddings EMB
    python benchmarks/slice_box_dev.py --evaluate-size RUNS5
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
from stop_rules_sweep import chain_of, replay  # noqa: E402

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
            chain, scores = chain_of(s, z, box, gt.shape, slices=(lo, hi))
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


def lung_case(names: set[str] | None):  # noqa: ANN201 - a propagation_3d Case, or None
    """pyradiomics lung1 (HU, 5 mm slices) with its nodule, when present and asked for."""
    from propagation_3d import DATA, Case

    from medisam.io import read_image

    root = DATA / "pyradiomics_lung_ct"
    if (names is not None and "lung1" not in names) or not (root / "imagesTr" / "lung1_0000.nii.gz").is_file():
        return None
    labels = read_image(root / "labelsTr" / "lung1.nii.gz").array
    return Case("lung", "lung1", read_image(root / "imagesTr" / "lung1_0000.nii.gz"), {"nodule": labels > 0})


def _chain_image(case, step: int):  # noqa: ANN001, ANN202 - a Case; (image, window, targets)
    """The image the chain sees (display uint8 as propagation_3d.py; lung1 in HU with the CLI's box
    window), every ``step``-th slice kept (spacing along k times ``step``), and its targets."""
    from medisam.io.medical_image import MedicalImage
    from medisam.predict.volume import volume_to_display

    targets = {t: m[::step] for t, m in case.targets.items() if m[::step].any()}
    if case.dataset == "lung":
        return case.image.with_array(case.image.array[::step]), "box", targets
    vol8 = np.rint(volume_to_display(case.image.array, case.image.modality)).astype(np.uint8)[::step]
    sx, sy, sz = case.image.spacing
    return MedicalImage.from_array(vol8, spacing=(sx, sy, sz * step), is_rgb=False), None, targets


def record_chain(out: Path, names: set[str] | None, embeddings: Path | None, step: int, window: int,
                 live: bool = False) -> None:
    """Per target: the live default chain without stop rules (``live``: with the default rules, to
    check the replay) within the true range +-``window``."""
    import torch

    from medisam.cli.common import box_region, box_window
    from medisam.models import load_model
    from medisam.predict import Predictor, PropagationConfig, VolumeSession

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("litemedsam", device="cpu", threads=1)
    lung = lung_case(names) if step == 1 else None
    for case in hippocampus_cases(103, keep=names) + brats_cases(4, keep=names) + ([lung] if lung else []):
        path = out / f"{case.dataset}_{case.name}.npz"
        if path.exists():
            continue
        image, win, targets = _chain_image(case, step)
        depth = image.array.shape[0]
        sub = None if embeddings is None else embeddings / f"step{step}"
        if sub is not None:
            sub.mkdir(parents=True, exist_ok=True)
        predictor = Predictor(model, cache=DiskBackedCache(sub, max_bytes=(depth + 4) * (4 << 20)))
        free = PropagationConfig(views=1, stop_rules=StopRules() if live else StopRules.off())
        data = {"spacing": np.array([image.spacing_zyx[0], image.spacing_zyx[2], image.spacing_zyx[1]])}
        for target, gt in targets.items():
            b3 = tight_box3d(gt)
            z, box = middle_slice_box(gt, b3)
            lo, hi = max(0, b3[2] - window), min(depth - 1, b3[5] + window)
            w = box_window(image.array, image.modality, box_region([box], (z,))) if win == "box" else None
            s = VolumeSession(model, image, window=w, predictor=predictor, config=free)
            masks, scores = chain_of(s, z, box, gt.shape, slices=(lo, hi))
            data.update({f"{target}/gt": gt, f"{target}/chain": masks, f"{target}/chain_scores": scores,
                         f"{target}/seed": np.array([z, *box])})
        np.savez_compressed(path, **data)
        print(f"# {path.name}", flush=True)


SIZE_GRID = {
    "grace 5 (before)": StopRules(size_grace=float("inf")),
    **{f"size_grace {g:g}, thin score {r:g}": StopRules(size_grace=g, thin_min_seed_score_ratio=r)
       for g in (0.5, 1.0) for r in (0.0, 0.7, 0.8, 0.9)},
}


def evaluate_size(folder: Path, live: Path | None = None) -> None:
    """Mean Dice per set and target of the recorded chains under each rule of :data:`SIZE_GRID`
    (``live``: a ``--live`` recording to check the default's replay against, target by target)."""
    rows: dict[str, dict[str, list[float]]] = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as f:
            spacing = tuple(float(v) for v in f["spacing"])
            for target in sorted({k.split("/")[0] for k in f.files if "/" in k}):
                g = {k.split("/")[1]: f[k] for k in f.files if k.startswith(target + "/")}
                res = rows.setdefault(f"{path.stem.split('_')[0]} {target}", {})
                for name, rules in SIZE_GRID.items():
                    cut = replay(g["chain"], g["chain_scores"], g["seed"], rules, spacing)
                    res.setdefault(name, []).append(dice(cut, g["gt"]))
                if live is not None and (live / path.name).exists():
                    cut = replay(g["chain"], g["chain_scores"], g["seed"], StopRules(), spacing)
                    with np.load(live / path.name) as f2:
                        print(f"{path.stem} {target}: replayed {dice(cut, g['gt']):.4f}, "
                              f"live {dice(f2[target + '/chain'], g['gt']):.4f}")
    keys = sorted(rows)
    print("| rules | " + " | ".join(f"{k} (n={len(rows[k]['grace 5 (before)'])})" for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name in SIZE_GRID:
        print(f"| {name} | " + " | ".join(f"{np.mean(rows[k][name]):.3f}" for k in keys) + " |")
    changed = {k: sum(a != b for a, b in zip(rows[k][name], rows[k]["grace 5 (before)"]))
               for k in keys for name in SIZE_GRID}
    print(f"targets changed by any rule: {sum(changed.values())}")


def bounded_targets() -> None:
    """Per set (at its own spacing), how many targets' default stop rules the size bound changes
    (the benchmark's prompt: the tight box on the middle slice); the others run as before."""
    from propagation_3d import msd_cases

    from medisam.predict.stop_rules import size_bounded

    lung = lung_case(None)
    sets = {"hippocampus": hippocampus_cases(103), "brats-flair": brats_cases(4), "lung": [lung] if lung else [],
            "dcmqi": msd_cases("dcmqi_ct3slice_seg", "dcmqi", 9,
                               lambda labels: {f"label{v}": labels == v for v in np.unique(labels) if v})}
    rules = StopRules()
    for name, cases in sets.items():
        n = changed = 0
        for case in cases:
            sz, sy, sx = case.image.spacing_zyx
            for gt in (m for m in case.targets.values() if m.any()):
                _, (x0, y0, x1, y1) = middle_slice_box(gt, tight_box3d(gt))
                n += 1
                changed += size_bounded(rules, (y1 - y0, x1 - x0), (sz, sx, sy)) != rules
        print(f"{name}: {changed} of {n} targets with the grace bounded by their size")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", type=Path)
    ap.add_argument("--cases", default="", help="comma list of case names to record")
    ap.add_argument("--evaluate", type=Path)
    ap.add_argument("--embeddings", type=Path)
    ap.add_argument("--record-chain", type=Path, help="stop 73: record the default chain without stop rules")
    ap.add_argument("--step", type=int, default=1, help="--record-chain: keep every STEP-th slice")
    ap.add_argument("--window", type=int, default=8, help="--record-chain: slices past the true range")
    ap.add_argument("--evaluate-size", type=Path, help="stop 73: replay the size rules on --record-chain runs")
    ap.add_argument("--live", action="store_true", help="--record-chain with the default stop rules")
    ap.add_argument("--compare-live", type=Path, help="--evaluate-size: the --live recording to compare")
    ap.add_argument("--bounded", action="store_true", help="stop 73: count the targets the size bound changes")
    args = ap.parse_args(argv)
    if args.bounded:
        bounded_targets()
    if args.record_chain:
        names = None if args.cases == "all" else set(args.cases.split(","))
        record_chain(args.record_chain, names, args.embeddings, args.step, args.window, args.live)
    if args.evaluate_size:
        evaluate_size(args.evaluate_size, args.compare_live)
    if args.record:
        record(args.record, set(args.cases.split(",")), args.embeddings)
    if args.evaluate:
        evaluate(args.evaluate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
