"""A corrective click on a 3D result, through a session's public methods only.

:func:`refine_with_click` turns a voxel click ``(z, y, x)`` into a point prompt on the
slice through that voxel along the session's axis (``add_points``: the session re-decodes
that slice with the click plus the slice's current mask box and logits, see
:meth:`VolumeSession.add_points`), then re-propagates with ``iter_propagate``. The
session bounds that run: it goes from the clicked slice towards each neighbouring seed
(half way) or the object's range end, and ends earlier where its stop rules say the object
ends. Every slice reuses the session's embedding cache, so a click costs decoder passes and
only encodes planes the object's earlier runs never visited.

Limits of the public API (see docs/interactive3d.md, "Merge notes"):

* A run cannot be cut short once the new masks agree with the previous result again: a
  run stopped part way leaves its later slices without a result, so the run is finished.
  :func:`refine_with_click` measures where the change stopped mattering
  (``ClickOutcome.settled_at``: the first slice each way whose new mask has Dice >= ``agree``
  with the old one) so the saving of such a hook can be seen.
* With tri-planar fusion (``views=3``) the click is used on the session's axis only: the
  other two views are private to the session and dropped after fusion.

A click is one ``add_points`` call, so one ``session.undo()`` takes it back (the earlier
results are reused, not recomputed). Box-trained models (LiteMedSAM) often ignore a point
against the slice's box: when the re-decoded slice does not honour the click (the voxel
stays outside after a positive click, inside after a negative one), the slice's box is
corrected to agree with it (:func:`corrected_box`, ``add_box``; still one undo step: both calls
run in one ``session.step()``); if the
click is still not honoured, it is undone at once and reported as ``rejected``: propagating
such a mask only spreads the miss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from medisam.errors import PromptError
from medisam.metrics_basic import dice
from medisam.predict.click_layer import crop_of, window_around
from medisam.predict.click_refine import (RefineParams, apply_clicks, click_radii, near_clicks, no_contrast,
                                          refine_crop, size_cap, stroke_radii, voxel_scale)
from medisam.predict.edits import EditLayer, merged
from medisam.predict.store import Click3D, check_in_range
from medisam.prompts import Box

#: Dice between a slice's new and previous mask above which the click no longer matters there.
AGREE_DICE = 0.98


@dataclass(frozen=True)
class ClickOutcome:
    """What one click did.

    Attributes:
        slice: the clicked slice (session axis); ``point``: ``(x, y, label)`` on it.
        decoded: slice results the session computed for the click (clicked slice included).
        encoded: planes the encoder ran on for the click (0 when all were cached).
        changed: slices whose mask changed (any voxel).
        settled_at: per direction (+1, -1), the first slice past the click where the new mask
            agreed with the old one (Dice >= ``agree``), None when it never did.
        rejected: the re-decoded slice did not honour the click (a positive click outside
            its mask, a negative one inside), even with :func:`corrected_box`, so the click
            was undone and nothing changed.
        undo_steps: ``session.undo()`` calls that take the click back: 1 (the click and its
            box correction are one step), 0 when rejected (the step was rolled back).
    """

    slice: int
    point: tuple[int, int, int]
    decoded: int
    encoded: int
    changed: tuple[int, ...] = ()
    settled_at: dict[int, int | None] = field(default_factory=dict)
    rejected: bool = False
    undo_steps: int = 1


class _NotHonoured(Exception):
    """The re-decoded slice did not honour the click (internal: rolls the click's step back)."""


def click_on_plane(session, zyx: Sequence[int]) -> tuple[int, int, int]:
    """``(slice, x, y)`` of voxel ``(z, y, x)`` on the session's slicing axis."""
    if len(zyx) != 3:
        raise PromptError(f"a 3D click is (z, y, x), got {tuple(zyx)!r}")
    v = [int(c) for c in zyx]
    shape = tuple(session.image.spatial_shape)
    if any(not 0 <= c < n for c, n in zip(v, shape)):
        raise PromptError(f"click {tuple(v)} lies outside the volume {shape} (Z, Y, X)")
    rows, cols = session.geometry.plane_axes
    return v[session.axis], v[cols], v[rows]


def corrected_box(mask: np.ndarray | None, x: int, y: int, positive: bool, shape_hw: tuple[int, int],
                  margin: int = 2) -> Box | None:
    """A box for the clicked slice that agrees with the click (pixel edges), or None.

    Positive: the box around the slice's mask and the clicked pixel, grown by ``margin``.
    Negative: the box around the mask with the side nearest the click moved just past it
    (a leak at the object's edge is cut off); None when the mask is empty.
    """
    h, w = shape_hw
    if positive:
        ys, xs = np.nonzero(mask) if mask is not None and mask.any() else (np.array([y]), np.array([x]))
        x0, x1 = min(xs.min(), x) - margin, max(xs.max(), x) + 1 + margin
        y0, y1 = min(ys.min(), y) - margin, max(ys.max(), y) + 1 + margin
        return Box(float(max(0, x0)), float(max(0, y0)), float(min(w, x1)), float(min(h, y1)))
    if mask is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    sides = {"x0": x - xs.min(), "x1": xs.max() - x, "y0": y - ys.min(), "y1": ys.max() - y}
    edges = {"x0": float(xs.min()), "y0": float(ys.min()), "x1": float(xs.max() + 1), "y1": float(ys.max() + 1)}
    side = min(sides, key=sides.get)
    edges[side] = {"x0": x + 1.0, "x1": float(x), "y0": y + 1.0, "y1": float(y)}[side]
    if edges["x1"] <= edges["x0"] or edges["y1"] <= edges["y0"]:
        return None
    return Box(edges["x0"], edges["y0"], edges["x1"], edges["y1"])


def _masks(session, obj_id: int) -> dict[int, np.ndarray]:
    if obj_id not in session.object_ids:
        return {}
    return {t: r.mask for t, r in session.results(obj_id).items()}


def refine_with_click(session, zyx: Sequence[int], positive: bool, obj_id: int = 1,
                      agree: float = AGREE_DICE, method: str | None = None,
                      params: RefineParams | None = None) -> ClickOutcome:
    """Correct object ``obj_id`` with one click at voxel ``(z, y, x)``: ONE undo step.

    A positive click adds the voxel to the object, a negative one removes it. Undo with
    ``session.undo()``. ``method``: ``"walker"`` (the default where the session has a 3D click
    layer, ``set_edits``; a click that starts a new object goes the slice way) refines the
    object's 3D mask around the model's result (:func:`walker_click`); ``"slice"`` re-decodes
    the clicked slice and re-propagates from it (the behaviour before the walker, kept as the
    benchmarks' reference; any pending propagation of the session is completed too).
    ``params``: the walker's weights (None: :class:`RefineParams`' defaults). The walker corrects
    the 3D result, so a pending propagation of the session runs first: a click before it corrected
    the seed slice's result alone, and its edit then hid the propagation's slices around it
    (hippocampus_004 label 1, a 3D box and one click: 0.397 against 0.634).
    """
    if method is None:
        method = "walker" if hasattr(session, "set_edits") else "slice"
    if method not in ("walker", "slice"):
        raise PromptError(f"unknown click method {method!r}; use walker or slice")
    if method == "walker" and obj_id in session.object_ids:
        for _ in session.iter_propagate():  # the 3D result the click corrects (no-op when up to date)
            pass
        return walker_click(session, zyx, positive, obj_id, params or RefineParams())
    return slice_click(session, zyx, positive, obj_id, agree)


def refine_with_clicks(session, voxels: Sequence[Sequence[int]], positive: bool, obj_id: int = 1,
                       params: RefineParams | None = None) -> ClickOutcome:
    """Correct object ``obj_id`` (it must have a mask) with several clicks of one sign, a scribble's:
    the pending propagation first, as :func:`refine_with_click`, then ONE walker solve for them all
    (:func:`walker_clicks`): ONE undo step."""
    if not hasattr(session, "set_edits"):
        raise PromptError("clicks that correct together need a session with a 3D click layer (not SAM 2)")
    if obj_id not in session.object_ids:
        raise PromptError(f"object {obj_id} has no mask to correct: prompt it first")
    for _ in session.iter_propagate():  # the 3D result the clicks correct (no-op when up to date)
        pass
    return walker_clicks(session, voxels, positive, obj_id, params or RefineParams())


def walker_click(session, zyx: Sequence[int], positive: bool, obj_id: int = 1,
                 params: RefineParams = RefineParams()) -> ClickOutcome:
    """The click as a random-walker refinement of the object's 3D mask (:mod:`~medisam.predict.click_refine`).

    On a crop around the object's 3D box (or its mask) and every click so far (at most
    ``params.max_voxels``: a larger crop is cut to a window around the click, so a click on a
    liver-sized box costs seconds and under a GiB, ``benchmarks/walker_cost.py``), the walker
    starts from the model's result (the slice results, without earlier clicks) and takes all
    the object's 3D clicks as hard seeds; the result replaces the object's mask in the crop
    (the session's 3D click layer, :meth:`AxisSession.set_edits`); a negative click only
    removes. The walker sees the session's guide channels too (:meth:`click_features`).
    Several objects: the other objects' positive clicks are background seeds here and the
    voxels their clicks added to them have a prior of 0; a positive click takes from the other
    objects what this object holds within the click's radius, not the rest of its overlap with
    them (a click on one tumour part must not wipe another part far from it; elsewhere the
    smaller object stays on top). A positive click on a voxel the object already holds, where
    the label map shows another object on top (a smaller one, :meth:`paint_order`), leaves this
    object as it is and is a background click of each object shown there: the user says the
    voxel is this object, not that one, and that object's walker decides how much of it goes.
    A negative click on a voxel that other objects hold too gives them what they hold within its
    radius (``Click3D.yields``, ``params.negative_yields``): in a label map, removing the object shown
    there shows the one beneath, as the user expects, where the fading prior of a plain background
    click left most of a false blob in place (a core class painted over the oedema in BraTS).
    One undo step; no decoder or encoder runs.
    """
    return walker_clicks(session, [zyx], positive, obj_id, params)


def walker_clicks(session, voxels: Sequence[Sequence[int]], positive: bool, obj_id: int = 1,
                  params: RefineParams = RefineParams()) -> ClickOutcome:
    """Several clicks of one sign (a scribble's) as :func:`walker_click` does one, solved together:
    ONE walker solve on the window around them (:func:`window_around`; clicks past that window
    take another), ONE undo step. Each click's radius is measured against the mask before them all,
    at most ``click_scale`` times its distance to the nearest of them (``params.stroke_cap``).
    Why: one solve per click made a BraTS scribble of 16 clicks cost 16 solves (tens of seconds);
    ``benchmarks/scribbles.py`` measures both ways on whole sets. A positive click on a voxel that
    another object shows over this one keeps :func:`walker_click`'s rules: such clicks go one by one.
    Returns the outcome of the last click (``changed``: every slice any of them changed)."""
    if not len(voxels):
        raise PromptError("give at least one click")
    vs = [tuple(int(c) for c in v) for v in voxels]
    planes = [click_on_plane(session, v) for v in vs]
    if obj_id not in session.object_ids:  # the session's own answer (object_state's)
        raise PromptError(f"no object {obj_id}; objects: {session.object_ids or 'none'}")
    slice_range = _live_state(session, obj_id).slice_range  # not object_state: its deep copy holds every click so far
    for t, _, _ in planes:
        check_in_range(t, obj_id, slice_range)  # the same rule as a prompt on that slice
    edited: list[tuple[int, tuple[slice, slice, slice], np.ndarray]] = []
    with session.step():
        alone = [v for v in vs if positive and _shown_over(session, obj_id, v)]
        together = [v for v in vs if v not in alone]
        while together:
            touched, together = _walker_edit(session, together, positive, obj_id, params)
            edited += touched
        for v in alone:
            over = _shown_over(session, obj_id, v)
            refine = not (over and _holds(session, obj_id, v))
            edited += _walker_edit(session, [v], positive, obj_id, params, refine=refine)[0]
            for other in over:
                edited += _walker_edit(session, [v], False, other, params)[0]
    changed: set[int] = set()
    for obj, crop, before in edited:
        diff = np.moveaxis(session.object_crop(obj, crop) != before, session.axis, 0).any(axis=(1, 2))
        changed.update(crop[session.axis].start + int(i) for i in np.nonzero(diff)[0])
    t, x, y = planes[-1]
    return ClickOutcome(t, (x, y, 1 if positive else 0), 0, 0, tuple(sorted(changed)))


def _shown_over(session, obj_id: int, v: tuple[int, ...]) -> list[int]:
    """The objects painted over ``obj_id`` in the label map (:meth:`paint_order`) that hold voxel ``v``
    (the paint order, a pass over every object's results, only when another object holds it)."""
    holders = {o for o in session.object_ids if o != obj_id and _holds(session, o, v)}
    if not holders:
        return []
    order = session.paint_order()
    return [o for o in order[order.index(obj_id) + 1:] if o in holders]


def _holds(session, obj_id: int, v: tuple[int, ...]) -> bool:
    return bool(session.object_crop(obj_id, tuple(slice(c, c + 1) for c in v)).any())


def _walker_edit(session, vs: Sequence[tuple[int, ...]], positive: bool, obj_id: int, params: RefineParams,
                 refine: bool = True) -> tuple[list[tuple[int, tuple[slice, slice, slice], np.ndarray]],
                                               list[tuple[int, ...]]]:
    """Refine ``obj_id`` with the clicks at ``vs`` (one sign) that lie in one window of its crop, and set
    the result (:meth:`set_edits`); returns ``(object, crop, its mask there before)`` of every object the
    edit touches, and the clicks left outside that window (for another call).

    A negative click only removes (the walker's re-solve must not grow the object elsewhere);
    a positive click takes the re-solved crop as it is within ``params.positive_reach`` times its
    radius (its new intensity sample may also cut a leak there: hippocampus AUC 2.967 against 2.881
    when it may only add) and only adds farther away, unless ``params.positive_only_adds``. ``refine`` False:
    the clicks are kept (seeds of later clicks), the masks stay as they are (the objects shown
    over the voxel are the ones to change)."""
    state = _live_state(session, obj_id)
    spacing = session.geometry.spacing_zyx
    whole = _crop(session, state, obj_id, vs, params.pad)
    crop = window_around(whole, vs[len(vs) // 2], spacing, params.max_voxels)
    here = [all(s.start <= c < s.stop for s, c in zip(crop, v)) for v in vs]
    rest = [v for v, h in zip(vs, here) if not h]
    vs = [v for v, h in zip(vs, here) if h]
    origin = np.array([s.start for s in crop])
    ats = [tuple(int(i) for i in np.subtract(v, origin)) for v in vs]
    model, current = session.object_crops(obj_id, crop)
    volume = session.object_size(obj_id) if crop != whole and positive else None  # the size cap's measure
    radii = stroke_radii(_window_click_radii(whole, crop, current, ats, positive, spacing, params, volume), vs,
                         spacing, params)
    if not refine:
        session.set_edits({obj_id: (state.edit, tuple(Click3D(v, positive, r) for v, r in zip(vs, radii)))})
        return [], rest
    others, their_clicks, claimed = _others(session, obj_id, crop)
    new_clicks = tuple(Click3D(v, positive, r, not positive and any(bool(m[at]) for m in others.values()))
                       for v, r, at in zip(vs, radii, ats))  # yields: another object holds the voxel too
    clicks = (*state.clicks3d, *new_clicks)
    seeds = [replace(c, zyx=tuple(int(i) for i in np.subtract(c.zyx, origin))) for c in (*their_clicks, *clicks)]
    features, inside = session.click_features(crop, obj_id), _inside(state, origin, current.shape)
    shared = np.logical_or.reduce(list(others.values())) if others and any(c.yields for c in clicks) else None
    solved = refine_crop(features, model, inside, seeds, spacing, params, claimed=claimed, shared=shared,
                         memo=getattr(session, "walker_memo", None))
    rule = replace(params, positive_only_adds=True) if positive and no_contrast(features, inside) else params
    # a background click never adds; a positive one removes only within its reach; no contrast: nor removes
    own = seeds[len(seeds) - len(new_clicks):]
    reach, within = near_clicks(current.shape, own, spacing, (params.positive_reach or 0.0, 1.0)) if positive \
        else (None, None)  # one distance map per click for both rules
    new = apply_clicks(solved, current, own, rule, spacing, reach=reach)
    layer = EditLayer(tuple(int(o) for o in origin), new)

    def model_of(obj: int):  # noqa: ANN202 - the object's model mask on a crop, for merged()
        return lambda c: session.object_crop(obj, c, model_only=True)

    edits = {obj_id: (merged(state.edit, layer, model_of(obj_id)), new_clicks)}
    touched = [(obj_id, crop, current)]
    if positive:  # what the object holds within the clicks' radii leaves the other objects
        taken = new & within
        for other, theirs in others.items():
            if (theirs & taken).any():
                keep = EditLayer(layer.origin, theirs & ~taken)
                edits[other] = (merged(_live_state(session, other).edit, keep, model_of(other)), ())
                touched.append((other, crop, theirs))
    session.set_edits(edits)
    return touched, rest


def _window_click_radii(whole: tuple[slice, ...], crop: tuple[slice, ...], current: np.ndarray,
                        ats: Sequence[tuple[int, ...]], positive: bool, spacing: Sequence[float],
                        params: RefineParams, volume: int | None = None) -> list[float]:
    """:func:`click_radii` on ``crop``, a window cut from the object's crop ``whole``
    (:func:`window_around`). The boundary it measures may lie past a cut face, so on a cut
    window a click's radius is at most ``click_scale`` times its distance to the nearest cut face
    (a lower bound of the whole crop's radius), and that much when the window holds no boundary.
    ``volume``: the whole object's voxels, for the size cap (the window holds only part of it)."""
    free = click_radii(current, ats, positive, spacing, params, volume)
    if crop == whole:
        return free
    f = voxel_scale(spacing)
    boundary = (current if positive else ~current).any()
    out = []
    for at, radius in zip(ats, free):
        faces = [a * fi for w, c, a, fi in zip(whole, crop, at, f) if c.start > w.start]
        faces += [(c.stop - c.start - 1 - a) * fi for w, c, a, fi in zip(whole, crop, at, f) if c.stop < w.stop]
        if not faces:
            out.append(radius)
            continue
        cap = max(params.min_radius, params.click_scale * min(faces))
        if not boundary:  # no boundary in the window: the faces (and size) bound it
            out.append(max(params.min_radius, min(cap, size_cap(volume, spacing, params))) if positive and volume
                       else cap)
        else:
            out.append(min(cap, radius))
    return out


def _inside(state, origin: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Where the object may be on the crop: its 3D box (everywhere without one); only the box's
    slice range (along ``drawn_axis``) for a 2D box drawn on one slice (``drawn_on``), whose in-plane
    extent bounds the object on that slice alone. Bounding every slice by it kept a protocol click from adding the
    posterior hippocampus where it curves out of its median slice's box (docs/interactive3d.md)."""
    if state.box3d is None:
        return np.ones(shape, dtype=bool)
    inside = np.zeros(shape, dtype=bool)
    b = state.box3d
    lo = np.maximum(np.subtract((b.z0, b.y0, b.x0), origin), 0)
    hi = np.subtract((b.z1, b.y1, b.x1), origin) + 1
    if state.drawn_on is not None:
        for axis in range(3):
            if axis != state.drawn_axis:
                lo[axis], hi[axis] = 0, shape[axis]
    inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return inside


def _live_state(session, obj_id: int):  # noqa: ANN202 - the session's ObjectState
    """The object's prompt state as the session holds it, to read only (``object_state``, the
    API's, is a deep copy: a click reads every object's, which with 400 objects was most of its time)."""
    return session.store.objects[obj_id]


def _others(session, obj_id: int, crop: tuple[slice, slice, slice]
            ) -> tuple[dict[int, np.ndarray], list[Click3D], np.ndarray]:
    """The other objects on ``crop`` and what their clicks say about ``obj_id``: the current masks
    of those that reach the crop (read once per click; :meth:`object_touches` skips the rest
    without building arrays), their positive clicks inside the crop, as background clicks,
    and the voxels their clicks added to them (``claimed``), so that refining this object again
    does not take back what the user gave another one."""
    masks, clicks, claimed = {}, [], np.zeros([s.stop - s.start for s in crop], dtype=bool)
    for other in session.object_ids:
        if other == obj_id:
            continue
        state = _live_state(session, other)
        their_positive = [Click3D(c.zyx, False, c.radius) for c in state.clicks3d
                          if c.positive and all(s.start <= v < s.stop for s, v in zip(crop, c.zyx))]
        if not their_positive and not session.object_touches(other, crop):
            continue  # nothing of it on the crop: an empty mask would change nothing below
        model, masks[other] = session.object_crops(other, crop)
        if state.edit is None:
            continue
        clicks += their_positive
        claimed |= masks[other] & ~model
    return masks, clicks, claimed


def _crop(session, state, obj_id: int, vs: Sequence[tuple[int, ...]], pad: int) -> tuple[slice, slice, slice]:
    """The walker's crop: the object's 3D box (else its mask's extent), the new clicks ``vs`` and all
    its earlier ones, padded."""
    pts = [*vs, *(c.zyx for c in state.clicks3d)]
    if state.box3d is not None:
        b = state.box3d
        pts += [(b.z0, b.y0, b.x0), (b.z1, b.y1, b.x1)]
    else:
        for extent in (session.object_extent(obj_id, model_only=True), session.object_extent(obj_id)):
            if extent is not None:
                pts += list(extent)
    return crop_of(pts, session.image.spatial_shape, pad)


def slice_click(session, zyx: Sequence[int], positive: bool, obj_id: int = 1,
                agree: float = AGREE_DICE) -> ClickOutcome:
    """The click on its slice: re-decode the slice with the click, re-propagate from it (see the module).

    Any session of the contract with a ``geometry`` (a SAM 2 session too: its point prompt on the
    frame, then its memory tracking again, as MedSAM2's interactive workflow does). A session without
    an embedding cache (SAM 2 encodes every frame it tracks, on every run) counts ``encoded`` as 0.
    A rejected click's step is rolled back: the session gives back the object's slices as they were
    (a Sam2Session restores its propagated slices and sam2's state, no model run). Only a session
    whose rollback did not give the object's masks back (fewer or other slices than ``before``) is
    propagated again, and those results count in ``decoded``.
    """
    t, x, y = click_on_plane(session, zyx)
    if obj_id not in session.object_ids and not positive:
        raise PromptError(f"a background click cannot start object {obj_id}; click inside it first")
    before = _masks(session, obj_id)

    def encoded() -> int:  # planes the session's encoder ran on so far
        return len(getattr(session, "encoded_planes", ()))

    encoded0 = encoded()
    point = (x, y, 1 if positive else 0)
    decoded = 0
    try:
        with session.step():  # the click (and its box correction) is ONE undo step, all or nothing
            seed = session.add_points(t, [point], obj_id=obj_id)
            decoded = 1
            if bool(seed.mask[y, x]) != positive:  # not honoured: retry with a box that agrees with the click
                box = corrected_box(before.get(t), x, y, positive, session.plane_hw)
                if box is not None:
                    seed = session.add_box(t, box, obj_id=obj_id)  # keeps the click and the slice's logits
                    decoded = 2
            if bool(seed.mask[y, x]) != positive:  # still not honoured: roll back, keep the old result
                raise _NotHonoured
    except _NotHonoured:
        for s in session.object_ids:  # results of the restored prompts (cached or re-decoded)
            session.results(s)
        now = _masks(session, obj_id)
        if now.keys() != before.keys() or not all(np.array_equal(now[s], before[s]) for s in now):
            decoded += sum(1 for _ in session.iter_propagate())  # the rollback lost slices: track them again
        return ClickOutcome(t, point, decoded, encoded() - encoded0, rejected=True, undo_steps=0)
    steps = 1
    decoded += sum(1 for _ in session.iter_propagate())
    after = _masks(session, obj_id)
    empty = np.zeros(session.plane_hw, dtype=bool)
    changed = tuple(s for s in sorted(set(before) | set(after))
                    if not np.array_equal(before.get(s, empty), after.get(s, empty)))
    settled: dict[int, int | None] = {}
    for step in (1, -1):
        s = t + step
        settled[step] = None
        while 0 <= s < session.num_slices and (s in before or s in after):
            if dice(after.get(s, empty), before.get(s, empty)) >= agree:
                settled[step] = s
                break
            s += step
    return ClickOutcome(t, point, decoded, encoded() - encoded0, changed, settled, undo_steps=steps)
