"""Many prompts on one image: one decoder batch (before) against a bounded number of prompts per
decoder call (the defaults since stop 68 on a CPU: ``promptable.CPU_BOXES_PER_CALL`` boxes,
``promptable.CPU_POINTS_PER_CALL`` grid points of everything mode).

``Predictor.predict_batch`` (``medisam segment`` with many ``--box``, the server's ``/segment``,
SAMAug's grid) and ``Predictor.box_logits`` (the box search that answers a click) decoded all
their boxes in one call: memory grew with the boxes (about 33 MiB a box for LiteMedSAM) and the
batch ran slower per box than boxes one at a time. Each row runs in a fresh process on the
default model (``load_model("litemedsam")``, ``auto``), so the peak RSS it adds is its own:

- ``boxes N``: the tight boxes of the first N nuclei of the first ``miccai_dp_nuclei`` tile
  (``predict_batch``), timed on the third of three calls;
- ``click``: one click at the interior-most pixel of the first object of the first image of each
  2D set (``Predictor.predict(points=...)``, the box search), three rounds after two warm-ups;
- ``everything``: everything mode (16 x 16 grid points) on the first ``kvasir_seg`` image, SAM's 64
  points per call (before) against the default, timed on the second of two calls;
- ``margins``: a propagation step's three boxes (the first object of each 2D set, its tight box grown by
  a propagation's margins, 1, 3 and 6 pixels) as ``Predictor.predict_best`` decodes them, in one batch
  (the default: only the winner is upscaled), against one box per call and the best kept, ten rounds
  each after two warm-ups. Here the "bounded" column is the alternative, not the default.

Prints seconds, ms per box, click or grid point, peak RSS added, the ratio to one batch, and how many answers
differ from one batch's (a box's mask; the box a click was answered with; everything mode's masks).

    python benchmarks/decode_batch.py                 # ~3 min on 2 cores
    python benchmarks/decode_batch.py --boxes 4,32
    python benchmarks/decode_batch.py --rows margins
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale_window import DATA, SETS_2D  # noqa: E402 - the 2D sets, one list

ONE_BATCH = 1 << 30  # boxes per call "without a bound"
SAM_POINTS_PER_CALL = 64  # everything mode's grid points per call before (SAM's default)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(masks: np.ndarray) -> str:
    """A short fingerprint of bool masks, to compare answers across processes."""
    return hashlib.sha1(np.packbits(masks).tobytes()).hexdigest()


def _first_case(name: str):  # noqa: ANN202 - a bench Case
    from medisam.bench.datasets import discover_cases

    return discover_cases(DATA / name)[0].load()


def _boxes_row(count: int) -> dict:
    from medisam.predict import Predictor
    from medisam.prompting import sampling

    case = _first_case("miccai_dp_nuclei")
    predictor = Predictor(_model()).set_image(case.image)
    boxes = [sampling.tight_box(np.squeeze(t.mask)) for t in case.targets[:count]]
    before = _rss_mib()
    for _ in range(2):  # warm-up: a decoder shape gets its static compilation on its second use
        predictor.predict_batch(boxes)
    t0 = time.perf_counter()
    pred = predictor.predict_batch(boxes)
    seconds = time.perf_counter() - t0
    return {"n": len(boxes), "seconds": seconds, "rss_mib": _rss_mib() - before,
            "answers": [_digest(m) for m in pred.masks]}


def _click_row(rounds: int = 3) -> dict:
    from medisam.predict import Predictor
    from medisam.prompting import sampling
    from medisam.prompts import Points

    model, seconds, found, n = _model(), 0.0, [], 0  # found: the box each click was answered with
    before = None
    for name in SETS_2D:
        case = _first_case(name)
        predictor = Predictor(model).set_image(case.image)
        x, y = sampling.interior_point(np.squeeze(case.targets[0].mask))
        points = Points(np.array([[x, y]]), np.array([1]))
        found.append(predictor.predict(points=points).box)  # warm-up, twice (the static compilations)
        predictor.predict(points=points)
        before = _rss_mib() if before is None else before
        t0 = time.perf_counter()
        for _ in range(rounds):
            pred = predictor.predict(points=points)
        seconds += time.perf_counter() - t0
        n += rounds
        found.append(pred.box)
    return {"n": n, "seconds": seconds, "rss_mib": _rss_mib() - before, "answers": [json.dumps(b) for b in found]}


def _everything_row() -> dict:
    from medisam.predict import Predictor
    from medisam.prompting.automatic import AutoMaskConfig, generate_masks

    predictor = Predictor(_model()).set_image(_first_case("kvasir_seg").image)
    config = AutoMaskConfig(grid="points")  # the grid points per decoder call are what is measured
    before = _rss_mib()
    generate_masks(predictor, config)
    t0 = time.perf_counter()
    found = generate_masks(predictor, config)
    seconds = time.perf_counter() - t0
    return {"n": config.points_per_side ** 2, "seconds": seconds, "rss_mib": _rss_mib() - before,
            "answers": [_digest(found.mask(i)) for i in range(len(found))]}


def _margins_row(one_batch: bool, rounds: int = 10) -> dict:
    from medisam.predict import Predictor
    from medisam.prompting import sampling

    model, seconds, answers, n, before = _model(), 0.0, [], 0, None
    for name in SETS_2D:
        case = _first_case(name)
        predictor = Predictor(model).set_image(case.image)
        mask = np.squeeze(case.targets[0].mask)
        tight, (h, w) = sampling.tight_box(mask), mask.shape
        boxes = [(max(tight.x0 - m, 0), max(tight.y0 - m, 0), min(tight.x1 + m, w - 1), min(tight.y1 + m, h - 1))
                 for m in (3.0, 1.0, 6.0)]  # margin_mm, *extra_margins_mm, in pixels

        def step():  # noqa: ANN202 - (index, Prediction)
            if one_batch:
                return predictor.predict_best(boxes)
            preds = [predictor.predict(box=b) for b in boxes]
            best = int(np.argmax([p.scores[0] for p in preds]))  # the first of equal scores, as predict_best
            return best, preds[best]

        for _ in range(2):
            step()
        before = _rss_mib() if before is None else before
        t0 = time.perf_counter()
        for _ in range(rounds):
            index, pred = step()
        seconds += time.perf_counter() - t0
        n += rounds
        answers.append(f"{index}:{_digest(pred.masks[0])}")
    return {"n": n, "seconds": seconds, "rss_mib": _rss_mib() - before, "answers": answers}


def _model():  # noqa: ANN202 - a PromptableModel
    from medisam.models import load_model

    return load_model("litemedsam")


def _child(kind: str, count: int, one_batch: bool) -> dict:
    """One row in this (fresh) process; ``one_batch``: as before stop 68."""
    from medisam.models import promptable

    if one_batch:
        promptable.CPU_BOXES_PER_CALL, promptable.CPU_POINTS_PER_CALL = ONE_BATCH, SAM_POINTS_PER_CALL
    rows = {"boxes": lambda: _boxes_row(count), "click": _click_row, "everything": _everything_row,
            "margins": lambda: _margins_row(one_batch)}
    return rows[kind]()


def _run(kind: str, count: int, one_batch: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(count), str(int(one_batch))],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boxes", default="16,64,256", help="comma list of box counts (nuclei of one tile)")
    ap.add_argument("--rows", default="boxes,click,everything,margins", help="comma list of the kinds of row to run")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, count, one_batch = args.child
        print(json.dumps(_child(kind, int(count), one_batch == "1")))
        return 0
    print("| prompts | one batch (before): s / ms each / peak MiB added | bounded (default): "
          "s / ms each / peak MiB added | time ratio | answers that differ |")
    print("| --- | --- | --- | --- | --- |")
    kinds = args.rows.split(",")
    rows = [("boxes", int(n)) for n in args.boxes.split(",") if "boxes" in kinds]
    rows += [(kind, 0) for kind in ("click", "everything", "margins") if kind in kinds]
    for kind, count in rows:
        before, now = _run(kind, count, True), _run(kind, count, False)
        label = {"boxes": f"{before['n']} nuclei boxes, one tile", "click": f"{now['n']} clicks, {len(SETS_2D)} sets",
                 "everything": f"everything mode, {now['n']} grid points",
                 "margins": f"{now['n']} propagation steps of 3 margins, {len(SETS_2D)} sets "
                            "(one batch is the default; the right column is one box per call)"}[kind]
        cells = [f"{r['seconds']:.2f} / {1000 * r['seconds'] / r['n']:.1f} / {r['rss_mib']:.0f}" for r in (before, now)]
        differ = sum(a != b for a, b in zip(before["answers"], now["answers"]))
        print(f"| {label} | {cells[0]} | {cells[1]} | {now['seconds'] / before['seconds']:.2f}x "
              f"| {differ} of {len(now['answers'])} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
