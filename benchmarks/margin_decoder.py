"""A propagation step's decoder call, three ways, side by side on ``benchmarks/speed.py``'s
100-slice case (BraTS FLAIR, a box around the brain on the middle slice, default config):
every margin box decoded and upscaled, the best kept (``PromptableModel.decode_best``, the
path before stop 43); the best-of-boxes graph that upscales only the winner, on the whole
grid (stop 43, ``MEDISAM_UPSCALE_WINDOW=0``); and the same in the boxes' window only (what
the default backend runs since stop 44). Interleaved rounds in one process; the table gives
each path's time as a ratio of the first's, and how far the propagations' label maps agree.

    python benchmarks/margin_decoder.py [--rounds 2] [--threads N] [--slices 100] [--calls 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import mask_dice, timed_volume_100, volume_100  # noqa: E402 - the speed table's case

from medisam.models import load_model  # noqa: E402
from medisam.models.promptable import PromptableModel  # noqa: E402
from medisam.predict import Predictor, PropagationConfig  # noqa: E402
from medisam.predict.propagation import box_around  # noqa: E402


def step_boxes(pred: Predictor, box, config: PropagationConfig) -> torch.Tensor:  # noqa: ANN001
    """The margin boxes a propagation step tries around the seed slice's mask, on the model grid."""
    mask = pred.predict(box=box).masks[0]
    boxes = [b for b in (box_around(mask, (m, m)) for m in (config.margin_mm, *config.extra_margins_mm))
             if b is not None]
    return pred._boxes_on_model_grid(boxes, "benchmark")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--calls", type=int, default=30, help="decoder calls per path per round (step timing)")
    args = parser.parse_args(argv)
    vol, _, mid, box = volume_100(args.slices)
    model = load_model("litemedsam", threads=args.threads)
    print(f"# model: backend {model.backend}, precision {model.precision}; {vol.shape[0]} slices", flush=True)
    graph = model.decode_best
    every_box = types.MethodType(PromptableModel.decode_best, model)
    # name -> (decode_best, upscale in the boxes' window)
    paths = {"every margin upscaled, best kept (stop 42)": (every_box, False),
             "best-of-boxes graph, winner upscaled on the whole grid (stop 43)": (graph, False),
             "best-of-boxes graph, winner upscaled in the boxes' window (default)": (graph, True)}
    pred = Predictor(model).set_image(np.repeat(vol[mid][..., None], 3, axis=-1).astype(np.float32))
    embedding = pred._require_image().embedding
    boxes = step_boxes(pred, box, PropagationConfig())
    step_ms: dict[str, list[float]] = {name: [] for name in paths}
    prop_s: dict[str, list[float]] = {name: [] for name in paths}
    masks: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for round_ in range(args.rounds):
        for name, (decode_best, window) in paths.items():
            os.environ["MEDISAM_UPSCALE_WINDOW"] = "1" if window else "0"
            decode_best(embedding, boxes)  # warm-up (compiles the graph on first use)
            for _ in range(args.calls):
                started = time.perf_counter()
                decode_best(embedding, boxes)
                step_ms[name].append((time.perf_counter() - started) * 1000)
            model.decode_best = decode_best
            took, masks[name], session = timed_volume_100(model, vol, mid, box)  # both pay the same encodings
            prop_s[name].append(took)
            counts[name] = len(session.visited_slices)
            print(f"# round {round_ + 1}: {name}: step {statistics.median(step_ms[name][-args.calls:]):.1f} ms, "
                  f"propagation {prop_s[name][-1]:.1f} s", flush=True)
    model.decode_best = graph
    os.environ.pop("MEDISAM_UPSCALE_WINDOW", None)
    first = next(iter(paths))
    base = masks[first]
    print(f"\n{len(boxes)} margin boxes per step; step = one decoder call, median of {args.calls} per round\n")
    print("| path | step ms (median) | x first | propagation s (each round) | x first (fastest) | planes visited "
          "| Dice of the label map vs the first |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in paths:
        agree = mask_dice(masks[name], base)
        step = statistics.median(step_ms[name])
        print(f"| {name} | {step:.1f} | {step / statistics.median(step_ms[first]):.2f} | "
              f"{' / '.join(f'{s:.1f}' for s in prop_s[name])} | {min(prop_s[name]) / min(prop_s[first]):.2f} | "
              f"{counts[name]} | {agree:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
