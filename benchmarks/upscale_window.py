"""Masks upscaled only in the box's window against the whole grid: time and agreement on every 2D set.

Every target of every 2D dataset in ``../shared/data`` (its tight box, the default path:
``load_model("litemedsam")`` = ``auto``), prompted twice on the same embedding, in one process:
with the window (the default since stop 44, :mod:`medisam.models.upscale_window`) and with
``MEDISAM_UPSCALE_WINDOW=0`` (the whole grid, the path before), the order alternating per
target. Per dataset: targets, how many windowed masks differ from the whole grid's and by how
many pixels, the Dice of each against the truth, how often a mask reached the window's edge
(the whole grid upscaled instead), the window's mean share of the grid, and the median
``Predictor.predict(box)`` time of each path (prompt to mask on a cached embedding).

    python benchmarks/upscale_window.py                       # every 2D set (~8 min on 2 cores)
    python benchmarks/upscale_window.py --sets kvasir_seg --max-cases 20
    python benchmarks/upscale_window.py --clicks 5            # the box-clicks5 strategy both ways

With ``--clicks N`` each target runs the bench's ``box-clicksN`` strategy (the tight box, then
N correction clicks, each with the previous prediction's low-res logits as the mask prompt)
twice: as the bench runs it, inside ``exact_logits()`` (the whole grid), and with the window's
logits fed back (the fill value outside the window, not the model's logits). The table gives
the Dice of both at each step and the final masks that differ: why the strategy asks for exact logits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS_2D = ("busi_breast_us_mini", "chaos_liver_ct_slices_mini", "ddti_thyroid_us", "drive", "hc18_fetal_head_us",
           "kvasir_seg", "miccai_dp_nuclei", "msd_task09_spleen_ct_slices_mini", "ph2_dermoscopy",
           "sammed2d_demo_ct_mr", "shenzhen_cxr_lung")


def timed_predict(predictor, box, window: bool):  # noqa: ANN001, ANN201 - Predictor -> (Prediction, s)
    os.environ["MEDISAM_UPSCALE_WINDOW"] = "1" if window else "0"
    t0 = time.perf_counter()
    pred = predictor.predict(box=box)
    return pred, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS_2D), help="comma list of 2D datasets under ../shared/data")
    ap.add_argument("--max-cases", type=int, default=None, help="first N cases of each set (default: all)")
    ap.add_argument("--clicks", type=int, default=0, help="run the box-clicksN strategy both ways instead")
    args = ap.parse_args(argv)
    if args.clicks:
        return clicks_table(args)

    from medisam.bench.datasets import iter_cases
    from medisam.metrics_basic import dice
    from medisam.models import load_model
    from medisam.models.upscale_window import FILL_LOGIT
    from medisam.predict import Predictor
    from medisam.prompting.sampling import tight_box

    model = load_model("litemedsam")
    print(f"# default path: backend {model.backend} {getattr(model, 'precision', 'fp32')}", flush=True)
    predictor = Predictor(model)
    header = ("set", "targets", "masks that differ", "pixels that differ", "Dice window", "Dice whole grid",
              "whole grid upscaled (edge reached)", "window share of grid", "ms window", "ms whole grid", "ratio")
    rows, every = [], {"n": 0, "differ": 0, "pix": 0, "fallback": 0, "share": [], "tw": [], "tf": [],
                       "dw": [], "df": []}
    for name in args.sets.split(","):
        folder = DATA / name
        if not folder.is_dir():
            print(f"skip {name}: not under {DATA}", file=sys.stderr)
            continue
        s = {"n": 0, "differ": 0, "pix": 0, "fallback": 0, "share": [], "tw": [], "tf": [], "dw": [], "df": []}
        for case in iter_cases(folder, max_cases=args.max_cases):
            predictor.set_image(case.image)
            for target in case.targets:
                truth = target.mask if target.mask.ndim == 2 else target.mask[0]
                box = tight_box(truth)
                first = s["n"] % 2 == 0  # alternate which path runs first
                a, ta = timed_predict(predictor, box, window=first)
                b, tb = timed_predict(predictor, box, window=not first)
                (win, tw), (whole, tf) = ((a, ta), (b, tb)) if first else ((b, tb), (a, ta))
                differ = int((win.masks[0] != whole.masks[0]).sum())
                filled = float((win.low_res_logits[0] == FILL_LOGIT).mean())
                s["n"] += 1
                s["differ"] += differ > 0
                s["pix"] += differ
                s["fallback"] += filled == 0.0
                s["share"].append(1.0 - filled)
                s["tw"].append(tw)
                s["tf"].append(tf)
                s["dw"].append(dice(win.masks[0], truth))
                s["df"].append(dice(whole.masks[0], truth))
        os.environ.pop("MEDISAM_UPSCALE_WINDOW", None)
        if not s["n"]:
            continue
        rows.append(_row(name, s))
        print(" | ".join(rows[-1]), flush=True)
        for k in ("n", "differ", "pix", "fallback"):
            every[k] += s[k]
        for k in ("share", "tw", "tf", "dw", "df"):
            every[k] += s[k]
    if not rows:
        print(f"no 2D data under {DATA}", file=sys.stderr)
        return 1
    rows.append(_row("**all**", every))
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nOne process, the same embeddings; the two paths alternate per target; {os.cpu_count()} CPUs. "
          "'ms': median Predictor.predict(box) (prompt to mask on a cached embedding).")
    return 0


def clicks_table(args: argparse.Namespace) -> int:
    """``box-clicksN`` on every target, with exact logits (as the bench runs it) and with the
    window's logits fed back: Dice per step, final masks that differ."""
    from contextlib import nullcontext

    import medisam.models.upscale_window as upscale_window
    from medisam.bench.datasets import iter_cases
    from medisam.metrics_basic import dice
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.prompting.strategies import ClicksStrategy

    model = load_model("litemedsam")
    print(f"# default path: backend {model.backend} {getattr(model, 'precision', 'fp32')}; box-clicks{args.clicks}",
          flush=True)
    predictor, strategy = Predictor(model), ClicksStrategy(args.clicks, start="box")
    steps = args.clicks + 1
    print("| set | targets | final masks that differ | Dice per step, window's logits fed back | "
          "Dice per step, exact logits (the bench) |")
    print("| --- | --- | --- | --- | --- |")
    total = {"n": 0, "differ": 0, "w": np.zeros(steps), "f": np.zeros(steps)}
    for name in args.sets.split(","):
        folder = DATA / name
        if not folder.is_dir():
            continue
        n, differ, dw, df = 0, 0, np.zeros(steps), np.zeros(steps)
        for case in iter_cases(folder, max_cases=args.max_cases):
            predictor.set_image(case.image)
            for target in case.targets:
                truth = target.mask if target.mask.ndim == 2 else target.mask[0]
                runs = {False: strategy.run(predictor, truth, np.random.default_rng(0))}
                exact, upscale_window.exact_logits = upscale_window.exact_logits, nullcontext
                try:  # the window's logits (the fill value outside it) go back as the mask prompt
                    runs[True] = strategy.run(predictor, truth, np.random.default_rng(0))
                finally:
                    upscale_window.exact_logits = exact
                n += 1
                differ += not np.array_equal(runs[True][-1].mask, runs[False][-1].mask)
                dw += [dice(o.mask, truth) for o in runs[True]]
                df += [dice(o.mask, truth) for o in runs[False]]
        if n:
            print(f"| {name} | {n} | {differ} | {' '.join(f'{v:.4f}' for v in dw / n)} | "
                  f"{' '.join(f'{v:.4f}' for v in df / n)} |", flush=True)
            total["n"] += n
            total["differ"] += differ
            total["w"] += dw
            total["f"] += df
    if total["n"]:
        print(f"| **all** | {total['n']} | {total['differ']} | {' '.join(f'{v:.4f}' for v in total['w'] / total['n'])} "
              f"| {' '.join(f'{v:.4f}' for v in total['f'] / total['n'])} |")
    return 0


def _row(name: str, s: dict) -> tuple[str, ...]:
    tw, tf = 1000 * float(np.median(s["tw"])), 1000 * float(np.median(s["tf"]))
    return (name, str(s["n"]), str(s["differ"]), str(s["pix"]), f"{np.mean(s['dw']):.4f}", f"{np.mean(s['df']):.4f}",
            str(s["fallback"]), f"{np.mean(s['share']):.3f}", f"{tw:.1f}", f"{tf:.1f}", f"{tw / tf:.2f}")


if __name__ == "__main__":
    sys.exit(main())
