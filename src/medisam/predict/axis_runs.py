"""The single-axis propagation loop: a seed slice's own result and its runs slice by slice.

Functions of an :class:`~medisam.predict.axis_session.AxisSession` (its store, encoder
and config); the rules themselves are in :mod:`medisam.predict.propagation`,
:mod:`medisam.predict.stop_rules` and :mod:`medisam.predict.slice_box` (the two passes
of a box on one slice).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator

import numpy as np

from medisam.metrics_basic import dice
from medisam.predict.contract import SliceResult, ViewProgress
from medisam.predict.propagation import box_around, clip_to, interior_point, stop_reason
from medisam.predict.slice_box import Estimate, clip_box, estimate_box
from medisam.predict.stop_rules import SeedStopper
from medisam.predict.store import ObjectState, Run, RunKey, SlicePrompts
from medisam.prompts import Box

if TYPE_CHECKING:
    from medisam.predict.axis_session import AxisSession

log = logging.getLogger(__name__)


def pick(pred, previous: np.ndarray) -> int:  # noqa: ANN001 - Prediction
    """Index of the candidate mask with the highest IoU with the previous slice's mask."""
    inter = np.logical_and(pred.masks, previous[None]).sum(axis=(1, 2))
    union = np.logical_or(pred.masks, previous[None]).sum(axis=(1, 2))
    return int(np.argmax(inter / np.maximum(union, 1) + 1e-3 * pred.scores))


#: The first pass of a slice box (:mod:`medisam.predict.slice_box`) keeps its runs under
#: step ``CHAIN * step``; the runs a session shows are those of steps -1/+1 (0: the seed).
CHAIN = 2


def run_key(obj_id: int, seed: int, step: int, version: int, chain: bool = False) -> RunKey:
    """Key of a run in the store: ``(obj, seed, step, version)`` (the step scaled for a first pass)."""
    return (obj_id, seed, step * CHAIN if chain else step, version)


def run_done(run: Run | None, seed: int, step: int, end: int) -> bool:
    """Whether a run reached slice ``end`` or stopped (None: not started)."""
    return run is not None and (run.stopped or (run.last_slice(seed) - end) * step >= 0)


def run_planned(run: Run | None, seed: int, step: int, end: int) -> int:
    """Slices a run from ``seed`` still has to compute to reach ``end`` (upper bound)."""
    if run is not None and run.stopped:
        return 0
    start = seed if run is None else run.last_slice(seed)
    return max(0, (end - start) * step)


