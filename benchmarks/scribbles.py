"""Correction scribbles on whole sets, two ways: one walker solve per scribble (what every surface
does: ``InteractiveSession.add_scribble``, ``VolumeSession.add_clicks``, ``medisam segment`` and
``medisam propagate --scribble`` with a box) against one solve per click (the behaviour before,
the reference: the same clicks one by one, ``add_click`` / ``correct_2d`` per click).

Every object of every case starts from its tight box: on a 2D set LiteMedSAM's mask of the box (as
``medisam segment --box``); on a 3D set the label's 3D box, propagated (the CVPR25 protocol's
``box3d`` start, ``medisam bench -p cvpr25-box3d``). Then ``--scribbles`` scribbles, each placed
on the object's current largest error (:mod:`medisam.prompting.scribble_sim`: a straight stroke
through the deepest pixel of the largest missed part, positive, or leak, negative), its clicks as
``scribble_points`` spaces them (every 8 px, at most 16). Each way places its scribbles from its
own masks. "Now" is the default walker (``RefineParams.stroke_cap``: 4 in 2D, ``PARAMS_2D``; 2 in
3D). A third way solves per scribble without the stroke cap on the clicks' radii, to show what the
cap does; ``--caps 2,4`` adds a way per other cap (measured: docs/clients.md, stop 64).
Prints, per set and way, the mean DSC at the box and after each scribble (every object) and the
seconds per scribble (mean and largest), and the ratio of the mean seconds, before / now.

    python benchmarks/scribbles.py --sets kvasir_seg,ph2_dermoscopy --jobs 2
    python benchmarks/scribbles.py --volumes msd_task04_hippocampus,brats2015_deepmedic --jobs 2
    python benchmarks/scribbles.py --table rows.jsonl    # the table again from kept rows

``--out rows.jsonl`` keeps one row per object and way (appended as they come).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale_window import DATA  # noqa: E402 - ../shared/data, one place
from workers import WORKER, init_worker  # noqa: E402 - the pool's per-worker model

WAYS = ("one solve per click (before)", "one solve per scribble (now)", "one solve per scribble, radii not capped")
CAPPED = "one solve per scribble, stroke_cap "  # + the cap: a way of ``--caps``


def _overrides(way: str) -> dict:
    """The walker's settings of ``way`` where they differ from the default (``stroke_cap``: see RefineParams)."""
    if way == WAYS[2]:
        return {"stroke_cap": None}
    return {"stroke_cap": float(way[len(CAPPED):])} if way.startswith(CAPPED) else {}




def _case_2d(ref) -> list[dict]:  # noqa: ANN001 - a bench CaseRef
    from medisam.metrics_basic import dice
    from medisam.predict import Predictor
    from dataclasses import replace

    from medisam.predict.refine2d import PARAMS_2D, correct_2d
    from medisam.prompting.sampling import tight_box
    from medisam.prompting.scribble_sim import error_scribble_2d
    from medisam.prompting.shapes import scribble_points

    case = ref.load()
    predictor = Predictor(WORKER["model"])
    predictor.set_image(case.image)
    display, rows = predictor.display_image, []
    for target in case.targets:
        truth = target.mask if target.mask.ndim == 2 else target.mask[0]
        box = tuple(float(v) for v in tight_box(truth).as_array())
        model_mask = predictor.predict_batch([box]).masks[0]
        for way in WORKER["ways"]:
            current, clicks, dices, secs = model_mask, (), [dice(model_mask, truth)], []
            for _ in range(WORKER["scribbles"]):
                found = error_scribble_2d(current, truth)
                if found is not None:
                    line, positive = found
                    pixels = [(int(y), int(x)) for x, y in scribble_points(line, truth.shape, positive).coords]
                    t0 = time.perf_counter()
                    params = replace(PARAMS_2D, **_overrides(way))
                    for batch in ([[p] for p in pixels] if way == WAYS[0] else [pixels]):
                        out = correct_2d(display, model_mask, current, box, clicks, batch, positive, params)
                        if out is not None:
                            current, clicks, _ = out
                    secs.append(time.perf_counter() - t0)
                dices.append(dice(current, truth))
            rows.append({"set": ref.dataset, "case": ref.case_id, "object": target.id, "way": way,
                         "dice": dices, "seconds": secs})
    return rows


