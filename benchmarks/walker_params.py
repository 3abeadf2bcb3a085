"""Score weights of the 3D click walker on a whole 3D set, all from ONE start per case.

The CVPR25 protocol (``medisam bench -p cvpr25-box3d``) runs LiteMedSAM once for the start
(3D box per class) and then 5 click steps that are the walker's alone
(:mod:`medisam.predict.click_refine`, no model call). So every walker setting is scored
from the same start: per case the start runs once, then each setting's 5 clicks, each undone
back to the start (``session.undo()``, checked against the start's label map) before the next; a case
with more clicks than the undo history keeps (hundreds of objects) restores its start instead.
Cases alternate between a tuning half (even position, sorted by id) and a held-out half
(odd), so a setting chosen on one half is judged on the other. Rows and tables are the
bench's own (``cvpr25.step_rows``, ``cvpr25.protocol_table``: DSC, NSD at 2 mm, AUCs; and per
class over all cases, ``cvpr25.class_table``).

    MEDISAM_THREADS=1 python benchmarks/walker_params.py ../shared/data/msd_task04_hippocampus \
        --params '[{"seed_radius": 1.0}, {}]' --workers 2 --out runs/walker.csv

``--params``: a JSON list of :class:`~medisam.predict.click_refine.RefineParams` overrides
(``{}`` = the defaults). Prints per setting and half: mean DSC at each step, DSC AUC (the
protocol's trapezoid over the 5 clicks), final NSD, NSD AUC and cases; ``--out`` keeps the
rows (the bench's ``results.csv`` columns, one per case, setting and step). ``--starts DIR``
keeps each case's start and reuses it on the next run. Multi-channel sets: the model sees
``--channel`` (default 0) and the walker every channel of the case, as ``medisam bench``;
``--no-guides``: the walker sees the model's channel only.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np

_MODEL = None
_CASES: dict = {}
_GUIDES = True


def _init(data: str, channel: int | None = None, guides: bool = True) -> None:
    """Per worker: the model and the set's cases (found here, each read when its turn comes; ``channel``:
    as ``medisam bench --channel``; ``guides``: the walker sees the case's other channels, as the bench does)."""
    global _MODEL, _GUIDES
    _GUIDES = guides
    from medisam.bench.datasets import DatasetOptions, discover_cases
    from medisam.models import load_model

    _MODEL = load_model("litemedsam")
    _CASES.update((r.case_id, r) for r in discover_cases(data, DatasetOptions(channel=channel)))  # read per case


def protocol_start(session, truth: np.ndarray, saved: Path | None):  # noqa: ANN001, ANN202 - session -> cvpr25.Step
    """The protocol's start on ``session``; with ``saved``, reused from (or kept in) that file.

    A kept start is the session's :meth:`~medisam.predict.session.VolumeSession.snapshot`
    (pickled: the start is LiteMedSAM's whole cost, the walker settings are what varies); it is
    only valid for the same backend, data and code (restore checks the volume shape, axis and
    model), so delete the folder when any changes. Only load pickles you wrote yourself.
    """
    import pickle

    from medisam.bench import cvpr25

    if saved is not None and saved.is_file():
        session.restore(pickle.loads(saved.read_bytes()))
        return cvpr25.Step(0, session.label_map().array, 0.0, {}, session.can_undo)
    first = cvpr25.run_protocol(session, truth, "box3d", n_clicks=0)[0]
    if saved is not None:
        from medisam.io.atomic import atomic_write

        with atomic_write(saved) as tmp:
            tmp.write_bytes(pickle.dumps(session.snapshot()))
    return first


def _case(args: tuple[str, list[dict], str | None]) -> list[dict]:
    """Rows (one per setting) of one case: DSC at the start and after each click."""
    case_id, settings, starts = args
    from medisam.bench import cvpr25
    from medisam.predict.click_refine import RefineParams

    case = _CASES[case_id].load()  # one case in memory per worker, not the whole set
    truth = case.labels.array
    classes = cvpr25.truth_classes(truth)
    session = cvpr25.case_session(_MODEL, case, guides=_GUIDES)
    first = protocol_start(session, truth, None if starts is None else Path(starts) / f"{case_id}.pkl")
    start = session.snapshot() if len(settings) > 1 else None
    rows = []
    for over in settings:
        steps = cvpr25.click_steps(session, truth, classes, first.labels, params=replace(RefineParams(), **over))
        if first.undo_depth + sum(len(s.prompts) for s in steps) <= session.max_undo:
            while session.can_undo > first.undo_depth:  # each click undone: checks that undo is exact
                session.undo()
            if not np.array_equal(session.label_map().array, first.labels):
                raise RuntimeError(f"{case_id}: undoing the clicks did not restore the start")
        elif start is not None:  # more clicks than the undo history keeps (hundreds of objects)
            session.restore(start)
        # the bench's own rows (one per step); the setting stands where the bench has its strategy
        rows += [{**r, "case": case_id, "model": "litemedsam"}
                 for r in cvpr25.step_rows([first, *steps], truth, case, json.dumps(over, sort_keys=True))]
    return rows


