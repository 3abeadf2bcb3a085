"""Does a session's cost stay bounded as its inputs grow? Clicks, objects, box size, slices, sessions.

The project's rule: cost must stay bounded as inputs grow (slices, box size, objects, clicks,
sessions); the plan's cost is printed before long work and memory stays flat in long sessions.
Each part measures one input growing, with the bundled LiteMedSAM on the default backend
(``load_model()``) and real volumes of ``../shared/data``, and prints a table whose ratios are
against the first (smallest) case of the same run:

* ``clicks``: one hippocampus MR session (3D box of label 1, propagated), then ``--clicks``
  corrective 3D clicks (``add_click``, random voxels of the box, the sign from the truth), one
  ``undo`` after every ``--undo-every``-th; per block of clicks: ms per click, RSS, undo steps,
  clicks held, bytes of the click layers the undo history holds.
* ``objects``: 1, 2, 4, ... ``--objects`` 3D boxes on one volume (hippocampus MR, or ``--objects-case brats``:
  tiles of the volume, object 1 the label's box), ``--object-clicks`` clicks on object 1 after each count
  (then undone): ms per click must not grow with the others.
* ``box``: the lung CT (512 x 512 x 48), a small 3D box (its mass) against a whole-slice box over the
  same slices: propagation seconds, ms per click (the walker's window is bounded), plan lines.
* ``slices``: the lung CT tiled along z to 300 slices against the original 48: the same 3D box (time
  must not grow with the volume), then ``--ct300-slices`` of the 300 (peak RSS in a child process;
  the embedding cache is bounded by the machine's share, ``predict.encoder.cache_budget``).
* ``sessions``: ``--sessions`` sessions opened, used (3D box, propagate, 2 clicks) and closed in
  one process: RSS after each tenth must stay flat.

Usage (about 4-5 minutes on one thread)::

    MEDISAM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/session_growth.py
    python benchmarks/session_growth.py --parts clicks --clicks 1000 --undo-every 3   # a longer session
    python benchmarks/session_growth.py --parts slices --ct300-slices 300              # the whole 300-slice box
    python benchmarks/session_growth.py --parts objects,sessions --objects-case brats --sessions 50
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PARTS = ("clicks", "objects", "box", "slices", "sessions")


def rss_mib() -> float:
    """The process's resident set now (MiB)."""
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def peak_mib() -> float:
    """The process's peak resident set (MiB, Linux ``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print one markdown table."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    sys.stdout.flush()


def ratio(value: float, first: float) -> str:
    return f"{value / first:.2f}x" if first else "-"


def read(path: Path):  # noqa: ANN201 - MedicalImage
    from medisam.io import read_image

    return read_image(path)


def hippocampus():  # noqa: ANN201 - (image, truth)
    root = DATA / "msd_task04_hippocampus"
    path = sorted((root / "imagesTr").glob("*_0000.nii.gz"))[0]
    return read(path), read(root / "labelsTr" / path.name.replace("_0000", "")).array


def brats():  # noqa: ANN201 - (FLAIR image, truth)
    root = DATA / "brats2015_deepmedic"
    path = sorted((root / "imagesTr").glob("*_0000.nii.gz"))[0]
    return read(path), read(root / "labelsTr" / path.name.replace("_0000", "")).array


def lung():  # noqa: ANN201 - (image, truth)
    root = DATA / "pyradiomics_lung_ct"
    path = sorted((root / "imagesTr").glob("*_0000.nii.gz"))[0]
    return read(path), read(root / "labelsTr" / path.name.replace("_0000", "")).array


def extent(mask: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """Inclusive ``(x0, y0, z0, x1, y1, z1)`` voxel box of a mask."""
    z, y, x = np.nonzero(mask)
    return int(x.min()), int(y.min()), int(z.min()), int(x.max()), int(y.max()), int(z.max())


def random_clicks(truth: np.ndarray, box: tuple[int, ...], n: int, seed: int = 0) -> list[tuple[tuple[int, ...], bool]]:
    """``n`` voxels of the 3D box (uniform), each positive where ``truth`` holds it."""
    rng = np.random.default_rng(seed)
    x0, y0, z0, x1, y1, z1 = box
    zyx = np.stack([rng.integers(z0, z1 + 1, n), rng.integers(y0, y1 + 1, n), rng.integers(x0, x1 + 1, n)], axis=1)
    return [(tuple(int(v) for v in p), bool(truth[tuple(p)])) for p in zyx]


def history_layer_bytes(session) -> int:  # noqa: ANN001
    """Bytes of the distinct 3D click layers held by the prompts and every undo snapshot."""
    seen: dict[int, int] = {}
    for objects in (session.store.objects, *session.store.history):
        for state in objects.values():
            if state.edit is not None:
                seen[id(state.edit.mask)] = state.edit.mask.nbytes
    return sum(seen.values())


def clicks_held(session) -> int:  # noqa: ANN001
    return sum(len(s.clicks3d) for s in session.store.objects.values())


def quiet(fn, *args, **kw):  # noqa: ANN001, ANN201
    """``fn`` with its stderr (plan lines, progress bars) captured; returns (value, stderr text)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        value = fn(*args, **kw)
    return value, err.getvalue()


