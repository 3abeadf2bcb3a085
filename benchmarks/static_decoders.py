"""Decoders compiled for the prompt shapes in use against the dynamic-shape graph: time and masks.

The default path (``load_model("litemedsam")`` = ``auto``; the static shapes apply where it is
OpenVINO, :mod:`medisam.models.openvino_shapes`), in one process, both ways on the same
embeddings: the default, and ``MEDISAM_STATIC_DECODERS=0`` (the dynamic graph, the path before).

1. Prompt to mask: every target of the 2D sets (its tight box), ``Predictor.predict(box)`` on a
   cached embedding, the two paths alternating which goes first per target. Per set: targets,
   masks and scores that differ, median milliseconds of each path and their ratio.
2. The 100-slice propagation of ``benchmarks/speed.py`` (a BraTS FLAIR volume, a box on its
   middle slice, a fresh session each time), the two paths alternating per round: wall seconds
   and whether the label maps are equal.
3. A session's first box prompts (``--first-calls N``: N fresh processes per path, a pause between
   the calls as a user makes): the milliseconds of each of the first 8 ``predict(box)`` calls of
   one box on a kvasir image, the default against the dynamic graph, which never compiles. The
   shape's second use compiles its static graph in that call (0.1-0.3 s, once per process). A
   compilation on a background thread removed that wait but slowed the inference after it
   (stop 54, ``docs/speed.md``), so it stays in the call.

    python benchmarks/static_decoders.py                         # every 2D set, 3 propagation rounds
    python benchmarks/static_decoders.py --sets kvasir_seg --max-cases 20 --rounds 1
    python benchmarks/static_decoders.py --sets none --rounds 0 --first-calls 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import timed_volume_100, volume_100  # noqa: E402 - the speed table's 100-slice case
from upscale_window import DATA, SETS_2D  # noqa: E402

SWITCH = "MEDISAM_STATIC_DECODERS"


def timed(fn, static: bool):  # noqa: ANN001, ANN201 - a call -> (its result, seconds)
    os.environ[SWITCH] = "1" if static else "0"
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def prompt_rows(model, sets: list[str], max_cases: int | None) -> list[tuple[str, ...]]:  # noqa: ANN001
    from medisam.bench.datasets import iter_cases
    from medisam.predict import Predictor
    from medisam.prompting.sampling import tight_box

    predictor = Predictor(model)
    rows, every = [], {"n": 0, "differ": 0, "ts": [], "td": []}
    for name in sets:
        folder = DATA / name
        if not folder.is_dir():
            print(f"skip {name}: not under {DATA}", file=sys.stderr)
            continue
        s = {"n": 0, "differ": 0, "ts": [], "td": []}
        for case in iter_cases(folder, max_cases=max_cases):
            predictor.set_image(case.image)
            for target in case.targets:
                truth = target.mask if target.mask.ndim == 2 else target.mask[0]
                box = tight_box(truth)
                if not every["n"] and not s["n"]:  # the first box makes the static compilation (once)
                    for _ in range(2):
                        predictor.predict(box=box)
                first = s["n"] % 2 == 0
                a, ta = timed(lambda: predictor.predict(box=box), static=first)
                b, tb = timed(lambda: predictor.predict(box=box), static=not first)
                (st, ts), (dy, td) = ((a, ta), (b, tb)) if first else ((b, tb), (a, ta))
                s["n"] += 1
                s["differ"] += not (np.array_equal(st.masks, dy.masks) and np.array_equal(st.scores, dy.scores)
                                    and np.array_equal(st.low_res_logits, dy.low_res_logits))
                s["ts"].append(ts)
                s["td"].append(td)
        if s["n"]:
            rows.append(_row(name, s))
            print(" | ".join(rows[-1]), flush=True)
            for k in every:
                every[k] += s[k]
    os.environ.pop(SWITCH, None)
    if every["n"]:
        rows.append(_row("**all**", every))
    return rows


def _row(name: str, s: dict) -> tuple[str, ...]:
    ms_s, ms_d = 1e3 * statistics.median(s["ts"]), 1e3 * statistics.median(s["td"])
    return (name, str(s["n"]), str(s["differ"]), f"{ms_s:.1f}", f"{ms_d:.1f}", f"{ms_s / ms_d:.2f}")


def propagation_rows(model, rounds: int) -> list[tuple[str, ...]]:  # noqa: ANN001
    vol, _, mid, box = volume_100(100)
    rows = []
    for r in range(rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        got = {static: timed(lambda: timed_volume_100(model, vol, mid, box), static)[0] for static in order}
        (t_s, lab_s, _), (t_d, lab_d, _) = got[True], got[False]
        rows.append((str(r + 1), f"{t_s:.1f}", f"{t_d:.1f}", f"{t_s / t_d:.2f}", str(np.array_equal(lab_s, lab_d))))
        print(" | ".join(rows[-1]), flush=True)
    os.environ.pop(SWITCH, None)
    return rows


FIRST_CALLS = 8


def first_calls(pause: float) -> list[float]:
    """Milliseconds of a fresh session's first :data:`FIRST_CALLS` ``predict(box)`` calls of one box
    (this process must not have decoded before: the compilations are per process)."""
    from medisam.bench.datasets import iter_cases
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.prompting.sampling import tight_box

    case = next(iter(iter_cases(DATA / "kvasir_seg", max_cases=1)))
    predictor = Predictor(load_model("litemedsam"))
    predictor.set_image(case.image)
    truth = case.targets[0].mask
    box = tight_box(truth if truth.ndim == 2 else truth[0])
    out = []
    for _ in range(FIRST_CALLS):
        t0 = time.perf_counter()
        predictor.predict(box=box)
        out.append(1e3 * (time.perf_counter() - t0))
        time.sleep(pause)
    return out


def first_call_rows(rounds: int, pause: float) -> list[tuple[str, ...]]:
    """Per path (default / dynamic graph), fresh processes alternating: every call's median ms and
    the largest of calls 2..8."""
    import json
    import subprocess

    got: dict[bool, list[list[float]]] = {True: [], False: []}
    for r in range(rounds):
        for static in ((True, False) if r % 2 == 0 else (False, True)):
            env = dict(os.environ, **{SWITCH: "1" if static else "0"})
            out = subprocess.run([sys.executable, __file__, "--one-session", str(pause)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            got[static].append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    for static, runs in got.items():
        calls = np.median(np.asarray(runs), axis=0)
        worst = max(max(run[1:]) for run in runs)
        rows.append(("default (static shapes)" if static else "dynamic graph only", str(len(runs)),
                     " ".join(f"{v:.1f}" for v in calls), f"{worst:.1f}"))
    return rows


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS_2D), help="comma list of 2D datasets under ../shared/data")
    ap.add_argument("--max-cases", type=int, default=None, help="first N cases of each set (default: all)")
    ap.add_argument("--rounds", type=int, default=3, help="100-slice propagations per path (0: none)")
    ap.add_argument("--first-calls", type=int, default=0, help="fresh sessions per path timing their first calls")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between a session's first calls")
    ap.add_argument("--one-session", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one_session is not None:  # a child of --first-calls: one fresh session's calls, as JSON
        import json

        print(json.dumps(first_calls(args.one_session)))
        return 0
    from medisam.models import load_model

    model = load_model("litemedsam")
    print(f"# default path: backend {model.backend} {getattr(model, 'precision', 'fp32')}, {os.cpu_count()} CPUs",
          flush=True)
    if model.backend != "openvino":
        print("the default backend here is not OpenVINO: static decoder shapes do not apply", file=sys.stderr)
        return 1
    sets = [] if args.sets == "none" else args.sets.split(",")
    prompts = prompt_rows(model, sets, args.max_cases)
    props = propagation_rows(model, args.rounds) if args.rounds else []
    firsts = first_call_rows(args.first_calls, args.pause) if args.first_calls else []
    if prompts:
        print("\nPrompt to mask (Predictor.predict(box) on a cached embedding; median ms):")
        print_table(("set", "targets", "outputs that differ", "ms static", "ms dynamic", "ratio"), prompts)
    if props:
        print("\n100-slice propagation (fresh session each; s):")
        print_table(("round", "s static", "s dynamic", "ratio", "label maps equal"), props)
    if firsts:
        print(f"\nA fresh session's first {FIRST_CALLS} calls of one box ({args.pause:g} s apart; median ms per call):")
        print_table(("path", "sessions", "ms per call", "largest of calls 2-8"), firsts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
