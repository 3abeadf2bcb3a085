"""A fresh session's first prompts on the default backend: which calls wait for a decoder compile.

Each session is a fresh process (the OpenVINO compilations are per process): it loads the default
model (``load_model("litemedsam")``, ``auto``: OpenVINO bf16 on an AMX Xeon), encodes one real
image and runs a realistic interactive sequence through ``Predictor.predict``, a pause between
calls as a user makes: a box, then clicks added one at a time, a new box and a click, points
alone, a mask prompt (the previous logits) and the box again. Then the same sequence
:data:`STEADY_ROUNDS` more times: each step's median over those rounds is its steady state, and
a first call's ratio is against the steady state of the same step measured in the same process.
Per call it prints the milliseconds, the ratio, and the compilations that ran in the call
(count and seconds, from a counter on the backend's compile); and the session's load seconds
and RSS.

    python benchmarks/decoder_shapes.py                  # 3 fresh sessions, kvasir_seg's first image
    python benchmarks/decoder_shapes.py --sessions 1 --set busi_breast_us_mini --pause 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

DATA = Path(os.environ.get("MEDISAM_DATA", "/work/shared/data"))
#: rounds of the whole sequence after the first, whose per-step medians are the steady state
STEADY_ROUNDS = 5


def rss_mib() -> float:
    """This process's resident set size (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sequence(box_a: list[float], box_b: list[float], inside_a: list[tuple[float, float]],
             inside_b: tuple[float, float]) -> list[tuple[str, dict]]:
    """The interactive sequence: ``(step name, predict kwargs)``; ``"mask": True`` stands for the
    previous call's low-res logits (filled in when run)."""
    clicks = [(x, y, 1) for x, y in inside_a]
    steps = [("box", {"box": box_a})]
    for n in range(1, len(clicks) + 1):
        steps.append((f"box+{n} click{'s' if n > 1 else ''}", {"box": box_a, "points": clicks[:n]}))
    steps += [("new box", {"box": box_b}),
              ("new box+1 click", {"box": box_b, "points": [(*inside_b, 1)]}),
              ("points only (2)", {"points": [clicks[0], (box_a[0] + 1, box_a[1] + 1, 0)]}),
              ("box+mask prompt", {"box": box_b, "mask": True}),
              ("box again", {"box": box_a})]
    return steps


def counted_compiles(model) -> list[tuple[int, float]]:  # noqa: ANN001 - a PromptableModel
    """Wrap the backend's compile (OpenVINO: ``_compile``) so that every compile appends
    ``(thread id, seconds)`` to the returned list."""
    seen: list[tuple[int, float]] = []
    compile_ = getattr(model, "_compile", None)
    if compile_ is None:
        return seen

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        try:
            return compile_(*args, **kwargs)
        finally:
            seen.append((threading.get_ident(), time.perf_counter() - t0))
    model._compile = counting
    return seen


def one_session(set_name: str, pause: float) -> dict:
    """A fresh process's sequence: per call ms and compiles in the call, the steady state, load s, RSS."""
    from medisam.bench.datasets import iter_cases
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.prompting.sampling import tight_box

    case = next(iter(iter_cases(DATA / set_name, max_cases=1)))
    rss0 = rss_mib()
    t0 = time.perf_counter()
    model = load_model("litemedsam")
    load_s = time.perf_counter() - t0
    compiles = counted_compiles(model)
    predictor = Predictor(model)
    predictor.set_image(case.image)
    rss_loaded = rss_mib()
    truth = case.targets[0].mask
    truth = truth if truth.ndim == 2 else truth[0]
    import numpy as np

    ys, xs = np.nonzero(truth)
    order = np.random.default_rng(0).permutation(len(xs))[:4]
    inside = [(float(xs[i]), float(ys[i])) for i in order]
    box_a = [float(v) for v in tight_box(truth).as_array()]
    h, w = truth.shape
    box_b = [max(0.0, box_a[0] - 0.1 * w), max(0.0, box_a[1] - 0.1 * h),
             min(w - 1.0, box_a[2] + 0.05 * w), min(h - 1.0, box_a[3] + 0.05 * h)]
    steps = sequence(box_a, box_b, inside, inside[0])
    me = threading.get_ident()
    rounds: list[list[float]] = []
    first_compiles: list[tuple[int, float]] = []
    for r in range(1 + STEADY_ROUNDS):
        times, last = [], None
        for _, kwargs in steps:
            kwargs = dict(kwargs)
            if kwargs.get("mask"):
                kwargs["mask"] = last.low_res_logits[0]
            before = len(compiles)
            t = time.perf_counter()
            last = predictor.predict(**kwargs)
            times.append(1e3 * (time.perf_counter() - t))
            if r == 0:
                mine = [s for tid, s in compiles[before:] if tid == me]
                first_compiles.append((len(mine), sum(mine)))
            time.sleep(pause)
        rounds.append(times)
    return {"names": [n for n, _ in steps], "first": rounds[0],
            "steady": [statistics.median(c) for c in zip(*rounds[1:])], "compiles": first_compiles,
            "all_compiles": len(compiles), "load_s": load_s, "rss_loaded": rss_loaded - rss0,
            "rss_end": rss_mib() - rss0, "backend": f"{model.backend} {getattr(model, 'precision', '')}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3, help="fresh processes, each one sequence")
    ap.add_argument("--set", default="kvasir_seg", help="2D set of /work/shared/data (its first image)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between a session's calls")
    ap.add_argument("--one-session", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one_session:
        print(json.dumps(one_session(args.set, args.pause)))
        return 0
    runs = []
    for _ in range(args.sessions):
        cmd = [sys.executable, __file__, "--one-session", "--set", args.set, "--pause", str(args.pause)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    print(f"# {runs[0]['backend']}, {os.cpu_count()} CPUs, {args.set}, {args.sessions} fresh sessions, "
          f"{args.pause:g} s between calls; ratio: first-round ms / the same step's steady ms (median of "
          f"{STEADY_ROUNDS} later rounds, same process)")
    print("| # | prompt | ms (each session) | steady ms | ratio (worst) | compiles in the call (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, name in enumerate(runs[0]["names"]):
        firsts = [r["first"][i] for r in runs]
        steady = statistics.median(r["steady"][i] for r in runs)
        ratio = max(r["first"][i] / r["steady"][i] for r in runs)
        comp = " ".join(f"{r['compiles'][i][0]} ({r['compiles'][i][1]:.2f})" for r in runs)
        print(f"| {i + 1} | {name} | {' '.join(f'{t:.1f}' for t in firsts)} | {steady:.1f} | {ratio:.2f} | {comp} |")
    print("\n| session | load s | compiles (all threads) | RSS after load+encode MiB | RSS at end MiB |")
    print("| --- | --- | --- | --- | --- |")
    for k, r in enumerate(runs):
        print(f"| {k + 1} | {r['load_s']:.2f} | {r['all_compiles']} | {r['rss_loaded']:.0f} | {r['rss_end']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
