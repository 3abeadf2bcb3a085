"""Memory of one interactive 3D session as its objects grow: the 3D-box start of every class of a
case (as ``medisam bench -p cvpr25-box3d`` starts it), then the protocol's 5 click steps; after each
class a row with the embedding cache's bytes and entries, the planes encoded, the RSS and its peak.

    python benchmarks/many_organs.py runs/sag --sagittal
    python benchmarks/session_memory.py runs/sag

The embedding cache is most of a many-organ session's memory (stop 49: docs/interactive3d.md, "Many
organs in a 512 x 512 CT"). The RSS includes the Python process (~0.7 GiB with torch and the model).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from medisam.bench import cvpr25
from medisam.bench.datasets import discover_cases
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.prompting import clicks3d


def rss_mib() -> float:
    """The resident set now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a 3D dataset folder (nnU-Net / Decathlon layout or npz)")
    ap.add_argument("--case", type=int, default=0, help="which case (index in case-id order)")
    ap.add_argument("--clicks", type=int, default=cvpr25.N_CLICKS, help="click steps after the starts")
    args = ap.parse_args(argv)
    model = load_model("litemedsam")
    case = discover_cases(args.data)[args.case].load()
    truth = case.labels.array
    session = cvpr25.case_session(model, case)
    cache = session.predictor.cache
    table = [f"case {case.case_id}: {truth.shape} voxels, spacing {case.image.spacing}",
             "| after | s | encoded planes | cache MiB | cache entries | RSS MiB | peak RSS MiB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]

    def row(what: str, seconds: float) -> None:
        table.append(f"| {what} | {seconds:.0f} | {len(session.encoded_planes)} | {cache.nbytes / 2**20:.0f} | "
                     f"{len(cache)} | {rss_mib():.0f} | {peak_mib():.0f} |")
        print(table[-1], flush=True)

    row("loaded", 0.0)
    boxes = clicks3d.class_boxes(truth)
    classes = cvpr25.truth_classes(truth)
    t0 = time.perf_counter()
    for c in classes:
        session.add_box3d(boxes[c], obj_id=c)
        for _ in session.iter_propagate():
            pass
        row(f"class {c} started", time.perf_counter() - t0)
    labels = np.asarray(session.label_map().array).copy()
    for k in range(1, args.clicks + 1):  # one row per click step: a long session's memory stays flat
        labels = cvpr25.click_steps(session, truth, classes, labels, 1)[0].labels
        dsc = np.mean([dice(labels == c, truth == c) for c in classes])
        row(f"click step {k} (DSC {dsc:.3f})", time.perf_counter() - t0)
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