def _table(rows: list[dict], ids: list[str]) -> str:
    """The protocol's table (:func:`cvpr25.protocol_table`) per setting, for each half and all cases."""
    import pandas as pd

    from medisam.bench import cvpr25

    df = pd.DataFrame(rows)
    half = {cid: ("tuning" if i % 2 == 0 else "held-out") for i, cid in enumerate(ids)}
    parts = [df.assign(dataset=df["case"].map(half)), df.assign(dataset="all")]
    table = cvpr25.protocol_table(pd.concat(parts, ignore_index=True))
    order = {"tuning": 0, "held-out": 1, "all": 2}
    settings = list(dict.fromkeys(df["strategy"]))  # as given
    table = table.sort_values(by=["strategy", "dataset"],
                              key=lambda c: c.map(settings.index) if c.name == "strategy" else c.map(order))
    return _markdown(table, {"params": lambda r: r["strategy"], "cases": lambda r: f"{r['dataset']} {r['cases']}"},
                     {"DSC AUC": "dsc_auc", "NSD 5": "nsd_final", "NSD AUC": "nsd_auc"})


def _class_table(rows: list[dict]) -> str:
    """Per setting and class (label), all cases holding it: :func:`cvpr25.class_table`."""
    import pandas as pd

    from medisam.bench import cvpr25

    table = cvpr25.class_table(pd.DataFrame(rows).assign(dataset="all"))
    return _markdown(table, {"params": lambda r: r["strategy"], "class": lambda r: f"{r['class']} {r['name']}",
                             "cases": lambda r: str(r["cases"])}, {"DSC AUC": "dsc_auc", "NSD 5": "nsd_final"})


def _markdown(table, lead: dict, tail: dict[str, str]) -> str:
    """A Markdown table of ``table``'s rows: the ``lead`` cells (header -> function of the row), the
    mean DSC at each step, then the ``tail`` columns (header -> column), three decimals."""
    from medisam.bench import cvpr25

    steps = [f"dsc{k}" for k in range(cvpr25.N_CLICKS + 1)]
    header = [*lead, *(f"DSC {c[3:]}" for c in steps), *tail]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for _, r in table.iterrows():
        cells = [f(r) for f in lead.values()] + [f"{r[c]:.3f}" for c in (*steps, *tail.values())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a 3D labelled set (e.g. ../shared/data/msd_task04_hippocampus)")
    ap.add_argument("--params", default='[{"seed_radius": 1.0}, {}]', help="JSON list of RefineParams overrides")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N cases by id (0: all)")
    ap.add_argument("--out", type=Path, help="CSV of the rows (one per case, setting and step)")
    ap.add_argument("--starts", type=Path, help="folder keeping each case's start for later runs (see protocol_start)")
    ap.add_argument("--channel", type=int, help="image channel of multi-channel sets (as medisam bench --channel)")
    ap.add_argument("--no-guides", action="store_true",
                    help="the walker sees the model's channel only (default: every channel of the case)")
    args = ap.parse_args()
    from tqdm import tqdm

    from medisam.bench.datasets import DatasetOptions, discover_cases

    settings = json.loads(args.params)
    if args.starts is not None:
        args.starts.mkdir(parents=True, exist_ok=True)
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        raise SystemExit("--params must be a JSON list of objects")
    ids = sorted(r.case_id for r in discover_cases(args.data, DatasetOptions(channel=args.channel)))
    ids = ids[:args.limit] if args.limit else ids
    print(f"{len(ids)} cases x (one LiteMedSAM start + {len(settings)} settings x 5 walker clicks per class), "
          f"{args.workers} worker(s), MEDISAM_THREADS={os.environ.get('MEDISAM_THREADS', 'default')}")
    rows: list[dict] = []
    with Pool(args.workers, initializer=_init, initargs=(args.data, args.channel, not args.no_guides)) as pool:
        jobs = [(cid, settings, None if args.starts is None else str(args.starts)) for cid in ids]
        for out in tqdm(pool.imap_unordered(_case, jobs), total=len(jobs), unit="case"):
            rows += out
    if args.out:
        import pandas as pd

        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)
    print(_table(rows, ids))
    print(_class_table(rows))


if __name__ == "__main__":
    main()
