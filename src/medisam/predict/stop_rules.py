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
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def off(cls) -> "StopRules":
        """No rule: propagation goes on while masks are non-empty (the previous behaviour)."""
        return cls(0.0, float("inf"), float("inf"), 0.0, 0.0, float("inf"), 0, float("inf"))


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
    """

    def __init__(self, seed_mask: np.ndarray, seed_score: float, seed_box, rules: StopRules,
                 accepted: list[np.ndarray] = ()):
        self.seed, self.seed_score, self.rules = seed_mask, seed_score, rules
        self.box_hw = None if seed_box is None else (seed_box.y1 - seed_box.y0, seed_box.x1 - seed_box.x0)
        self.box = None if seed_box is None else (seed_box.x0, seed_box.y0, seed_box.x1, seed_box.y1)
        self.min_area = min([int(seed_mask.sum())] + [int(m.sum()) for m in accepted if m.any()])

    def reason(self, mask: np.ndarray, score: float, previous: np.ndarray, distance: int) -> str | None:
        """Why the run stops at ``mask`` (``distance`` slices from the seed), or None to go on."""
        why = seed_stop_reason(mask, score, previous, self.seed, self.seed_score, distance, self.rules,
                               self.box_hw, self.min_area, self.box)
        if why is None and mask.any():
            self.min_area = min(self.min_area, int(mask.sum()))
        return why