def planned_end(state: ObjectState, seed: int, step: int, direction: str, limits: tuple[int, int]) -> int:
    """Last slice a run from ``seed`` covers: the range end ``limits``, the next seed, or half way to it."""
    lo, hi = limits
    seeds = sorted(state.seeds)
    i = seeds.index(seed)
    if step > 0:
        if i + 1 == len(seeds):
            return hi
        nxt = seeds[i + 1]
        return min(hi, (seed + nxt) // 2 if direction == "both" else nxt - 1)
    if i == 0:
        return lo
    prev = seeds[i - 1]
    return max(lo, (prev + seed) // 2 + 1 if direction == "both" else prev + 1)


def owner_result(runs: dict[RunKey, Run], obj_id: int, state: ObjectState, seeds: list[int],
                 t: int) -> SliceResult | None:
    """Result shown on slice ``t``: the seed's own, else that of the nearest seed whose run covers ``t``
    (ties: the earlier seed). A slice box's first pass shows until its second pass starts."""
    if t in state.seeds:
        run = runs.get((obj_id, t, 0, state.seeds[t].version))
        return run.results[0] if run is not None and run.results else None
    candidates = []
    for seed in seeds:
        step = 1 if seed < t else -1
        version = state.seeds[seed].version
        run = runs.get((obj_id, seed, step, version)) or runs.get(run_key(obj_id, seed, step, version, True))
        if run is not None and run.covers(t, seed, step):
            candidates.append((abs(t - seed), seed, run))
    if not candidates:
        return None
    _, seed, run = min(candidates, key=lambda c: (c[0], c[1]))
    k = (t - seed) * (1 if seed < t else -1) - 1
    return run.results[k] if k < len(run.results) else None


def seed_iter(s: AxisSession, obj_id: int, t: int) -> Iterator[SliceResult]:
    """Compute (once) the result of ``obj_id``'s prompts on seed slice ``t``."""
    state = s._objects[obj_id]
    prompts = state.seeds[t]
    key = (obj_id, t, 0, prompts.version)
    if key in s.store.runs:
        return
    found = None  # the box points alone were answered with (medisam.predict.point_box)
    if prompts.mask is not None and prompts.points is None:  # a drawn mask (a lasso) is the result, within
        mask = clip_to(prompts.mask, state.clip_box)         # the object's 3D box, as every other result is
        result = SliceResult(t, obj_id, mask, 1.0, None, "prompt", axis=s.axis)
    else:
        logits = prompts.mask_logits
        if logits is None and prompts.mask is not None:
            s._encode(t, obj_id=obj_id)
            logits = s.predictor.transform.mask_to_low_res(prompts.mask, s.model.mask_input_size)
        pred = s._predict(t, prompts.box, prompts.points, logits, obj_id=obj_id)
        mask = clip_to(pred.masks[0], state.clip_box)
        result = SliceResult(t, obj_id, mask, float(pred.scores[0]), pred.low_res_logits[0], "prompt", axis=s.axis)
        found = None if pred.box is None else Box.of(pred.box)
    s.store.runs[key] = Run(t, (result,), found_box=found)
    yield result


def seed_box(s: AxisSession, obj_id: int, seed: int) -> Box | None:
    """The box of a seed slice: the drawn one, or the one its points alone were answered with
    (known once the seed's own result is): a click seeds a volume as the box it found would."""
    drawn = s.store.objects[obj_id].seeds[seed].box
    return drawn if drawn is not None else s.found_box(seed, obj_id)


def _searches_box(s: AxisSession, prompts: SlicePrompts) -> bool:
    """Whether a seed's prompts will be answered with a box search (its mask goes as logits)."""
    mask = prompts.mask if prompts.mask is not None else prompts.mask_logits
    return s.predictor.answers_with_box(prompts.box, prompts.points, mask)


def run_clip(s: AxisSession, state: ObjectState, seed: int, extent: Box | None, chain: bool) -> Box | None:
    """The x/y box that clips a run's masks and prompt boxes: a second pass's ``extent``
    (``config.clip_to_box``), the object's 3D-box clip, none for a first pass, else the seed's own
    slice box (``config.slice_box.clip``: the user's box bounds the chain as a 3D box's extent does)."""
    if extent is not None:
        return extent if s.config.clip_to_box else None
    if state.extent is not None or chain:
        return state.clip_box
    return clip_box(seed_box(s, state.obj_id, seed), s.plane_hw, s.config.slice_box)


def _decode(s: AxisSession, t: int, prev: SliceResult, boxes: list[Box], fine: bool):  # noqa: ANN202
    """Plane ``t``'s best prediction for ``boxes`` (with the previous plane's point or logits
    where the config asks) and the index of its mask."""
    cfg = s.config
    point = interior_point(prev.mask) if cfg.point_prompt else None
    logits = prev.low_res_logits if cfg.mask_prompt else None
    if point is None and logits is None and not cfg.multimask and len(boxes) > 1:
        # the margins in one decoder batch; only the winner is upsampled
        s._encode(t, interpolate=True, fine=fine, obj_id=prev.obj_id)
        return s.predictor.predict_best(boxes)[1], 0
    best = None
    for box in boxes:
        pred = s._predict(t, box, [(*point, 1)] if point else None, logits, cfg.multimask, interpolate=True, fine=fine,
                          obj_id=prev.obj_id)
        k = pick(pred, prev.mask) if cfg.multimask else 0
        if best is None or pred.scores[k] > best[0].scores[best[1]]:
            best = (pred, k)
    return best


def _too_fast(s: AxisSession, t: int, previous: np.ndarray, mask: np.ndarray, obj_id: int) -> bool:
    """Whether plane ``t``'s mask, decoded from the coarse planes, moved away from the previous
    plane's by more than ``config.refine_below_dice`` allows (and finer planes exist)."""
    limit = s.config.refine_below_dice
    return (limit is not None and s.encoder_of(obj_id).refinable(t) and bool(previous.any())
            and dice(previous, mask) < limit)


def run_iter(s: AxisSession, obj_id: int, seed: int, step: int, end: int, chain: bool = False,
             extent: Box | None = None) -> Iterator[SliceResult]:
    """Extend (or start) the run from ``seed`` in direction ``step`` up to slice ``end``.

    ``chain``: the first pass of a slice box (stored apart, see :func:`run_key`);
    ``extent``: an x/y extent that clips the masks and re-prompts lost slices (default:
    that of the object's 3D box, if any). Without an extent the stop rules end the run, and
    a box prompt's run is clipped to that box (``config.slice_box.clip``; not a first pass).
    """
    runs = s.store.runs
    state = s._objects[obj_id]
    version = state.seeds[seed].version
    key = run_key(obj_id, seed, step, version, chain)
    run = runs.get(key) or Run(end)
    if run_done(run, seed, step, end):
        if (run.planned_end - end) * step < 0:
            runs[key] = replace(run, planned_end=end)
        return
    run = replace(run, planned_end=end if (run.planned_end - end) * step < 0 else run.planned_end)
    seed_result = runs[(obj_id, seed, 0, version)].results[0]
    prev = run.results[-1] if run.results else seed_result
    prev_mask = prev.mask  # read once per step (a result rebuilds its plane at each read)
    cfg = s.config
    px_x, px_y = s.geometry.pixel_mm
    clip = run_clip(s, state, seed, extent, chain)
    extent = state.extent if extent is None else extent
    reacquire = cfg.reacquire and extent is not None
    margins = [(max(m / px_x, cfg.min_margin_px), max(m / px_y, cfg.min_margin_px))
               for m in (cfg.margin_mm, *cfg.extra_margins_mm)]
    stopper = None if extent is not None else SeedStopper(  # single-slice prompt: see stop_rules
        seed_result.mask, seed_result.score, seed_box(s, obj_id, seed), cfg.stop_rules, [r.mask for r in run.results],
        (s.geometry.spacing_zyx[s.axis], px_x, px_y))
    t = prev.slice + step
    refined = None  # the coarse interval this run refined last (its later planes start fine)
    while (end - t) * step >= 0:
        boxes = [b for b in (box_around(prev_mask, m, clip) for m in margins) if b is not None]
        if not boxes and reacquire:
            boxes = [extent]
        if not boxes:
            run = replace(run, stopped=True)
            break
        encoder = s.encoder_of(obj_id)
        encoder.prefetch(t, step, end)
        fine = refined == encoder.interval(t)
        pred, k = _decode(s, t, prev, boxes, fine)
        mask, score = clip_to(s._threshold(pred, k), clip), float(pred.scores[k])
        if not fine and _too_fast(s, t, prev_mask, mask, obj_id):  # decode again from the planes at the fine stride
            refined, fine = encoder.interval(t), True
            pred, k = _decode(s, t, prev, boxes, fine)
            mask, score = clip_to(s._threshold(pred, k), clip), float(pred.scores[k])
        reason = stop_reason(mask, score, int(prev_mask.sum()), cfg)
        if reason is None and stopper is not None:
            reason = stopper.reason(mask, score, prev_mask, abs(t - seed))
        if reason is not None and reacquire:
            again = s._predict(t, extent, None, None, interpolate=True, fine=fine, obj_id=obj_id)
            mask2 = clip_to(s._threshold(again, 0), clip)
            if stop_reason(mask2, float(again.scores[0]), 0, cfg) is None:
                pred, k, mask, score, reason = again, 0, mask2, float(again.scores[0]), None
        if reason is not None:
            mask = np.zeros_like(mask)
        stopping = reason is not None and not reacquire
        result = SliceResult(t, obj_id, mask, score, pred.low_res_logits[k], "propagated", reason, s.axis)
        run = replace(run, results=run.results + (result,), stopped=stopping)
        runs[key] = run
        yield result
        if stopping:
            log.info("object %d: propagation from slice %d stopped at slice %d (%s)", obj_id, seed, t, reason)
            break
        if reason is None:
            prev, prev_mask = result, mask
        t += step
    runs[key] = run


# ------------------------------------------------- two passes of a slice box
def two_pass(s: AxisSession, obj_id: int, seed: int) -> bool:
    """Whether ``seed`` of ``obj_id`` is propagated in two passes: a box prompt (drawn, or found
    for points alone) of an object without a 3D box, with ``config.slice_box.enabled``."""
    state = s.store.objects[obj_id]
    prompts = state.seeds[seed]
    return (s.config.slice_box.enabled and state.extent is None
            and (prompts.box is not None or _searches_box(s, prompts)))


def _ends(s: AxisSession, obj_id: int, seed: int, direction: str, steps: tuple[int, ...]) -> dict[int, int]:
    state = s.store.objects[obj_id]
    return {step: planned_end(state, seed, step, direction, s._range(state)) for step in steps}


def _estimate(s: AxisSession, obj_id: int, seed: int, ends: dict[int, int]) -> Estimate | None:
    """The second pass's 3D box from the finished first pass (None while it runs or found nothing)."""
    state = s.store.objects[obj_id]
    version = state.seeds[seed].version
    chains = {step: s.store.runs.get(run_key(obj_id, seed, step, version, chain=True)) for step in ends}
    if not all(run_done(run, seed, step, ends[step]) for step, run in chains.items()):
        return None
    masks = [(r.slice, r.mask) for run in chains.values() for r in run.results]
    masks.append((seed, s.store.runs[(obj_id, seed, 0, version)].results[0].mask))
    limits = (ends.get(-1, seed), ends.get(1, seed))
    return estimate_box(seed, seed_box(s, obj_id, seed), masks, limits, s.plane_hw, s.config.slice_box)


def _second_end(step: int, end: int, estimate: Estimate) -> int:
    return min(end, estimate.hi) if step > 0 else max(end, estimate.lo)


def two_pass_iter(s: AxisSession, obj_id: int, seed: int, direction: str,
                  steps: tuple[int, ...]) -> Iterator[SliceResult | ViewProgress]:
    """Both passes from ``seed`` (its own result already computed): the first pass's slices
    come as :class:`ViewProgress` (source ``"estimate"``), the second's as results."""
    ends = _ends(s, obj_id, seed, direction, steps)
    for step in steps:
        for r in run_iter(s, obj_id, seed, step, ends[step], chain=True):
            yield ViewProgress(s.axis, r.slice, obj_id, r.mask, r.score, "estimate", r.stop)
    estimate = _estimate(s, obj_id, seed, ends)
    if estimate is None:
        return
    for step in steps:
        yield from run_iter(s, obj_id, seed, step, _second_end(step, ends[step], estimate), extent=estimate.box)


def two_pass_planned(s: AxisSession, obj_id: int, seed: int, direction: str, steps: tuple[int, ...]) -> int:
    """Upper bound of the items :func:`two_pass_iter` still yields (second pass: the first's
    range until that has run)."""
    version = s.store.objects[obj_id].seeds[seed].version
    ends = _ends(s, obj_id, seed, direction, steps)
    runs = s.store.runs
    total = sum(run_planned(runs.get(run_key(obj_id, seed, step, version, True)), seed, step, ends[step])
                for step in steps)
    estimate = _estimate(s, obj_id, seed, ends)
    for step in steps:
        end = ends[step] if estimate is None else _second_end(step, ends[step], estimate)
        total += run_planned(runs.get(run_key(obj_id, seed, step, version)), seed, step, end)
    return total