class DistanceCount:
    """Counts the walker's per-click distance maps (``click_refine.squared_distance``) and their voxels: the
    click's work that would grow with the clicks held, measured without a clock (a shared machine's timings vary)."""

    def __init__(self) -> None:
        from medisam.predict import click_refine

        self.module, self.real = click_refine, click_refine.squared_distance
        self.calls = self.voxels = 0
        click_refine.squared_distance = self

    def __call__(self, shape, zyx, spacing):  # noqa: ANN001, ANN204
        self.calls += 1
        self.voxels += int(np.prod(shape))
        return self.real(shape, zyx, spacing)

    def take(self) -> tuple[int, int]:
        """``(calls, voxels)`` since the last take."""
        out, self.calls, self.voxels = (self.calls, self.voxels), 0, 0
        return out


# ------------------------------------------------------------------ parts
def part_clicks(model, args) -> None:  # noqa: ANN001
    from medisam.predict import open_session

    image, truth = hippocampus()
    obj = truth == 1
    box = extent(obj)
    session = open_session(model, image)
    session.add_box3d(box, obj_id=1)
    session.propagate(progress=False)
    clicks = random_clicks(obj, box, args.clicks)
    blocks = sorted({b for b in (10, 50, 100, 150, 200, 400, 700, 1000) if b < args.clicks} | {args.clicks})
    rows, start, t_block, first = [], 0, 0.0, None
    rss0 = rss_mib()
    count = DistanceCount()
    for i, (zyx, positive) in enumerate(clicks, 1):
        t0 = time.perf_counter()
        session.add_click(zyx, positive, obj_id=1)
        if i % args.undo_every == 0:
            session.undo()
        t_block += time.perf_counter() - t0
        if i in blocks:
            ms = 1000 * t_block / (i - start)
            first = first or ms
            rss = rss_mib()
            maps, voxels = count.take()
            rows.append([f"{start + 1}-{i}", f"{ms:.0f}", ratio(ms, first), f"{maps / (i - start):.1f}",
                         f"{voxels / (i - start) / 1e3:.0f}", f"{rss:.0f}", f"{rss - rss0:+.0f}",
                         session.can_undo, clicks_held(session), f"{history_layer_bytes(session) / 2**20:.2f}",
                         f"{session.store.retained_bytes() / 2**20:.1f}"])
            start, t_block = i, 0.0
    table(f"clicks: hippocampus {image.array.shape}, label 1 box {box}, undo after every {args.undo_every}th click",
          ["clicks", "ms/click", "x first", "distance maps/click", "their kvoxels/click", "RSS MiB", "RSS vs start",
           "undo steps", "clicks held", "click layers in history MiB", "runs MiB"], rows)


