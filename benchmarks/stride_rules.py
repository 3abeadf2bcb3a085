"""The encode-stride rules of a thin-slice propagation, side by side on ``benchmarks/speed.py``'s
100-slice case (BraTS FLAIR, a box around the brain on the middle slice, ``VolumeSession``
defaults otherwise): one plane in two (stop 41's default, ``refine_below_dice=None``) against
one plane in four first, refined where the mask moves fast (``refine_below_dice``), in
interleaved rounds in one process; the table gives each rule's time as a ratio of the first's.

    python benchmarks/stride_rules.py [--rounds 2] [--threads N] [--slices 100] [--refine 0.9,0.95]

Accuracy on whole sets: ``benchmarks/propagation_3d.py --variants single-fixed,single,single-r95
--no-reference`` (docs/speed.md, stop 42).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import mask_dice, timed_volume_100, volume_100  # noqa: E402 - the speed table's case

from medisam.models import load_model  # noqa: E402
from medisam.predict import PropagationConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--refine", default="0.9,0.95", help="comma list of refine_below_dice values")
    args = parser.parse_args(argv)
    vol, _, mid, box = volume_100(args.slices)
    model = load_model("litemedsam", threads=args.threads)
    print(f"# model: backend {model.backend}, precision {model.precision}; {vol.shape[0]} slices", flush=True)
    rules = {"1 in 2 (refine_below_dice=None)": PropagationConfig(refine_below_dice=None)}
    for value in (float(v) for v in args.refine.split(",") if v.strip()):
        rules[f"1 in 4 first, refined below Dice {value:g}"] = PropagationConfig(refine_below_dice=value)
    seconds: dict[str, list[float]] = {name: [] for name in rules}
    counts: dict[str, tuple[int, int]] = {}
    masks: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        for name, config in rules.items():
            took, masks[name], session = timed_volume_100(model, vol, mid, box, config)  # every rule pays its encodings
            seconds[name].append(took)
            counts[name] = (len(session.encoded_slices), len(session.visited_slices))
            print(f"# round {round_ + 1}: {name}: {seconds[name][-1]:.1f} s, {counts[name][0]} encoded of "
                  f"{counts[name][1]} visited", flush=True)
    first = next(iter(rules))
    base = masks[first]
    print("\n| rule | s (each round) | x first (fastest round) | planes encoded / visited | s per visited plane "
          "| Dice of the label map vs the first |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in rules:
        agree = mask_dice(masks[name], base)
        print(f"| {name} | {' / '.join(f'{s:.1f}' for s in seconds[name])} | "
              f"{min(seconds[name]) / min(seconds[first]):.2f} | {counts[name][0]} / {counts[name][1]} | "
              f"{min(seconds[name]) / counts[name][1]:.3f} | {agree:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
