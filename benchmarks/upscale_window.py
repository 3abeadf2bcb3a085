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


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def timed_predict(predictor, box, window: bool):  # noqa: ANN001, ANN201 - Predictor -> (Prediction, s)
    os.environ["MEDISAM_UPSCALE_WINDOW"] = "1" if window else "0"
    t0 = time.perf_counter()
    pred = predictor.predict(box=box)
    return pred, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS_2D), help="comma list of 2D datasets under ../shared/data")
    ap.add_argument("--max-cases", type=int, default=None, help="first N cases of each set (default: all)")
    args = ap.parse_args(argv)

    from medisam.bench.datasets import iter_cases
    from medisam.metrics_basic import dice
    from medisam.models import load_model
    from medisam.models.upscale_window import FILL_LOGIT
    from medisam.predict import Predictor

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


def _row(name: str, s: dict) -> tuple[str, ...]:
    tw, tf = 1000 * float(np.median(s["tw"])), 1000 * float(np.median(s["tf"]))
    return (name, str(s["n"]), str(s["differ"]), str(s["pix"]), f"{np.mean(s['dw']):.4f}", f"{np.mean(s['df']):.4f}",
            str(s["fallback"]), f"{np.mean(s['share']):.3f}", f"{tw:.1f}", f"{tf:.1f}", f"{tw / tf:.2f}")


if __name__ == "__main__":
    sys.exit(main())
