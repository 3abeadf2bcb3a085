"""2D corrective clicks two ways on every target of the 2D sets: LiteMedSAM's point prompts
(``box-clicksN``, the SAM protocol: all clicks + the previous logits as mask prompt) against
the random walker (``box-walkerN``, :mod:`medisam.predict.refine2d`, what a click on a 2D
image does in the server and the web UI). Both start from the same tight box on the same
embedding, and their clicks are placed the same way (the interior-most pixel of the largest
error region). Prints the mean Dice at each click per set and over all targets.

    python benchmarks/clicks_2d.py                       # every 2D set but the nuclei (~25 min on 2 cores)
    python benchmarks/clicks_2d.py --sets miccai_dp_nuclei --clicks 5
    python benchmarks/clicks_2d.py --sampling            # the walker's intensity sample, two ways
    python benchmarks/clicks_2d.py --positive-rule       # a positive click: only add, or re-solve
    python benchmarks/clicks_2d.py --negative-sample     # background clicks' intensity in the rest's model, or not

``--sampling`` compares the walker's two intensity samples instead: a positive click samples the
object's intensity on the model's mask and around the click (the 2D default,
``refine2d.PARAMS_2D``), or around the click only (the 3D clicks' rule). ``--positive-rule``
compares what a positive click does to the mask: only add to it (the 2D default,
``RefineParams.positive_only_adds``), or take the walker's re-solved crop as it is (the 3D rule).
``--negative-sample`` compares the walker's model of "not the object": mixed with the background clicks'
own intensity (``RefineParams.negative_sample`` 0.5, the default in 2D and 3D since stop 58), or the rest
of the crop only (before). In each, each variant's clicks are placed from its own masks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale_window import DATA, SETS_2D  # noqa: E402 - the 2D sets, one list

SETS = tuple(name for name in SETS_2D if name != "miccai_dp_nuclei")  # 1623 nuclei: ~1 h more

#: the walker compared with itself: switch -> (the default's label, the other's label, the other's change of PARAMS_2D)
COMPARISONS = {
    "sampling": ("mask + click sample, default", "click sample", {"sample_model_mask": False}),
    "positive_rule": ("a positive click only adds, default", "a positive click re-solves the crop",
                      {"positive_only_adds": False}),
    "negative_sample": ("with the background clicks' intensity, default", "the rest of the crop only",
                        {"negative_sample": 0.0}),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma list of 2D datasets under ../shared/data")
    ap.add_argument("--clicks", type=int, default=5)
    compare = ap.add_mutually_exclusive_group()
    compare.add_argument("--sampling", action="store_true", help="the walker with both intensity samples instead")
    compare.add_argument("--positive-rule", action="store_true",
                         help="the walker with both rules for a positive click instead (only add / re-solve the crop)")
    compare.add_argument("--negative-sample", action="store_true",
                         help="the walker without / with the background clicks' intensity in its model of the rest")
    args = ap.parse_args(argv)

    from medisam.bench.datasets import iter_cases
    from medisam.metrics_basic import dice
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.prompting.strategies import parse_strategy

    model = load_model("litemedsam")
    print(f"# default path: backend {model.backend} {getattr(model, 'precision', 'fp32')}", flush=True)
    predictor = Predictor(model)
    chosen = next((switch for switch in COMPARISONS if getattr(args, switch)), None)
    if chosen is not None:
        from dataclasses import replace

        from medisam.predict.refine2d import PARAMS_2D
        from medisam.prompting.strategies import WalkerClicksStrategy

        default_label, other_label, change = COMPARISONS[chosen]
        names = (f"box-walker{args.clicks} ({default_label})", f"box-walker{args.clicks} ({other_label})")
        strategies = [WalkerClicksStrategy(args.clicks),
                      WalkerClicksStrategy(args.clicks, replace(PARAMS_2D, **change))]
    else:
        names = (f"box-clicks{args.clicks}", f"box-walker{args.clicks}")
        strategies = [parse_strategy(n) for n in names]
    steps = args.clicks + 1
    print("| set | targets | strategy | Dice at click 0 .. " + str(args.clicks) + " | s per target |")
    print("| --- | --- | --- | --- | --- |")
    totals = {n: np.zeros(steps) for n in names}
    seconds = {n: 0.0 for n in names}
    count = 0
    for name in args.sets.split(","):
        folder = DATA / name
        if not folder.is_dir():
            print(f"skip {name}: not under {DATA}", file=sys.stderr)
            continue
        sums, took, n = {k: np.zeros(steps) for k in names}, {k: 0.0 for k in names}, 0
        for case in iter_cases(folder):
            predictor.set_image(case.image)
            for target in case.targets:
                truth = target.mask if target.mask.ndim == 2 else target.mask[0]
                for key, strategy in zip(names, strategies):
                    t0 = time.perf_counter()
                    outcomes = strategy.run(predictor, truth, np.random.default_rng(0))
                    took[key] += time.perf_counter() - t0
                    sums[key] += [dice(o.mask, truth) for o in outcomes]
                n += 1
        if not n:
            continue
        for key in names:
            print(f"| {name} | {n} | {key} | {' '.join(f'{v:.3f}' for v in sums[key] / n)} | "
                  f"{took[key] / n:.2f} |", flush=True)
            totals[key] += sums[key]
            seconds[key] += took[key]
        count += n
    for key in names:
        print(f"| **all** | {count} | {key} | {' '.join(f'{v:.3f}' for v in totals[key] / max(count, 1))} | "
              f"{seconds[key] / max(count, 1):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