def brain_tiles(truth: np.ndarray, image, n: int) -> list[tuple[int, ...]]:  # noqa: ANN001
    """``n`` 3D boxes tiling the brain (non-zero voxels) on a grid; box 1 is the tumour's."""
    boxes = [extent(truth > 0)]
    x0, y0, z0, x1, y1, z1 = extent(image.array != 0)
    side = int(np.ceil(np.sqrt(max(n - 1, 1))))
    dz = max(4, (z1 - z0) // 6)
    zc = (z0 + z1) // 2
    for k in range(n - 1):
        i, j = divmod(k, side)
        bx = x0 + (x1 - x0) * j // side
        by = y0 + (y1 - y0) * i // side
        boxes.append((bx, by, zc - dz, bx + (x1 - x0) // side - 2, by + (y1 - y0) // side - 2, zc + dz))
    return boxes


def part_objects(model, args) -> None:  # noqa: ANN001
    from medisam.predict import open_session

    image, truth = brats() if args.objects_case == "brats" else hippocampus()
    obj = truth > 0
    counts = [c for c in (1, 2, 4, 8, 16, 32, 64) if c <= args.objects]
    boxes = brain_tiles(truth, image, counts[-1])
    clicks = random_clicks(obj, boxes[0], args.object_clicks, seed=1)
    session = open_session(model, image)
    rows, first, added = [], None, 0
    for count in counts:  # objects are added to the one session; the clicks on object 1 are undone each time
        t0 = time.perf_counter()
        for k in range(added + 1, count + 1):
            session.add_box3d(boxes[k - 1], obj_id=k)
        session.propagate(progress=False)
        added, start = count, time.perf_counter() - t0
        rss = rss_mib()
        t0 = time.perf_counter()
        for zyx, positive in clicks:
            session.add_click(zyx, positive, obj_id=1)
        ms = 1000 * (time.perf_counter() - t0) / len(clicks)
        t0 = time.perf_counter()
        session.label_map()
        label_ms = 1000 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in clicks:
            session.undo()
        undo_ms = 1000 * (time.perf_counter() - t0) / len(clicks)
        first = first or ms
        rows.append([count, f"{start:.1f}", f"{ms:.0f}", ratio(ms, first), f"{undo_ms:.0f}", f"{label_ms:.0f}",
                     f"{rss_mib() - rss:+.0f}", len(session.predictor.cache)])
    table(f"objects: {args.objects_case} {image.array.shape}, {args.object_clicks} clicks on object 1 (its label box) "
          "after each count, then undone",
          ["objects", "new boxes s", "ms/click on obj 1", "x first", "undo ms", "label map ms", "RSS over clicks MiB",
           "cache entries"], rows)


def box_row(model, image, truth, box, name: str, n_clicks: int) -> list[object]:  # noqa: ANN001
    from medisam.predict import open_session

    session = open_session(model, image)
    t0 = time.perf_counter()
    session.add_box3d(box, obj_id=1)
    plan = session.plan_lines()
    _, err = quiet(session.propagate)
    seconds = time.perf_counter() - t0
    clicks = random_clicks(truth, box, n_clicks, seed=2)
    t0 = time.perf_counter()
    for zyx, positive in clicks:
        session.add_click(zyx, positive, obj_id=1)
    ms = 1000 * (time.perf_counter() - t0) / n_clicks
    printed = any(line in err for line in plan) if plan else False
    return [name, str(box), f"{seconds:.1f}", len(session.encoded_planes), f"{ms:.0f}",
            "yes" if printed else "no", (plan[0][:90] + "...") if plan else "-"]


def part_box(model, args) -> None:  # noqa: ANN001
    image, truth = lung()
    small = extent(truth > 0)
    h, w = image.array.shape[1:]
    whole = (0, 0, small[2], w - 1, h - 1, small[5])
    rows = [box_row(model, image, truth > 0, small, "mass", args.box_clicks),
            box_row(model, image, truth > 0, whole, "whole slice", args.box_clicks)]
    table(f"box size: lung CT {image.array.shape}, the same slices {small[2]}..{small[5]}",
          ["box", "3D box", "propagate s", "planes encoded", "ms/click", "plan printed", "plan (first line)"], rows)


def ct300(image, slices: int):  # noqa: ANN001, ANN201
    reps = int(np.ceil(slices / image.array.shape[0]))
    return image.with_array(np.concatenate([image.array] * reps, axis=0)[:slices])


def child_ct300(box_slices: int) -> None:
    """Child process: a ``box_slices``-slice 3D box propagated in the 300-slice CT; prints JSON."""
    import medisam
    from medisam.predict import open_session
    from medisam.predict.encoder import cache_budget

    model = medisam.load_model()
    image, truth = lung()
    big = ct300(image, 300)
    x0, y0, _, x1, y1, _ = extent(truth > 0)
    lo = 150 - box_slices // 2
    session = open_session(model, big)
    t0 = time.perf_counter()
    session.add_box3d((x0, y0, max(0, lo), x1, y1, min(299, lo + box_slices - 1)))
    plan = session.plan_lines()
    _, err = quiet(session.propagate)
    cache = session.predictor.cache
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mib": peak_mib(),
                      "planes": len(session.encoded_planes),
                      "cache_mib": cache.nbytes / 2**20, "cache_max_mib": cache.max_bytes / 2**20,
                      "budget_mib": cache_budget() / 2**20, "printed": bool(plan) and plan[0] in err,
                      "plan": plan[0] if plan else ""}))


