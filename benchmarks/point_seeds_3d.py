"""A click that seeds a volume: every label of the 3D sets, three ways side by side.

For each label of each case: the slice where it is largest, and on it either the tight box, or one click at
the label's interior-most pixel answered by the model's own point prompt (``box_search=False``) or by the box
search that every surface now uses (``medisam.predict.point_box``); then ``VolumeSession.propagate()`` with
the default settings. One JSON row per label and way (3D DSC, the seed slice's DSC, seconds); ``--table``
prints the table of the rows kept.

    python benchmarks/point_seeds_3d.py --sets brats2015_deepmedic,msd_task04_hippocampus --jobs 2 --out rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("MEDISAM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
WAYS = ("box", "point (model)", "point-box")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workers import WORKER, init_worker  # noqa: E402 - the pool's per-worker model


def _case(paths: tuple[Path, Path], ways: tuple[str, ...] = WAYS) -> list[dict]:
    from medisam.io import read_image
    from medisam.metrics_basic import dice
    from medisam.predict import VolumeSession
    from medisam.prompting.sampling import interior_point, tight_box

    image_path, label_path = paths
    image, labels = read_image(image_path), np.asarray(read_image(label_path).array)
    rows = []
    for label in (int(v) for v in np.unique(labels) if v):
        truth = labels == label
        k = int(np.argmax(truth.sum(axis=(1, 2))))
        x, y = interior_point(truth[k])
        box = tuple(float(v) for v in tight_box(truth[k]).as_array())
        for way in ways:
            session = VolumeSession(WORKER["model"], image)
            t0 = time.perf_counter()
            if way == "box":
                session.add_box(k, box)
            else:
                if way == "point (model)":  # the model's own point prompt, as before stop 65
                    session.predictor.box_search = False
                session.add_points(k, [(x, y, 1)])
            out = np.asarray(session.propagate(progress=False).array) > 0
            rows.append({"set": image_path.parent.parent.name, "case": image_path.name, "label": label, "way": way,
                         "dice": float(dice(out, truth)), "seed_dice": float(dice(out[k], truth[k])),
                         "seconds": time.perf_counter() - t0})
    return rows


def table(rows: list[dict]) -> str:
    """Mean 3D DSC, the seed slice's DSC and seconds per way, over the labels every way in the rows measured."""
    ways = [w for w in WAYS if any(r["way"] == w for r in rows)]
    by: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        by[r["set"]][(r["case"], r["label"])][r["way"]] = r
    lines = ["| set | cases | labels | " + " | ".join(f"{w}: 3D DSC (seed slice) / s" for w in ways) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in ways) + " |"]
    for name, labels in by.items():
        done = [v for v in labels.values() if all(w in v for w in ways)]
        cells = [f"{np.mean([v[w]['dice'] for v in done]):.3f} ({np.mean([v[w]['seed_dice'] for v in done]):.3f}) / "
                 f"{np.mean([v[w]['seconds'] for v in done]):.1f}" for w in ways]
        cases = len({v[ways[0]]['case'] for v in done})
        lines.append(f"| {name} | {cases} | {len(done)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="brats2015_deepmedic,msd_task04_hippocampus,pyradiomics_lung_ct",
                    help="comma list of 3D datasets (imagesTr/*_0000.nii.gz + labelsTr/) under ../shared/data")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes of 1 thread each")
    ap.add_argument("--out", type=Path, default=None,
                    help="append the rows (JSON lines) here; cases it already holds are skipped (a run resumes)")
    ap.add_argument("--ways", default=",".join(WAYS), help=f"comma list of the ways to run (of {', '.join(WAYS)})")
    ap.add_argument("--first", type=int, default=None, help="only the first N cases of each set (sorted names)")
    ap.add_argument("--table", type=Path, default=None, help="print the table of kept rows and stop")
    args = ap.parse_args(argv)
    ways = tuple(w for w in args.ways.split(",") if w)
    if not ways or set(ways) - set(WAYS):
        ap.error(f"--ways: choose among {', '.join(WAYS)}")
    if args.table is not None:
        print(table(_rows(args.table)))
        return 0
    work = []
    for name in filter(None, args.sets.split(",")):
        images = sorted((DATA / name / "imagesTr").glob("*_0000.nii.gz"))[:args.first]
        if not images:
            ap.error(f"{name}: no imagesTr/*_0000.nii.gz under {DATA}")
        work += [(p, DATA / name / "labelsTr" / p.name.replace("_0000", "")) for p in images]
    from tqdm import tqdm

    rows: list[dict] = _rows(args.out) if args.out is not None and args.out.exists() else []
    done = {(r["set"], r["case"]) for r in rows}  # a case's rows are written together, once it is whole
    work = [(i, lab) for i, lab in work if (i.parent.parent.name, i.name) not in done]
    print(f"{len(work)} cases to run, {len(done)} already in {args.out}", file=sys.stderr)
    with get_context("spawn").Pool(max(1, args.jobs), initializer=init_worker, initargs=(1,)) as pool:
        for got in tqdm(pool.imap_unordered(partial(_case, ways=ways), work), total=len(work), desc="cases"):
            rows += got
            if args.out is not None:
                with args.out.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in got)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
