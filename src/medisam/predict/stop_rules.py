"""Where a propagation that started from a prompt on one slice should stop.

A box on one slice says nothing about how far the object reaches along the slicing axis,
and a 2D model asked for "the object in this box" on a slice past the object's end still
returns a mask: some neighbouring structure, which then carries the chain through the whole
volume. The end of an object shows as a break in the chain rather than as a low predicted
IoU (SAM scores a confident mask of the wrong structure highly), so the rules compare each
slice's mask with its neighbour and with the seed:

* **shape change**: the Dice of consecutive masks drops below ``min_consecutive_dice``. An
  object's cross-section changes gradually from slice to slice (consecutive masks of the
  same structure overlap far more than half); a jump means the model switched structure.
* **growth against the seed**: the mask's area exceeds ``max_seed_growth`` times the seed's,
  or its box side exceeds ``max_seed_box_growth`` times the side of the user's box. Propagation
  runs outward from the prompted slice, so a mask that outgrows the prompt by that much has
  leaked into the surrounding tissue (the box of each slice is the previous mask's box
  grown by a margin, so a leak compounds slice after slice).
* **regrowth**: the area exceeds ``max_min_growth`` times the smallest area of the run so
  far. Away from an object's middle its cross-section narrows; growing back after a
  narrowing means the chain has reached a neighbouring structure.
* **area collapse**: the area falls below ``min_seed_area_ratio`` of the seed's area (the
  object has tapered out; what is left are fragments).
* **low predicted IoU**: the score falls below ``min_seed_score_ratio`` of the seed's score.

The stopping slice itself is left empty (it is the first slice judged off the object). An
optional slice range (:meth:`VolumeSession.add_box` ``slices=``) bounds the run as well.
These rules only apply to single-slice prompts: a 3D box already gives the object's slice
range and x/y extent.

Thresholds are round numbers (half / double the reference), chosen by looking at the
slice-to-slice statistics of unstopped runs on hippocampus MR cases 004 and 008 (both
labels) and a small grid around them on the same cases; they are not fitted per data set.
Issue 19 widened the grace from 1 to 3 slices and tightened regrowth from 2x to 1.5x: a
grid replayed offline on the recorded unstopped runs of the first 13 hippocampus cases and
2 BraTS cases (``benchmarks/stop_rules_sweep.py``; an "oracle cut" row there gives the best
any stop point could do) showed the first slices after the seed often change shape a lot
while still on the object (they are prompted by the seed mask's box, which may under- or
overshoot), and a 1.5x regrowth catches tumour runs that reach the neighbouring oedema.
Since issue 19 item 1 a slice box's chain is clipped to the user's box
(:class:`~medisam.predict.slice_box.SliceBoxRules`), and the grace is 5 slices: with the clip
a leak cannot carry the chain out of the box, and the first slices from a poor seed mask
change shape a lot while still on the object (chosen on hippocampus cases 004-037, replayed
offline from recorded runs; see docs/stop_rules.md). Since then the clip is the user's box grown
by a tenth of its sides and regrowth is 2x again: a tumour core prompted on a pinched middle
slice narrows a little, then widens on the object, which 1.5x cut off (BraTS core 0.487 ->
0.607 on the recorded runs, chosen with hippocampus label 1 kept within its target).
``benchmarks/propagation_3d.py --variants single,slicebox-default,slicebox-noclip`` measures them.
The optional area-collapse and score rules are off by default: SAM's predicted IoU stayed
high on slices past the object's end in those runs, and tapering objects end in small
but correct masks.
Since stop 73 the grace is bounded by the object's size in mm (``size_grace``): 5 slices of 5 mm ran
25 mm past a 12 mm lung nodule (lung1: slices 27-38 for 32-34, Dice 0.28; now 32-34, 0.84). Where
the bound shortens the grace, the score rule applies at 0.8 of the seed's (``thin_min_seed_score_ratio``):
past a small object's end on thick slices the clipped chain settles on a structure of the same size,
which SAM is less sure of. On the 1 mm sets (all hippocampus and BraTS targets) the bound never
falls below 5 slices, so nothing changes there; on them thinned to 5 mm slices the hippocampus
gains (+0.03, +0.04, no target worse) and one BraTS tumour core of four loses
(``benchmarks/slice_box_dev.py --evaluate-size``, docs/stop_rules.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from medisam.metrics_basic import dice


@dataclass(frozen=True)
class StopRules:
    """Thresholds of the stop rules for single-slice-prompt propagation (0 / inf = off).

    Attributes:
        min_consecutive_dice: stop when Dice(mask, previous mask) falls below this.
        max_seed_growth: stop when the area exceeds this many times the seed's area (or
            the area of the ellipse inscribed in the user's box, if larger).
        max_seed_box_growth: stop when the mask's box height or width exceeds this many
            times that of the user's box (of the seed mask when there is no box).
        min_seed_area_ratio: stop when the area falls below this fraction of the seed's.
        min_seed_score_ratio: stop when the predicted IoU falls below this fraction of the
            seed's predicted IoU.
        max_min_growth: stop when the area exceeds this many times the smallest area of the
            run so far (seed included): moving away from an object's middle its
            cross-section shrinks, so regrowth after a narrowing is a neighbouring structure.
        grace: slices next to the seed on which the shape-change and regrowth rules are not
            applied (the
            first propagated slice is prompted by the seed mask's box, not by the user's
            box, so its mask may legitimately differ from the seed's).
        max_centroid_shift: stop when the mask's centroid lies further from the centre of
            the user's box than this many half-sides of it (per axis): the chain has drifted
            off to another structure.
        regrowth_after: the regrowth rule applies once the run's smallest area has fallen to
            this fraction of the seed's (1.0: after any narrowing). A seed on an object's waist
            (a tumour core pinched on its middle slice) narrows a little, then widens on the object.
        size_grace: the grace is at most ``ceil(size_grace * s / slice spacing)`` slices, ``s`` the seed
            box's shorter side in mm: an object is rarely much longer along the slicing axis than across
            it, so the grace stays within the object's length. On 5 mm slices a 12 mm nodule spans 3
            slices; a grace of 5 let the chain run 25 mm past it (inf = the grace in slices alone).
            Applies when the stopper knows the voxel spacing (:class:`SeedStopper` ``spacing``).
        thin_min_seed_score_ratio: where ``size_grace`` shortened the grace (an object a few thick
            slices long), stop when the predicted IoU falls below this fraction of the seed's. Past
            such an object's end the clipped chain settles on a neighbouring structure of the same
            size, which shape change and regrowth do not see, but the model is less sure of.
    """

    min_consecutive_dice: float = 0.5
    max_seed_growth: float = 2.0
    max_seed_box_growth: float = 1.5
    min_seed_area_ratio: float = 0.0
    min_seed_score_ratio: float = 0.0
    max_min_growth: float = 2.0
    grace: int = 5
    max_centroid_shift: float = float("inf")
    regrowth_after: float = 1.0
    size_grace: float = 1.0
    thin_min_seed_score_ratio: float = 0.8

    @classmethod
    def off(cls) -> "StopRules":
        """No rule: propagation goes on while masks are non-empty (the previous behaviour)."""
        return cls(0.0, float("inf"), float("inf"), 0.0, 0.0, float("inf"), 0, float("inf"),
                   size_grace=float("inf"), thin_min_seed_score_ratio=0.0)


def size_bounded(rules: StopRules, box_hw: tuple[float, float],
                 spacing: tuple[float, float, float] | None) -> StopRules:
    """``rules`` for an object whose seed box is ``box_hw`` pixels (height, width) on slices
    ``spacing = (slice, pixel x, pixel y)`` mm apart: the grace bounded by the box's shorter side
    (``size_grace``) and, where that shortened it, the score rule of ``thin_min_seed_score_ratio``."""
    if spacing is None or not math.isfinite(rules.size_grace):
        return rules
    slice_mm, px_x, px_y = spacing
    short_mm = min(box_hw[0] * px_y, box_hw[1] * px_x)
    grace = max(0, math.ceil(rules.size_grace * short_mm / slice_mm - 1e-9))
    if grace >= rules.grace:
        return rules
    return replace(rules, grace=grace,
                   min_seed_score_ratio=max(rules.min_seed_score_ratio, rules.thin_min_seed_score_ratio))


#: Fraction of its box an ellipse fills: the area expected of an object in a box.
_FILL = np.pi / 4


def _box_size(mask: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of a non-empty mask's bounding box."""
    ys, xs = np.nonzero(mask)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


def _centroid_shift(mask: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Largest per-axis distance of the mask's centroid from the box centre, in half-sides of the box."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = box
    return max(abs(xs.mean() + 0.5 - (x0 + x1) / 2) / max((x1 - x0) / 2, 1.0),
               abs(ys.mean() + 0.5 - (y0 + y1) / 2) / max((y1 - y0) / 2, 1.0))


def seed_stop_reason(mask: np.ndarray, score: float, previous: np.ndarray, seed: np.ndarray,
                     seed_score: float, distance: int, rules: StopRules,
                     seed_box_hw: tuple[float, float] | None = None, min_area: int | None = None,
                     seed_box: tuple[float, float, float, float] | None = None) -> str | None:
    """Why a run from a single-slice seed should stop at this slice's mask, or None.

    ``previous``: the mask of the slice before (towards the seed); ``seed``/``seed_score``:
    the seed slice's mask and predicted IoU; ``distance``: slices from the seed (1 = next
    to it); ``seed_box_hw``: height and width of the user's box on the seed slice (default:
    the seed mask's box). Growth is measured against the larger of the seed mask and that
    box, since a seed mask can undershoot the box it was prompted with. An empty mask is
    left to the caller's own rule. ``min_area``: smallest area of the run so far.
    """
    area, seed_area = int(mask.sum()), int(seed.sum())
    if area == 0 or seed_area == 0:
        return None
    if distance > rules.grace and dice(mask, previous) < rules.min_consecutive_dice:
        return "shape change"
    sh, sw = _box_size(seed) if seed_box_hw is None else seed_box_hw
    if area > rules.max_seed_growth * max(seed_area, sh * sw * _FILL):
        return "growth"
    h, w = _box_size(mask)
    if h > rules.max_seed_box_growth * sh or w > rules.max_seed_box_growth * sw:
        return "growth"
    if (min_area is not None and distance > rules.grace and area > rules.max_min_growth * min_area
            and min_area <= rules.regrowth_after * seed_area):
        return "regrowth"
    if seed_box is not None and _centroid_shift(mask, seed_box) > rules.max_centroid_shift:
        return "drift"
    if area < rules.min_seed_area_ratio * seed_area:
        return "area collapse"
    if score < rules.min_seed_score_ratio * seed_score:
        return "low score"
    return None


class SeedStopper:
    """The stop rules along one run from a single-slice seed (keeps the run's smallest area).

    Args:
        seed_mask / seed_score: the seed slice's result.
        seed_box: the user's box on the seed slice (a :class:`~medisam.prompts.Box`), or
            None (points or a mask: the seed mask's box is used).
        rules: the thresholds.
        accepted: masks the run already kept (when a cancelled run resumes).
        spacing: ``(slice, pixel x, pixel y)`` in mm, for ``rules.size_grace`` (None: the grace in
            slices alone).
    """

    def __init__(self, seed_mask: np.ndarray, seed_score: float, seed_box, rules: StopRules,
                 accepted: list[np.ndarray] = (), spacing: tuple[float, float, float] | None = None):
        self.seed, self.seed_score = seed_mask, seed_score
        self.box_hw = None if seed_box is None else (seed_box.y1 - seed_box.y0, seed_box.x1 - seed_box.x0)
        self.box = None if seed_box is None else (seed_box.x0, seed_box.y0, seed_box.x1, seed_box.y1)
        hw = self.box_hw if self.box_hw is not None else _box_size(seed_mask) if seed_mask.any() else None
        self.rules = rules if hw is None else size_bounded(rules, hw, spacing)
        self.min_area = min([int(seed_mask.sum())] + [int(m.sum()) for m in accepted if m.any()])

    def reason(self, mask: np.ndarray, score: float, previous: np.ndarray, distance: int) -> str | None:
        """Why the run stops at ``mask`` (``distance`` slices from the seed), or None to go on."""
        why = seed_stop_reason(mask, score, previous, self.seed, self.seed_score, distance, self.rules,
                               self.box_hw, self.min_area, self.box)
        if why is None and mask.any():
            self.min_area = min(self.min_area, int(mask.sum()))
        return why