def part_slices(model, args) -> None:  # noqa: ANN001
    from medisam.predict import open_session

    image, truth = lung()
    x0, y0, z0, x1, y1, z1 = extent(truth > 0)
    rows, first = [], None
    for n in (image.array.shape[0], 300):
        vol = ct300(image, n)
        session = open_session(model, vol)
        t0 = time.perf_counter()
        session.add_box3d((x0, y0, z0, x1, y1, z1), obj_id=1)
        quiet(session.propagate)
        seconds = time.perf_counter() - t0
        first = first or seconds
        rows.append([f"{n} slices, the mass's box ({z1 - z0 + 1} slices)", f"{seconds:.1f}", ratio(seconds, first),
                     len(session.encoded_planes), "-", "-"])
        del session
    out = subprocess.run([sys.executable, __file__, "--child-ct300", str(args.ct300_slices)], capture_output=True,
                         text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    rows.append([f"300 slices, a {args.ct300_slices}-slice box (child)", f"{r['seconds']:.1f}", "-", r["planes"],
                 f"{r['peak_mib']:.0f}", f"{r['cache_mib']:.0f} of {r['cache_max_mib']:.0f} "
                 f"(budget {r['budget_mib']:.0f}); plan printed: {'yes' if r['printed'] else 'no'}"])
    table(f"slices: lung CT tiled along z ({image.array.shape[1]}x{image.array.shape[2]}); plan: {r['plan'][:100]}",
          ["volume", "propagate s", "x first", "planes encoded", "peak RSS MiB", "embedding cache MiB"], rows)


def part_sessions(model, args) -> None:  # noqa: ANN001
    from medisam.predict import open_session

    image, truth = hippocampus()
    obj = truth == 1
    box = extent(obj)
    clicks = random_clicks(obj, box, 2, seed=3)
    rows, rss0, t_block = [], None, 0.0
    every = max(1, args.sessions // 5)
    for i in range(1, args.sessions + 1):
        t0 = time.perf_counter()
        session = open_session(model, image)
        session.add_box3d(box, obj_id=1)
        session.propagate(progress=False)
        for zyx, positive in clicks:
            session.add_click(zyx, positive, obj_id=1)
        session.label_map()
        del session
        t_block += time.perf_counter() - t0
        if i == 1 or i % every == 0:
            rss = rss_mib()
            rss0 = rss0 or rss
            rows.append([i, f"{1000 * t_block / (1 if i == 1 else every):.0f}", f"{rss:.0f}", f"{rss - rss0:+.0f}"])
            t_block = 0.0
    table(f"sessions: {args.sessions} opened, used and closed in one process (hippocampus {image.array.shape})",
          ["sessions", "ms/session", "RSS MiB", "RSS vs first"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--clicks", type=int, default=200, help="clicks of the long session")
    ap.add_argument("--undo-every", type=int, default=5, help="one undo after every Nth click")
    ap.add_argument("--objects", type=int, default=16, help="most objects (1, 2, 4, ... up to it)")
    ap.add_argument("--objects-case", choices=("hippocampus", "brats"), default="hippocampus",
                    help="the volume of the objects part (brats: FLAIR, slower)")
    ap.add_argument("--object-clicks", type=int, default=5, help="clicks on object 1 per object count")
    ap.add_argument("--box-clicks", type=int, default=3, help="clicks per box size")
    ap.add_argument("--ct300-slices", type=int, default=30, help="slices of the 3D box in the 300-slice CT")
    ap.add_argument("--sessions", type=int, default=20, help="sessions opened and closed")
    ap.add_argument("--child-ct300", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_ct300:
        child_ct300(args.child_ct300)
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    import medisam

    model = medisam.load_model()
    print(f"model {model.name}, backend {getattr(model, 'backend', 'torch')}, "
          f"precision {getattr(model, 'precision', 'fp32')}")
    for part in parts:
        t0 = time.perf_counter()
        globals()[f"part_{part}"](model, args)
        print(f"({part}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
