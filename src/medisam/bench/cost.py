"""What a benchmark run will cost, said before the work.

A 3D set's time is its encodings (80 % of a 2-core CPU's, docs/interactive3d.md), and the
strategies that start from a 3D box per class (``box3d`` with label targets, the ``cvpr25``
protocol family) encode what the planner plans for each class's box: counted here from the
label files with the planner's own arithmetic (:meth:`ViewPlan.encoded_planes`, no model),
on at most :data:`SAMPLE_CASES` cases per dataset (scaled to the rest), so that a large set's
estimate stays quick. Other strategies are counted in runs only.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Sequence

import numpy as np

from medisam.bench.datasets import CaseRef
from medisam.predict.propagation import PropagationConfig
from medisam.predict.view_plan import plan_for
from medisam.predict.volume import acquisition_axis
from medisam.prompting.clicks3d import class_boxes

log = logging.getLogger(__name__)

#: cases per dataset whose label boxes are read for the estimate (the rest are scaled)
SAMPLE_CASES = 20


def planned_start(strategy: str, targets: str | None) -> bool:
    """Whether ``strategy``'s start is a 3D box per class, whose encodings the planner counts."""
    return strategy.startswith("cvpr25") or (strategy == "box3d" and targets in (None, "label"))


def start_encodings(labels: np.ndarray, spacing_zyx: Sequence[float], config: PropagationConfig | None = None,
                    input_size: int = 256, shared: bool = True) -> int:
    """Encodings at most of every class's 3D-box start on one ``(Z, Y, X)`` label volume (along
    its acquisition axis, as the bench's sessions): the union of the classes' planned planes (a
    plane two classes share is encoded once: the cache), or their sum where each box sees the
    image in its own window (``shared`` False: a CT in HU, ``VolumeSession.box_windows``)."""
    config = config or PropagationConfig()
    spacing = tuple(float(s) for s in spacing_zyx)
    axis = acquisition_axis(spacing)
    plans = [plan_for(config, tuple(labels.shape), spacing, axis, box, input_size).encoded_planes()
             for box in class_boxes(labels).values()]
    return len(set().union(*plans)) if shared else sum(len(p) for p in plans)


def box_windows(ref: CaseRef, window=None, image=None) -> bool:  # noqa: ANN001 - a window preset or (width, level)
    """Whether the bench's session on ``ref`` gives each 3D box its own window (a CT in HU and no
    ``--window``: :attr:`~medisam.predict.axis_session.AxisSession.box_windows`); reads the image
    (unless given, a :class:`~medisam.io.MedicalImage`) only where the set's modality leaves it
    open (CT or none)."""
    from medisam.io.intensity import in_hounsfield

    if window is not None or (ref.options.modality or "OT").upper() not in ("CT", "OT"):
        return False
    image = image if image is not None else ref.load().image
    return in_hounsfield(image.array, image.modality)


def _labels_and_sharing(ref: CaseRef, window=None):  # noqa: ANN001, ANN202 - see box_windows
    """``(label volume or None, whether its boxes share planes)``: the label file alone where the
    case has one; a challenge npz holds its labels beside the image, so it is read whole."""
    from medisam.io import read_image

    if ref.npz:
        case = ref.load()
        labels, image = case.labels, case.image
    else:
        labels, image = read_image(ref.label_path), None
    if not labels.is_volume or labels.is_video:
        return None, True
    return labels, not box_windows(ref, window, image)


def plan_line(refs: Sequence[CaseRef], models: Sequence[str], strategies: Sequence[str], workers: int = 1,
              window=None) -> str:  # noqa: ANN001 - the bench's --window
    """One line: the runs, and the encodings of the 3D-box starts (and their time, where this
    machine's encoder was measured for every model: :func:`~medisam.models.speed_profile.encoding_time`,
    on the threads each of ``workers`` processes gets; ``window``: the bench's, see :func:`box_windows`)."""
    from medisam.bench.evaluate import ModelRef
    from medisam.models.runtime import resolve_threads
    from medisam.models.speed_profile import encoding_time

    runs = (f"bench plan: {_count(len(refs), 'case')} x {_count(len(models), 'model')} x "
            f"{_count(len(strategies), 'strategy', 'strategies')}")
    runs += _crop_encodings(strategies, len(refs) * len(models))
    planned = [s for s in strategies if any(planned_start(s, r.options.targets) for r in refs)]
    if not planned or not refs:
        return runs
    sampled = _sampled_encodings(refs, window)
    if sampled is None:
        return runs
    per_run, counted = sampled
    total = per_run * len(models) * len(planned)
    names = {ModelRef.parse(m).name for m in models}
    parallel = max(1, workers)
    threads = resolve_threads() if parallel == 1 else max(1, (os.cpu_count() or 1) // parallel)  # as the runner
    said = (encoding_time(total, names.pop(), threads=threads, parallel=parallel)  # the bench loads with auto
            if len(names) == 1 else None)
    # encodings alone: the decoder, the clicks and loading come on top (a hippocampus class: 17 s, of which
    # 14 s encoding and 3 s decoding, stop 69), and the host may be slower than at calibration
    time = f", {said}: encoding alone, decoding and loading add to it" if said else ""
    return (f"{runs}; the 3D-box starts of {', '.join(planned)} encode at most {total} planes{time} "
            f"(from the label boxes of {_count(counted, 'case')}, the planner's arithmetic)")


def _crop_encodings(strategies: Sequence[str], images: int) -> str:
    """The encodings everything mode's crop layers add (``everythingS-cropsN``: 1 + 4 + ... per image, not 1),
    for at most ``images`` (cases x models; volumes run no everything strategy), in words; "" without crops."""
    from medisam.prompting.crops import encodings

    said = []
    for name in strategies:
        m = re.search(r"^everything.*-crops(\d+)", name)
        if m:
            per = encodings(int(m.group(1)))
            said.append(f"{name} encodes {per} crops per image (up to {per * images} encodings, not {images})")
    return f"; {'; '.join(said)}" if said else ""


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _sampled_encodings(refs: Sequence[CaseRef], window=None) -> tuple[int, int] | None:  # noqa: ANN001
    """Encodings of one strategy's starts over every case, and the cases counted: up to
    :data:`SAMPLE_CASES` volume cases per dataset, scaled to the dataset's cases (None: no
    volume case)."""
    total, counted = 0.0, 0
    for dataset in sorted({r.dataset for r in refs}):
        cases = [r for r in refs if r.dataset == dataset and (r.label_path is not None or r.npz)]
        counts = []
        for ref in cases[:SAMPLE_CASES]:
            try:
                labels, shared = _labels_and_sharing(ref, window)
            except Exception as exc:  # noqa: BLE001 - the run itself reports the case's error
                log.info("cost estimate: %s unreadable (%s)", ref.label_path or ref.image_path, exc)
                continue
            if labels is not None:
                counts.append(start_encodings(labels.array, labels.spacing_zyx, shared=shared))
        if counts:
            counted += len(counts)
            total += float(np.mean(counts)) * len(cases)
    return (int(round(total)), counted) if counted else None
