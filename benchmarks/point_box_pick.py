"""How well the box search picks among its candidates (``medisam.predict.point_box``): every object of the 2D
sets, one click at its interior-most pixel (the bench's ``point``), every candidate box of the default search
decoded, and each candidate's answer (the box of its mask, decoded as any box) scored against the truth. From
these rows any pick rule is scored without running the model again: the default (predicted IoU x stability),
other rules, and the ceiling (the best candidate, which a perfect pick would reach), with the tight box
(the bench's ``box``) as the reference from the same run.

    python benchmarks/point_box_pick.py --jobs 2 --out rows.jsonl          # every 2D set (the nuclei: ~1 h)
    python benchmarks/point_box_pick.py --table rows.jsonl

Rows are appended per object as they come; a rerun skips the cases already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upscale_window import DATA, SETS_2D  # noqa: E402 - the 2D sets, one list
from workers import WORKER, init_worker  # noqa: E402 - the pool's per-worker model

REFERENCE = "tight box"
CEILING = "best candidate (ceiling)"


DEFAULT = "score x stability (default)"
COARSE = "default, every other candidate then the winner's neighbours"


def _size_kept(c: list[dict]) -> np.ndarray:
    """How well each candidate's mask keeps its size as the box grows: the mean, over its two neighbours in
    the search's order (0 past the ends), of the smaller over the larger of the two mask areas."""
    area = np.array([max(1, x["area"]) for x in c], dtype=float)
    to_next = np.r_[np.minimum(area[:-1], area[1:]) / np.maximum(area[:-1], area[1:]), 0.0]
    return (to_next + np.r_[0.0, to_next[:-1]]) / 2


def _value(c: list[dict], rule: str) -> np.ndarray:
    """Each candidate's value under ``rule``: the candidate's predicted IoU (``score``) and stability (``stab``),
    or its answer's (``fscore``, ``fstab``; ``fagree``: the answer's DSC with the candidate's mask)."""
    g = {k: np.array([x.get(k, 0.0) for x in c]) for k in ("score", "stab", "fscore", "fstab", "fagree")}
    return {DEFAULT: g["score"] * g["stab"], "stability": g["stab"],
            "score": g["score"], "answer's score x stability": g["fscore"] * g["fstab"], "answer's score": g["fscore"],
            "score x stability x answer agrees": g["score"] * g["stab"] * g["fagree"],
            "score x stability x size kept": g["score"] * g["stab"] * _size_kept(c)}[rule]


RULES = (DEFAULT, "stability", "score", "answer's score x stability", "answer's score",
         "score x stability x answer agrees", "score x stability x size kept", COARSE)


def _pick_among(c: list[dict], rule: str, among: np.ndarray, border: float) -> int:
    """The candidate of ``among`` (indices) that ``rule`` picks, kept as the search keeps them."""
    holds = np.array([c[i]["holds"] for i in among])
    enclosed = holds & np.array([c[i]["border"] < border for i in among])
    keep = among[enclosed if enclosed.any() else holds if holds.any() else np.ones(len(among), dtype=bool)]
    return int(keep[np.argmax(_value(c, rule)[keep])])


def pick(c: list[dict], rule: str, border: float = 0.05) -> int:
    """The candidate ``rule`` picks among those kept as the search keeps them (holding the click, enclosed).
    :data:`COARSE` decodes fewer: every other candidate (and the widest), then the winner's two neighbours,
    and picks among those by the default rule (about 0.7x the decodes)."""
    if rule != COARSE:
        return _pick_among(c, rule, np.arange(len(c)), border)
    coarse = sorted({*range(0, len(c), 2), len(c) - 1})
    first = _pick_among(c, DEFAULT, np.asarray(coarse), border)
    fine = {i for i in (first - 1, first + 1) if 0 <= i < len(c)}
    return _pick_among(c, DEFAULT, np.asarray(sorted({*coarse, *fine})), border)


