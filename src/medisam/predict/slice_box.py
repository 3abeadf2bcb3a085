"""Two passes for a box on one slice: the chain estimates a 3D box, the 3D-box engine segments it.

A box on one slice says nothing about how far the object reaches along the slicing axis or
how wide it gets on other slices. The first pass is the slice-to-slice chain ended by the
stop rules (:mod:`medisam.predict.stop_rules`): each slice is prompted with the box of the
previous slice's mask, so an early error compounds, but where it stops and how wide its
masks get estimate the object's 3D box. The second pass is the single-axis engine of a 3D
box on that estimate: from the same seed, every slice of the estimated range is prompted
from its neighbour, clipped to the estimated x/y extent and re-prompted with that extent
where the object is lost (``PropagationConfig.reacquire``), so the result approaches that
of ``--box3d`` with the true box. Only the second pass's masks are results; the first
pass's are kept to resume and to show while the second has not run. The passes run in
:func:`medisam.predict.axis_runs.two_pass_iter`.

Estimate (:func:`estimate_box`): slices from the first to the last non-empty accepted mask of
the chain grown by ``slice_margin`` slices, x/y extent the user's box (or, with ``union``,
its union with the chain's mask boxes) grown by ``xy_margin`` pixels; both within the run's limits (the
``slices=`` range, half way to a neighbouring seed). Measured with
``benchmarks/propagation_3d.py --variants single,slicebox-chain,slicebox`` (see docs/stop_rules.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from medisam.prompts import Box


@dataclass(frozen=True)
class SliceBoxRules:
    """How a box on one slice is propagated: the chain clipped to the user's box (default), or two passes.

    Default (``clip=True``, ``clip_margin=0.1``, ``enabled=False``): one pass, the slice-to-slice
    chain with its masks and prompt boxes clipped to the user's box grown by a tenth of its
    sides (an object is often wider off the slice it was boxed on), ended by the stop rules.
    The user's box bounds the object's x/y extent the way a 3D box's extent does (``--box3d``
    clips to it too); unclipped, one leaked mask carries the chain into the
    neighbouring tissue, where the growth rules end it early (see docs/stop_rules.md).

    Opt-in (``PropagationConfig(slice_box=SliceBoxRules(enabled=True))``): measured on 9 hippocampus and
    2 BraTS cases it raised hippocampus label 1 (+0.095) but lowered label 2 and whole tumour and misses
    the issue-19 target on label 1 and tumour core; it also changes what ``iter_propagate`` yields for a
    slice box (first-pass ``ViewProgress``), so it stays off by default until it is measured on whole sets.

    Attributes:
        clip: clip the chain's masks and prompt boxes to the user's box (grown by ``clip_margin``).
        clip_margin: growth of the user's box on each side for ``clip``, as a fraction of its side
            (an object's cross-section shifts between its middle slice and its ends).
        enabled: run the second pass.
        slice_margin: slices added to the chain's extent on each side (the chain stops
            one slice past what it accepted, so one more slice is already encoded).
        xy_margin: pixels added to the estimated x/y extent on each side.
        union: the x/y extent is the union of the user's box and the chain's mask boxes
            (default False: the user's box only; the chain gives the slice range. Chain
            masks that leak make the union too wide to clip anything).
    """

    clip: bool = True
    clip_margin: float = 0.1
    enabled: bool = False
    slice_margin: int = 1
    xy_margin: int = 0
    union: bool = False


@dataclass(frozen=True)
class Estimate:
    """The estimated 3D box: slices ``lo..hi`` (inclusive) and the x/y extent ``box`` (pixel edges)."""

    lo: int
    hi: int
    box: Box


def clip_box(box: Box | None, plane_hw: tuple[int, int], rules: SliceBoxRules) -> Box | None:
    """The x/y extent that clips a slice box's chain (None: no clip, or no box), within the plane."""
    if box is None or not rules.clip:
        return None
    h, w = plane_hw
    dx, dy = rules.clip_margin * (box.x1 - box.x0), rules.clip_margin * (box.y1 - box.y0)
    return Box(max(0.0, box.x0 - dx), max(0.0, box.y0 - dy), min(float(w), box.x1 + dx), min(float(h), box.y1 + dy))


def estimate_box(seed: int, seed_box: Box | None, masks: Iterable[tuple[int, np.ndarray]],
                 limits: tuple[int, int], plane_hw: tuple[int, int], rules: SliceBoxRules) -> Estimate | None:
    """The 3D box a first pass implies, or None when it found nothing (no box, no mask).

    ``masks``: ``(slice, mask)`` of the seed and every accepted slice of the chain (empty
    masks are ignored); ``limits``: ``(first, last)`` slices the runs may cover.
    """
    boxes = [] if seed_box is None else [seed_box]
    slices = [seed]
    for t, m in masks:
        b = Box.from_mask(m)
        if b is not None:
            if rules.union or not boxes:
                boxes.append(b)
            slices.append(t)
    if not boxes:
        return None
    h, w = plane_hw
    d = rules.xy_margin
    box = Box(max(0.0, min(b.x0 for b in boxes) - d), max(0.0, min(b.y0 for b in boxes) - d),
              min(float(w), max(b.x1 for b in boxes) + d), min(float(h), max(b.y1 for b in boxes) + d))
    lo = max(limits[0], min(slices) - rules.slice_margin)
    hi = min(limits[1], max(slices) + rules.slice_margin)
    return Estimate(lo, hi, box)


__all__ = ["Estimate", "SliceBoxRules", "clip_box", "estimate_box"]
