"""The CVPR 2025 interactive-3D protocol ("Foundation Models for Interactive 3D Biomedical
Image Segmentation"), as its public evaluation code runs it, on one case, all classes at once
(one difference: NSD takes each axis's own spacing; the challenge's script, fed its npz files'
ITK-order spacing, gives a thick volume's slice spacing to x: ``medisam.io.read_npz``).

* Step 0, per class: the start prompt. ``cvpr25`` (the protocol): the 2D box on the class's
  median foreground slice, grown by ``randint(0, 6) * size / 256`` (seed 2025), plus its z
  range (:func:`medisam.prompting.clicks3d.protocol_box`), given to the session as the 3D
  box of that x/y extent over that z range (``add_box3d``). ``cvpr25-box3d`` (our variant): the class's 3D voxel extent
  (``add_box3d``, tri-planar by default).
* Steps 1..5: one click per class with an error, all placed on the previous step's label
  map (:func:`~medisam.prompting.clicks3d.corrective_click`), then applied together
  (:func:`medisam.predict.refine3d.refine_with_click`).
* Multi-channel cases (nnU-Net ``_000C`` files, e.g. FLAIR and T1c): the model sees the
  bench's ``--channel``, the clicks' walker every channel (``VolumeSession(guides=...)``).
* Metrics per step: DSC = mean over the classes of the truth of each class's Dice; NSD at
  2 mm likewise, set to 0 when that DSC <= 0.2; DSC AUC / NSD AUC = the trapezoid over the
  5 click steps (unit spacing, so at most 4); seconds per class = the model's time over all
  six steps / classes (click simulation and metrics excluded, as the challenge times only
  the container; the challenge allows 90 s).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from medisam.bench.metrics import DEFAULT_NSD_TOLERANCE_MM, hd95, nsd
from medisam.errors import PromptError
from medisam.label_boxes import class_crops
from medisam.metrics_basic import dice
from medisam.prompting import clicks3d
from medisam.prompting.strategies import ProtocolStrategy
from medisam.prompts import Box3D

if TYPE_CHECKING:
    from medisam.predict.click_refine import RefineParams

STARTS = {"cvpr25": "box2d", "cvpr25-box3d": "box3d"}
N_CLICKS = 5
NSD_MIN_DSC = 0.2
TIME_LIMIT_S = 90.0
#: why a SAM 2 model does not run ``cvpr25[-box3d]-ref`` (:func:`medisam.bench.evaluate.sam2_refusal`)
SAM2_REF_REASON = ("its clicks are the slice clicks already (no 3D walker), so the reference run would repeat them, "
                   "and its undo drops the tracked slices")


@dataclass
class Step:
    """The label map after one step (0 = start prompt, k = k-th click) and its cost."""

    step: int
    labels: np.ndarray
    seconds: float
    prompts: dict[int, Any] = field(default_factory=dict)  # class -> prompt / click given at this step
    undo_depth: int = 0  # the session's undo steps after this step (run_with_reference undoes back to it)


def truth_classes(truth: np.ndarray) -> list[int]:
    """The classes (non-zero labels) of a label map, ascending."""
    return [int(c) for c in np.unique(truth) if c != 0]


def auc(values: list[float], n_clicks: int = N_CLICKS) -> float:
    """Trapezoid over the last ``n_clicks`` values at unit spacing (the protocol's AUC)."""
    v = np.asarray(values[-n_clicks:], dtype=float)
    return float(np.sum((v[1:] + v[:-1]) / 2.0))


def _start(session, start: str, truth: np.ndarray, classes: list[int]) -> dict[int, Any]:
    prompts: dict[int, Any] = {}
    if start == "box2d":
        for c, b in clicks3d.protocol_boxes(truth, classes).items():
            # segmented as a 3D box (tri-planar, re-acquired on every slice of the range) instead of
            # a single-slice prompt whose stop rules end the run early; only the given box and range
            # are used, and the box bounds the object on its own slice only (drawn_on)
            session.add_box3d(Box3D(b.x_min, b.y_min, b.z_min, b.x_max, b.y_max, b.z_max), obj_id=c, drawn_on=b.z_mid)
            prompts[c] = {"slice": b.z_mid, "box": [b.x_min, b.y_min, b.x_max, b.y_max], "z": [b.z_min, b.z_max]}
    elif start == "box3d":
        boxes = clicks3d.class_boxes(truth)
        for c in classes:
            b = boxes[c]
            session.add_box3d(b, obj_id=c)
            prompts[c] = {"box3d": [b.x0, b.y0, b.z0, b.x1, b.y1, b.z1]}
    else:
        raise PromptError(f"unknown start {start!r}; use box2d or box3d")
    for _ in session.iter_propagate():
        pass
    return prompts


def run_protocol(session, truth: np.ndarray, start: str = "box2d", n_clicks: int = N_CLICKS,
                 method: str | None = None) -> list[Step]:
    """Run the protocol on a fresh session over the case's volume; ``truth`` is its label map.

    ``method``: how clicks act (:func:`medisam.predict.refine3d.refine_with_click`; None: the default).
    """
    truth = np.asarray(truth)
    classes = truth_classes(truth)
    if not classes:
        raise PromptError("the label map has no class to segment")
    t0 = time.perf_counter()
    prompts = _start(session, start, truth, classes)
    first = Step(0, session.label_map().array.copy(), time.perf_counter() - t0, prompts, session.can_undo)
    return [first, *click_steps(session, truth, classes, first.labels, n_clicks, method)]


def click_steps(session, truth: np.ndarray, classes: list[int], labels: np.ndarray, n_clicks: int = N_CLICKS,
                method: str | None = None, params: RefineParams | None = None) -> list[Step]:
    """Steps 1..n_clicks from the label map ``labels`` the session shows now (``params``: the
    walker's weights, :class:`~medisam.predict.click_refine.RefineParams`; None: the defaults)."""
    from medisam.predict.refine3d import refine_with_click

    steps: list[Step] = []
    for k in range(1, n_clicks + 1):
        seg = steps[-1].labels if steps else labels
        clicks = clicks3d.class_clicks(seg, truth, classes)
        t0 = time.perf_counter()
        given = {}
        for c, click in clicks.items():
            if click is not None:
                refine_with_click(session, click.zyx, click.positive, obj_id=c, method=method, params=params)
                given[c] = {"zyx": list(click.zyx), "fg": click.positive}
        steps.append(Step(k, session.label_map().array.copy(), time.perf_counter() - t0, given))
    return steps


def run_with_reference(session, truth: np.ndarray, start: str, reference: str = "slice",
                       n_clicks: int = N_CLICKS) -> tuple[list[Step], list[Step]]:
    """The protocol with the default clicks, then -- undone back to the same start -- with
    ``reference`` clicks: two click sequences from ONE start (the start's cost counted in both)."""
    steps = run_protocol(session, truth, start, n_clicks)
    first = steps[0]
    while session.can_undo > first.undo_depth:
        session.undo()
    if not np.array_equal(session.label_map().array, first.labels):
        raise PromptError("undoing the clicks did not restore the start's label map")
    classes = truth_classes(truth)
    return steps, [first, *click_steps(session, truth, classes, first.labels, n_clicks, reference)]


def class_scores(truth: np.ndarray, seg: np.ndarray, spacing, tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                 crops: dict[int, tuple[slice, ...] | None] | None = None) -> dict[int, tuple[float, float]]:
    """``{class: (DSC, NSD)}`` of one step (``spacing`` in ITK order, x first); NSD 0 for every
    class when the mean DSC <= 0.2 (the protocol's rule, applied to the case, so that the means
    of :func:`score_steps` follow it). ``crops``: :func:`step_crops` of the step, when the caller has them."""
    # each class compared on its boxes' union only (both metrics ignore what lies outside)
    crops = step_crops(truth, seg) if crops is None else crops
    pairs = {c: (seg[box] == c, truth[box] == c) for c, box in crops.items()}
    dscs = {c: dice(*pair) for c, pair in pairs.items()}
    if float(np.mean(list(dscs.values()))) <= NSD_MIN_DSC:
        return {c: (d, 0.0) for c, d in dscs.items()}
    return {c: (d, nsd(*pairs[c], spacing, tolerance_mm)) for c, d in dscs.items()}


def class_hd95(truth: np.ndarray, seg: np.ndarray, spacing,
               crops: dict[int, tuple[slice, ...] | None] | None = None) -> dict[int, float]:
    """``{class: HD95 in mm}`` of one step, on the same crops as :func:`class_scores` (NaN where
    the class's mask is empty). Not a protocol metric: the bench reports it for the final step."""
    crops = step_crops(truth, seg) if crops is None else crops
    return {c: hd95(seg[box] == c, truth[box] == c, spacing) for c, box in crops.items()}


def step_crops(truth: np.ndarray, seg: np.ndarray) -> dict[int, tuple[slice, ...] | None]:
    """Each truth class's crop for scoring one step's label map ``seg``: the union of its boxes in
    both maps (:func:`~medisam.label_boxes.class_crops`)."""
    return class_crops(seg, truth, truth_classes(truth))


def score_steps(steps: list[Step], truth: np.ndarray, spacing,
                tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> list[tuple[float, float]]:
    """``(DSC, NSD)`` per step: the means over the classes of :func:`class_scores`."""
    return [_means(class_scores(truth, s.labels, spacing, tolerance_mm)) for s in steps]


def _means(per_class: dict[int, tuple[float, float]]) -> tuple[float, float]:
    values = np.array(list(per_class.values()), dtype=float)
    return float(values[:, 0].mean()), float(values[:, 1].mean())


def case_session(model, case, window=None, guides: bool = True):  # noqa: ANN001, ANN201 - a bench Case -> session
    """The protocol's session on a bench ``case``: sliced along the volume's acquisition axis (a
    sagittal case's planes with square pixels; 3D prompts need no axis), the case's other channels
    as the 3D clicks' guides unless ``guides`` is False. The bench and its benchmarks build it here.

    A model that tracks with memory (SAM 2, MedSAM2) gets its own session
    (:func:`~medisam.predict.open_session`: frames along the same axis, no guides), whose
    clicks are its point prompts on the clicked frame, then its tracking again (the slice clicks)."""
    from medisam.predict import VolumeSession, open_session
    from medisam.predict.contract import tracks_with_memory
    from medisam.predict.volume import acquisition_axis

    axis = acquisition_axis(case.image.spacing_zyx)
    if tracks_with_memory(model):
        return open_session(model, case.image, axis=axis, window=window)
    return VolumeSession(model, case.image, axis=axis, window=window,
                         guides=case.read_guides() if guides else ())


def evaluate_case(case, predictor, strategy: str, window=None) -> list[dict[str, Any]]:
    """Result rows (one per step, target ``all``) of one bench case; the caller adds the ids. NSD is
    the protocol's, at 2 mm, whatever ``bench --nsd-tolerance`` gives the other strategies.

    ``cvpr25[-box3d]``: clicks as ``refine_with_click`` does by default (the 3D walker);
    ``...-slice``: the slice clicks (re-decode and re-propagate, the earlier behaviour);
    ``...-ref``: both from one start (rows of strategy ``cvpr25[-box3d]`` and ``...-slice``).
    A SAM 2 model has no 3D walker: its clicks are the slice clicks whatever the variant
    (:func:`case_session`), and ``...-ref`` is refused (:func:`medisam.bench.evaluate.sam2_refusal`).
    """
    if not case.image.is_volume:
        raise PromptError(f"strategy {strategy} needs a 3D volume; {case.case_id} is 2D")
    truth = case.labels.array
    base = strategy
    name = base.removesuffix("-ref").removesuffix("-slice")
    start = STARTS[name]
    # a cold embedding cache per run: the seconds per class must not profit from another strategy's encodings
    # the case's other channels guide the 3D clicks (the model sees the bench's --channel); the
    # slice clicks do not use them
    session = case_session(predictor.model, case, window, guides=not base.endswith("-slice"))
    if base.endswith("-ref") and not hasattr(session, "set_edits"):
        raise PromptError(f"{predictor.model.name} does not run {base}: {SAM2_REF_REASON}")
    if base.endswith("-ref"):
        steps, ref = run_with_reference(session, truth, start)
        runs = list(zip(ProtocolStrategy(base).row_names, (steps, ref)))
    else:
        runs = [(base, run_protocol(session, truth, start, method="slice" if base.endswith("-slice") else None))]
    rows = []
    for label, steps in runs:
        rows += step_rows(steps, truth, case, label)
    return rows


def step_rows(steps: list[Step], truth: np.ndarray, case, strategy: str,
              tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> list[dict[str, Any]]:
    """Result rows of one case's steps (one per step, target ``all``; :func:`protocol_table` reads
    them); ``per_class`` holds each class's DSC, NSD, voxels and name (:func:`class_table` reads it)."""
    classes = truth_classes(truth)
    names = {t.label: t.name for t in getattr(case, "targets", [])}
    voxels = dict(zip(*np.unique(truth, return_counts=True)))
    rows = []
    for s in steps:
        crops = step_crops(truth, s.labels)
        per_class = class_scores(truth, s.labels, case.image.spacing, tolerance_mm, crops)
        d, n = _means(per_class)
        detail = {str(c): {"name": names.get(c, f"label{c}"), "voxels": int(voxels[c]), "dsc": round(dc, 6),
                           "nsd": round(nc, 6)} for c, (dc, nc) in per_class.items()}
        hd = float("nan")
        if s is steps[-1]:  # the final step's HD95 (mm), per class and their mean over the classes
            per_hd = class_hd95(truth, s.labels, case.image.spacing, crops)
            for c, h in per_hd.items():
                detail[str(c)]["hd95"] = round(h, 4)
            # a class left empty has no HD95, and then neither has the case (NaN, counted as hd95_nan): the
            # mean over the classes found made a case that missed one look as close as one that found all
            hd = float(np.mean(list(per_hd.values()))) if per_hd else float("nan")
        rows.append({"target": "all", "target_id": "all", "label": "", "area": int((truth != 0).sum()),
                     "click": s.step, "dsc": d, "iou": float("nan"), "nsd": n, "hd95": hd,
                     "score": float("nan"), "time_s": round(s.seconds, 4), "strategy": strategy,
                     "prompt": json.dumps({"classes": len(classes),
                                           "prompts": {str(c): p for c, p in s.prompts.items()}},
                                          separators=(",", ":")),
                     "per_class": json.dumps(detail, separators=(",", ":"))})
    return rows


def protocol_table(df):
    """Per (dataset, model, strategy): mean DSC at each step, final NSD and HD95 (mm; the mean over the
    cases that have one, ``hd95_nan`` the cases that have none: a class left empty), AUCs, s/class, n cases.

    ``df``: the results of ``cvpr25*`` strategies (one row per case and step).
    """
    import pandas as pd

    rows = []
    for key, g in df.groupby(["dataset", "model", "strategy"]):
        per_case = []
        for _, c in g.groupby("case"):
            c = c.sort_values("click")
            n_classes = json.loads(c["prompt"].iloc[0]).get("classes", 1)
            dscs, nsds = list(c["dsc"]), list(c["nsd"])
            per_case.append({**{f"dsc{int(k)}": v for k, v in zip(c["click"], dscs)},
                             "nsd_final": nsds[-1], "hd95_final": float(c["hd95"].iloc[-1]),
                             "dsc_auc": auc(dscs), "nsd_auc": auc(nsds),
                             "s_per_class": float(c["time_s"].sum()) / max(1, n_classes)})
        m = pd.DataFrame(per_case)
        row = dict(zip(["dataset", "model", "strategy"], key))
        row.update(m.mean(numeric_only=True).to_dict())
        row["s_per_class_max"] = float(m["s_per_class"].max())
        row["hd95_nan"] = int(m["hd95_final"].isna().sum())
        row["cases"] = len(m)
        rows.append(row)
    cols = ["dataset", "model", "strategy", *[f"dsc{k}" for k in range(N_CLICKS + 1)], "nsd_final", "hd95_final",
            "hd95_nan", "dsc_auc", "nsd_auc", "s_per_class", "s_per_class_max", "cases"]
    out = pd.DataFrame(rows)
    return out[[c for c in cols if c in out.columns]]


def class_rows(df):
    """One row per case, step and class from the ``per_class`` column of protocol rows ``df``
    (dataset, model, strategy, case, class, name, voxels, click, dsc, nsd, hd95: the final step's only);
    None without any."""
    import pandas as pd

    if "per_class" not in df.columns:
        return None
    records = []
    for _, r in df.iterrows():
        if not isinstance(r["per_class"], str) or not r["per_class"]:
            continue
        for c, v in json.loads(r["per_class"]).items():
            records.append({"dataset": r["dataset"], "model": r["model"], "strategy": r["strategy"], "case": r["case"],
                            "class": int(c), "name": v["name"], "voxels": v["voxels"], "click": int(r["click"]),
                            "dsc": v["dsc"], "nsd": v["nsd"], "hd95": v.get("hd95", np.nan)})
    return pd.DataFrame(records) if records else None


def class_curve(df):
    """Mean, std and n of each class's DSC at each step (for the report's per-class plot); None
    without ``per_class`` scores. ``label`` names the line: dataset, strategy, class and name."""
    long = class_rows(df)
    if long is None:
        return None
    long["label"] = (long["dataset"].astype(str) + " " + long["strategy"].astype(str) + " "
                     + long["class"].astype(str) + " " + long["name"].astype(str))
    return (long.groupby(["model", "label", "click"])["dsc"].agg(["mean", "std", "size"]).reset_index()
            .rename(columns={"mean": "dsc_mean", "std": "dsc_std", "size": "n"}))


def class_table(df):
    """Per (dataset, model, strategy, class): mean DSC at each step over the cases holding that
    class, final NSD and HD95 (mm; ``hd95_nan``: cases where it was left empty), DSC AUC, cases and
    median voxels; None when no row has ``per_class``
    (results written before it existed)."""
    import pandas as pd

    long = class_rows(df)
    if long is None:
        return None
    rows = []
    for key, g in long.groupby(["dataset", "model", "strategy", "class"]):
        per_case = []
        for _, c in g.groupby("case"):
            c = c.sort_values("click")
            per_case.append({**{f"dsc{int(k)}": v for k, v in zip(c["click"], c["dsc"])},
                             "nsd_final": float(c["nsd"].iloc[-1]), "hd95_final": float(c["hd95"].iloc[-1]),
                             "dsc_auc": auc(list(c["dsc"])),
                             "voxels": int(c["voxels"].iloc[0])})
        m = pd.DataFrame(per_case)
        row = dict(zip(["dataset", "model", "strategy", "class"], key))
        row["name"] = g["name"].iloc[0]
        row.update(m.drop(columns="voxels").mean(numeric_only=True).to_dict())
        row["voxels_median"] = int(m["voxels"].median())
        row["hd95_nan"] = int(m["hd95_final"].isna().sum())
        row["cases"] = len(m)
        rows.append(row)
    cols = ["dataset", "model", "strategy", "class", "name", *[f"dsc{k}" for k in range(N_CLICKS + 1)], "nsd_final",
            "hd95_final", "hd95_nan", "dsc_auc", "voxels_median", "cases"]
    out = pd.DataFrame(rows)
    return out[[c for c in cols if c in out.columns]]
