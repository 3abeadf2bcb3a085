"""What the model alone gives a 3D set with the truth's tight box on every slice of every class (issue 14).

The CVPR25 protocol starts from one box per class; every box strategy, and every click that re-prompts
the model, asks it the same kind of question. Here it is asked the best one: on every slice (along the
session's axis) holding a class, the tight 2D box of that class's true voxels there, decoded on the
slice the session shows (its display and channel; on a CT in the window the class's 3D box picks from
its voxels, as the protocol's 3D-box start encodes it). No propagation, no clicks, no walker. Where
this ceiling lies below a target, no box or re-prompting rule with this model reaches it; what gains
more must come from elsewhere (the 3D click walker).

    python benchmarks/true_box_ceiling.py ../shared/data/brats2015_deepmedic [--channel 1]

Prints per case the DSC of each class's own mask and of the label map (the smaller mask painted on
top, as the sessions do), and the mean over cases of the label map's mean over classes.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from medisam.bench import cvpr25
from medisam.bench.datasets import DatasetOptions, iter_cases
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.predict.contract import paint_order
from medisam.prompting import clicks3d


def true_box_masks(session, predictor: Predictor, truth: np.ndarray, classes: list[int]) -> dict[int, np.ndarray]:
    """Each class's mask from the tight box of its true voxels on every slice of the session's axis
    (``truth`` as the session's planes see it: ``(slices, rows, cols)``)."""
    masks = {c: np.zeros(truth.shape, dtype=bool) for c in classes}
    for t in tqdm(np.nonzero(np.isin(truth, classes).any(axis=(1, 2)))[0], desc="slices", leave=False):
        predictor.set_display_image(session.plane_display(int(t)))
        for c in classes:
            ys, xs = np.nonzero(truth[t] == c)
            if ys.size:
                box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                masks[c][t] = predictor.predict(box=box).masks[0]
    return masks


def class_windows(session, truth: np.ndarray, classes: list[int]) -> dict[tuple[float, float] | None, list[int]]:
    """The classes grouped by the window their 3D box is encoded in (:meth:`box_window`: a CT's box
    picks its own; None, the session's display, elsewhere), so that each group's slices encode once."""
    boxes = clicks3d.class_boxes(truth)
    groups: dict[tuple[float, float] | None, list[int]] = {}
    for c in classes:
        groups.setdefault(session.box_window(boxes[c]), []).append(c)
    return groups


def painted(masks: dict[int, np.ndarray]) -> np.ndarray:
    """The label map of ``masks`` in the sessions' paint order (:func:`paint_order`: the smaller on top)."""
    labels = np.zeros(next(iter(masks.values())).shape, dtype=np.uint8)
    for c in paint_order({c: int(m.sum()) for c, m in masks.items()}):
        labels[masks[c]] = c
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a 3D labelled set (e.g. ../shared/data/brats2015_deepmedic)")
    ap.add_argument("--channel", type=int, help="image channel of multi-channel sets (as medisam bench --channel)")
    ap.add_argument("--limit", type=int, default=0, help="first N cases by id (0: all)")
    args = ap.parse_args()
    model = load_model("litemedsam")
    predictor = Predictor(model)
    means = []
    # cases load one at a time, in case-id order (the first --limit only)
    for case in iter_cases(args.data, DatasetOptions(channel=args.channel), max_cases=args.limit or None):
        truth = case.labels.array
        classes = cvpr25.truth_classes(truth)
        session = cvpr25.case_session(model, case, guides=False)
        # the truth as the session's planes show it: (slices, rows, cols)
        planes = np.stack([session.geometry.take(truth, t) for t in range(session.num_slices)])
        masks: dict[int, np.ndarray] = {}
        for window, group in class_windows(session, truth, classes).items():
            shown_in = session if window is None else cvpr25.case_session(model, case, window=window, guides=False)
            masks.update(true_box_masks(shown_in, predictor, planes, group))
        labels = painted(masks)
        own = [dice(masks[c], planes == c) for c in classes]
        shown = [dice(labels == c, planes == c) for c in classes]
        means.append(float(np.mean(shown)))
        print(f"{case.case_id}: classes {classes}, own " + " ".join(f"{v:.3f}" for v in own)
              + ", label map " + " ".join(f"{v:.3f}" for v in shown) + f", mean {means[-1]:.3f}", flush=True)
    print(f"mean over {len(means)} cases (label map): {np.mean(means):.3f}")


if __name__ == "__main__":
    main()