def _case(ref) -> list[dict]:  # noqa: ANN001 - a bench CaseRef
    from medisam.metrics_basic import dice
    from medisam.predict import Predictor
    from medisam.predict.point_box import answer_box, border_share, decode_candidates, holds_points, stability
    from medisam.prompting import sampling
    from medisam.prompts import Points

    case = ref.load()
    predictor = Predictor(WORKER["model"])
    predictor.set_image(case.image)
    rows = []
    for target in case.targets:
        truth = target.mask if target.mask.ndim == 2 else target.mask[0]
        x, y = sampling.interior_point(truth)
        found = decode_candidates(predictor, Points(np.array([[x, y]]), np.array([1])))  # the search's own step 1
        logits, scores, boxes_low, yx_low = found.logits, found.scores, found.boxes_low, found.yx_low
        masks = predictor.logits_to_masks(logits)
        cands = []
        for i, mask in enumerate(masks):
            c = {"score": float(scores[i]), "stab": stability(logits[i]),
                 "holds": bool(holds_points(logits[i] > 0, yx_low)[0]),
                 "border": border_share(logits[i] > 0, boxes_low[i]), "area": int(mask.sum()),
                 "final_dice": 0.0, "fscore": 0.0, "fstab": 0.0, "fagree": 0.0}
            box = answer_box(mask)
            if box is not None:  # the answer this candidate would give, as predict_from_points decodes it
                pred = predictor.predict(box=box, multimask=False, box_search=False)
                c.update(final_dice=dice(pred.masks[0], truth), fscore=float(pred.scores[0]),
                         fstab=stability(pred.low_res_logits[0]), fagree=dice(pred.masks[0], mask))
            cands.append(c)
        tight = predictor.predict_batch([sampling.tight_box(truth)]).masks[0]
        rows.append({"set": case.dataset, "case": case.case_id, "target": target.id,
                     REFERENCE: dice(tight, truth), "cands": cands})
    return rows or [{"set": case.dataset, "case": case.case_id, "target": None}]


def run(sets: list[str], out: Path, jobs: int, max_cases: int | None = None) -> None:
    from medisam.bench.datasets import discover_cases
    from tqdm import tqdm

    done = set()
    if out.exists():
        done = {(r["set"], r["case"]) for r in map(json.loads, out.read_text().splitlines())}
    refs = [r for name in sets for r in discover_cases(DATA / name)[:max_cases] if (r.dataset, r.case_id) not in done]
    with get_context("spawn").Pool(max(1, jobs), initializer=init_worker, initargs=(1,)) as pool, out.open("a") as f:
        for rows in tqdm(pool.imap_unordered(_case, refs), total=len(refs), unit="case"):
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()


def table(files: list[Path]) -> None:
    rows = [r for p in files for r in map(json.loads, p.read_text().splitlines()) if r.get("target") is not None]
    by_set: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_set[r["set"]].append(r)
    cols = [REFERENCE, CEILING, *RULES]

    def scores(rs: list[dict], col: str) -> list[float]:
        if col == REFERENCE:
            return [r[REFERENCE] for r in rs if REFERENCE in r]
        if col == CEILING:
            return [max(c["final_dice"] for c in r["cands"]) for r in rs]
        return [r["cands"][pick(r["cands"], col)]["final_dice"] for r in rs]

    print("| set | objects | " + " | ".join(cols) + " |")
    print("| --- | --- |" + " --- |" * len(cols))
    means = defaultdict(list)
    for name in sorted(by_set):
        cells = []
        for col in cols:
            means[col].append(float(np.mean(scores(by_set[name], col))))
            cells.append(f"{means[col][-1]:.3f}")
        print(f"| {name} | {len(by_set[name])} | " + " | ".join(cells) + " |")
    print(f"| **every object** | {len(rows)} | " + " | ".join(f"{np.mean(scores(rows, c)):.3f}" for c in cols) + " |")
    bold = " | ".join(f"**{np.mean(means[c]):.3f}**" for c in cols)
    print(f"| **mean of the {len(by_set)} sets** | | {bold} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS_2D), help="comma list of 2D datasets under ../shared/data")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes of 1 thread each")
    ap.add_argument("--out", type=Path, help="rows, one JSON object per object (appended; resumed)")
    ap.add_argument("--max-cases", type=int, default=None, help="first N cases of each set (default: all)")
    ap.add_argument("--table", nargs="+", type=Path, help="print the table of these row files and stop")
    args = ap.parse_args(argv)
    if args.table:
        table(args.table)
        return 0
    if args.out is None:
        ap.error("give --out (rows) or --table")
    run(args.sets.split(","), args.out, args.jobs, args.max_cases)
    table([args.out])
    return 0


if __name__ == "__main__":
    sys.exit(main())