def _case_3d(ref) -> list[dict]:  # noqa: ANN001 - a bench CaseRef
    from dataclasses import replace

    from medisam.bench import cvpr25
    from medisam.metrics_basic import dice
    from medisam.predict.click_refine import RefineParams
    from medisam.predict.refine3d import walker_clicks
    from medisam.prompting.scribble_sim import error_scribble_3d
    from medisam.prompting.shapes import scribble_points

    case = ref.load()
    truth = case.labels.array
    classes = cvpr25.truth_classes(truth)
    session = cvpr25.case_session(WORKER["model"], case)
    first = cvpr25.run_protocol(session, truth, "box3d", n_clicks=0)[0]
    start = session.snapshot()
    axis = session.axis
    rows_axis, cols_axis = (a for a in range(3) if a != axis)
    plane_hw = (truth.shape[rows_axis], truth.shape[cols_axis])
    out = []
    for way in WORKER["ways"]:
        session.restore(start)
        dices = {c: [dice(first.labels == c, truth == c)] for c in classes}
        secs: dict[int, list[float]] = {c: [] for c in classes}
        for _ in range(WORKER["scribbles"]):
            for c in classes:
                found = error_scribble_3d(session.label_map().array == c, truth == c, axis)
                if found is None:
                    continue
                k, line, positive = found
                voxels = []
                for x, y in scribble_points(line, plane_hw, positive).coords.astype(int):
                    v = [k, k, k]
                    v[rows_axis], v[cols_axis] = int(y), int(x)
                    voxels.append(tuple(v))
                t0 = time.perf_counter()
                if way == WAYS[1]:
                    session.add_clicks(voxels, positive, c)
                elif way != WAYS[0]:  # propagated at the start: walker_clicks is add_clicks' solve
                    walker_clicks(session, voxels, positive, c, replace(RefineParams(), **_overrides(way)))
                else:
                    with session.step():
                        for v in voxels:
                            session.add_click(v, positive, c)
                secs[c].append(time.perf_counter() - t0)
            labels = session.label_map().array
            for c in classes:
                dices[c].append(dice(labels == c, truth == c))
        out += [{"set": ref.dataset, "case": ref.case_id, "object": str(c), "way": way, "dice": dices[c],
                 "seconds": secs[c]} for c in classes]
    return out


