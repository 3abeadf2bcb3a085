"""How much of a 3D set's CVPR25 score is lost to voxels that several objects hold (issue 14).

The label map paints the smaller object on top where objects overlap (``session.paint_order``). This
script runs the protocol's 3D-box start and its 5 click steps (the session's own clicks, placed on
its own label map, the default walker) and after each step scores, beside the label map, an oracle
that gives each voxel held by several objects to the true class where that class is one of its
holders. The oracle's gain is what a perfect rule for shared voxels could add; where it is small,
the objects' own masks are what fall short.

    python benchmarks/overlap_oracle.py ../shared/data/brats2015_deepmedic --starts runs/starts_b

``--starts``: the folder ``benchmarks/walker_params.py --starts`` keeps (each case's start is made
there when missing, and reused). Prints per case and the means: DSC at each step and the DSC AUC.

A third row, the intensity ceiling, bounds every rule that decides shared voxels by their
intensities: a Gaussian per class over all the case's channels (FLAIR and T1c on BraTS), fitted on
that class's TRUE voxels, and each shared voxel to the holder most likely to have produced it. No
rule without the truth has better class statistics than these.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from walker_params import protocol_start  # benchmarks/: run as a script

from medisam.bench import cvpr25
from medisam.bench.datasets import DatasetOptions, iter_cases
from medisam.metrics_basic import dice
from medisam.models import load_model


def oracle_labels(labels: np.ndarray, volumes: dict[int, np.ndarray], truth: np.ndarray) -> np.ndarray:
    """``labels`` with every voxel held by two or more of ``volumes`` given to the true class where that
    class holds it (elsewhere the label map's choice stays)."""
    held = sum(v.astype(np.uint8) for v in volumes.values())
    out = labels.copy()
    for c, v in volumes.items():
        out[(held > 1) & v & (truth == c)] = c
    return out


def intensity_ceiling_labels(labels: np.ndarray, volumes: dict[int, np.ndarray], truth: np.ndarray,
                             channels: list[np.ndarray]) -> np.ndarray:
    """``labels`` with every voxel held by two or more of ``volumes`` given to the holder whose
    Gaussian (over ``channels``, fitted on the class's true voxels) gives it the highest likelihood."""
    held = sum(v.astype(np.uint8) for v in volumes.values()) > 1
    x = np.stack([ch[held] for ch in channels], axis=-1).astype(np.float64)
    foreground = np.stack([ch[truth > 0] for ch in channels], axis=-1).astype(np.float64)
    scores = []
    for c, v in volumes.items():
        sample = np.stack([ch[truth == c] for ch in channels], axis=-1).astype(np.float64)
        spread = sample if len(sample) > len(channels) else foreground  # a class of a few voxels: all classes' spread
        cov = np.atleast_2d(np.cov(spread.T)) + 1e-6 * np.eye(len(channels))
        d = x - sample.mean(axis=0)
        loglik = -0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) - 0.5 * np.linalg.slogdet(cov)[1]
        scores.append(np.where(v[held], loglik, -np.inf))
    out = labels.copy()
    out[held] = np.asarray(list(volumes))[np.argmax(np.stack(scores, axis=-1), axis=-1)]
    return out


def case_curves(session, truth: np.ndarray, classes: list[int], labels: np.ndarray,
                channels: list[np.ndarray]) -> dict[str, list[float]]:
    """Mean DSC over ``classes`` at the start and after each click step: the label map's, the
    oracle's and the intensity ceiling's (``channels``: the case's images)."""
    curves: dict[str, list[float]] = {"label map": [], "oracle": [], "intensity ceiling": []}
    for k in range(cvpr25.N_CLICKS + 1):
        if k:
            labels = cvpr25.click_steps(session, truth, classes, labels, n_clicks=1)[0].labels
        volumes = {c: session.object_volume(c) for c in classes}
        for name, shown in (("label map", labels), ("oracle", oracle_labels(labels, volumes, truth)),
                            ("intensity ceiling", intensity_ceiling_labels(labels, volumes, truth, channels))):
            curves[name].append(float(np.mean([dice(shown == c, truth == c) for c in classes])))
    return curves


def _row(name: str, values: list[float]) -> str:
    return f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {cvpr25.auc(values):.3f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a 3D labelled set (e.g. ../shared/data/brats2015_deepmedic)")
    ap.add_argument("--starts", type=Path, help="folder of kept starts (benchmarks/walker_params.py --starts)")
    ap.add_argument("--limit", type=int, default=0, help="first N cases by id (0: all)")
    args = ap.parse_args()
    if args.starts is not None:
        args.starts.mkdir(parents=True, exist_ok=True)
    model = load_model("litemedsam")
    header = "| case, painting | DSC 0 | 1 | 2 | 3 | 4 | 5 | DSC AUC |"
    lines, means = [header, "|---" * 8 + "|"], {"label map": [], "oracle": [], "intensity ceiling": []}
    # cases load one at a time, in case-id order (the first --limit only)
    for case in iter_cases(args.data, DatasetOptions(), max_cases=args.limit or None):
        truth = case.labels.array
        classes = cvpr25.truth_classes(truth)
        session = cvpr25.case_session(model, case)
        first = protocol_start(session, truth, None if args.starts is None else args.starts / f"{case.case_id}.pkl")
        channels = [np.asarray(case.image.array)] + [np.asarray(g.array) for g in case.read_guides()]
        curves = case_curves(session, truth, classes, first.labels, channels)
        rows = [_row(f"{case.case_id}, {name}", values) for name, values in curves.items()]
        for name, values in curves.items():
            means[name].append(values)
        lines += rows
        print(*rows, sep="\n", flush=True)
    lines += [_row(f"mean of {len(means['label map'])}, {k}", list(np.mean(v, axis=0))) for k, v in means.items()]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