def table(rows: list[dict], scribbles: int) -> str:
    """The markdown table, one line per set and one for all objects: the mean DSC at the box, then per way
    the mean DSC after each scribble and the seconds per scribble (mean / largest), and before / now."""
    caps = sorted({r["way"] for r in rows if r["way"].startswith(CAPPED)}, key=lambda w: float(w[len(CAPPED):]))
    ways = [w for w in (*WAYS[:2], *caps, WAYS[2]) if any(r["way"] == w for r in rows)]
    head = ["set", "objects", "box"]
    for way in ways:
        head += [f"{way}: DSC after 1 .. {scribbles}", "s per scribble (mean / max)"]
    lines = ["| " + " | ".join([*head, "s before / now"]) + " |", "|" + " --- |" * (len(head) + 1)]
    sets = sorted({r["set"] for r in rows})
    for name in [*sets, None]:
        cells, mean_s, objects, box = [], {}, 0, float("nan")
        for way in ways:
            chosen = [r for r in rows if r["way"] == way and (name is None or r["set"] == name)]
            d = np.mean([r["dice"] for r in chosen], axis=0)
            s = [v for r in chosen for v in r["seconds"]]
            mean_s[way] = float(np.mean(s)) if s else float("nan")
            objects, box = len(chosen), float(d[0])
            cells += [" / ".join(f"{v:.3f}" for v in d[1:]), f"{mean_s[way]:.2f} / {max(s, default=float('nan')):.2f}"]
        ratio = f"{mean_s[WAYS[0]] / mean_s[WAYS[1]]:.1f}x" if WAYS[0] in mean_s and WAYS[1] in mean_s else ""
        label = f"**all {len(sets)} sets** (every object)" if name is None else name
        lines.append("| " + " | ".join([label, str(objects), f"{box:.3f}", *cells, ratio]) + " |")
    if len(sets) > 1:  # each set counted once, however many objects it has
        cells = []
        for way in ways:
            d = np.mean([np.mean([r["dice"] for r in rows if r["way"] == way and r["set"] == n], axis=0)
                         for n in sets], axis=0)
            box = float(d[0])
            cells += [" / ".join(f"{v:.3f}" for v in d[1:]), ""]
        lines.append("| " + " | ".join([f"**mean of the {len(sets)} sets**", "", f"{box:.3f}", *cells, ""]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="", help="comma list of 2D datasets under ../shared/data")
    ap.add_argument("--volumes", default="", help="comma list of 3D datasets under ../shared/data")
    ap.add_argument("--scribbles", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (cases are shared out; 1 thread each "
                                                         "when more than one)")
    ap.add_argument("--max-cases", type=int, default=None, help="first N cases of each set (default: all)")
    ap.add_argument("--ways", default="0,1,2", help="which ways (0: one solve per click, 1: per scribble, "
                                                    "2: per scribble without the stroke cap)")
    ap.add_argument("--caps", default="", help="comma list of other stroke caps, a way each (e.g. 2,3)")
    ap.add_argument("--out", type=Path, default=None, help="append the rows (JSON lines) here")
    ap.add_argument("--table", type=Path, default=None, help="print the table of kept rows and stop")
    args = ap.parse_args(argv)
    if args.table is not None:
        rows = [json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]
        print(table(rows, len(rows[0]["dice"]) - 1 if rows else args.scribbles))
        return 0

    from tqdm import tqdm

    from medisam.bench.datasets import discover_cases

    work = []
    for names, fn in ((args.sets, _case_2d), (args.volumes, _case_3d)):
        for name in filter(None, names.split(",")):
            if not (DATA / name).is_dir():
                print(f"skip {name}: not under {DATA}", file=sys.stderr)
                continue
            work += [(fn, ref) for ref in discover_cases(DATA / name)[: args.max_cases]]
    if not work:
        ap.error("give --sets and/or --volumes (datasets under ../shared/data)")
    try:
        ways = [WAYS[int(i)] for i in filter(None, args.ways.split(","))]
        ways += [f"{CAPPED}{float(c):g}" for c in filter(None, args.caps.split(","))]
    except (ValueError, IndexError):
        ap.error(f"--ways takes 0, 1, 2 and --caps numbers, not {args.ways!r} / {args.caps!r}")
    if not ways:
        ap.error("give --ways and/or --caps")
    print(f"# {len(work)} cases, {args.scribbles} scribbles per object, {len(ways)} way(s); {args.jobs} job(s)",
          flush=True)
    threads = 1 if args.jobs > 1 else int(os.environ.get("MEDISAM_THREADS", os.cpu_count() or 1))
    rows: list[dict] = []
    with get_context("spawn").Pool(args.jobs, initializer=init_worker, initargs=(threads,)) as pool:
        for got in tqdm(pool.imap_unordered(_run, [(fn, ref, args.scribbles, ways) for fn, ref in work]),
                        total=len(work), desc="cases"):
            rows += got
            if args.out is not None:
                with args.out.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in got)
    print(table(rows, args.scribbles))
    return 0


def _run(job) -> list[dict]:  # noqa: ANN001 - (function, case ref, scribbles, ways)
    fn, ref, WORKER["scribbles"], WORKER["ways"] = job
    return fn(ref)


if __name__ == "__main__":
    sys.exit(main())
