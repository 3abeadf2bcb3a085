"""The views of a 3D box and their cost: which planes a tri-planar propagation encodes.

Multi-view (tri-planar) propagation of a 3D box also slices the volume along the other two
axes, whose planes have one in-plane axis along the original slice direction and so
non-square pixels when the spacing is anisotropic (e.g. 5 mm slices of 0.7 mm pixels).
:class:`ViewGrid` describes how such a view is cropped to the box's slice range and
stretched along its coarse in-plane axis to (near) square pixels before encoding, so the
encoder sees anatomy with its true aspect. :func:`plan_views` chooses the views and their
planes within a budget counted in encodings (:class:`ViewPlan`, the cost model printed
before the work).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Callable, Sequence

import numpy as np

from medisam.errors import InputError
from medisam.io.intensity import apply_window
from medisam.predict.propagation import MAX_VIEW_ANISOTROPY, PropagationConfig
from medisam.predict.volume import SliceGeometry, resample_axis
from medisam.prompts import Box3D


#: Longest side a view is stretched to when making its pixels square (the encoder resizes
#: to 256 or 1024 anyway; this bounds memory for thick-slice volumes).
MAX_VIEW_SIDE = 1024
#: Pixel aspect ratios up to this are treated as square (no resampling).
SQUARE_TOLERANCE = 1.05


@dataclass(frozen=True)
class ViewGrid:
    """One slicing axis's view of a 3D box: slices ``lo..hi`` of ``axis`` (or only the
    sampled ``planes`` among them), stretched along ``stretch_axis`` (an array axis of the
    plane, or None) from its length to ``size``.

    The view volume is ``display[lo:hi+1 along axis]`` (``display[planes]`` when sampled)
    with ``stretch_axis`` resampled to ``size`` voxels, so its planes have near-square
    pixels in mm. Masks of a sampled view are interpolated linearly between its planes
    when restored to ``lo..hi``.
    """

    axis: int
    lo: int
    hi: int
    stretch_axis: int | None = None
    size: int = 0
    planes: tuple[int, ...] | None = None

    @staticmethod
    def for_box(shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float], axis: int,
                box3d: Box3D, square: bool = True, max_side: int = MAX_VIEW_SIDE) -> "ViewGrid":
        """The view of ``box3d`` along ``axis``: its slice range and, with ``square``, the
        stretch that makes the plane's pixels square (none when they already are within 5 %)."""
        _, lo, hi = SliceGeometry(tuple(shape_zyx), axis, tuple(spacing_zyx)).box3d_to_plane(box3d)
        coarse, ratio = plane_anisotropy(spacing_zyx, axis)
        if not square or ratio <= SQUARE_TOLERANCE:
            return ViewGrid(axis, lo, hi)
        n = shape_zyx[coarse]
        size = min(int(round(n * ratio)), max(n, max_side))
        if size <= n:
            return ViewGrid(axis, lo, hi)
        return ViewGrid(axis, lo, hi, coarse, size)

    @property
    def indices(self) -> tuple[int, ...]:
        """Original slice index of each plane of the view volume."""
        return self.planes if self.planes is not None else tuple(range(self.lo, self.hi + 1))

    @property
    def num_planes(self) -> int:
        return len(self.indices)

    def plane_index(self, t: int) -> int:
        """Original slice index of view-volume plane ``t``."""
        return self.indices[t]

    def sampled(self, n: int) -> "ViewGrid":
        """This view on ``n`` planes spread evenly over ``lo..hi`` (both ends and the middle
        slice included)."""
        if n >= self.hi - self.lo + 1:
            return replace(self, planes=None)
        picks = np.unique(np.round(np.linspace(self.lo, self.hi, max(n, 2))).astype(int))
        middle = self.lo + (self.hi - self.lo) // 2  # the 3D box's seed slice: its embedding is shared
        if middle not in picks:
            inner = np.arange(1, len(picks) - 1)
            if len(inner):
                picks[inner[np.argmin(np.abs(picks[inner] - middle))]] = middle
            picks = np.unique(np.append(picks, middle))
        return replace(self, planes=tuple(int(p) for p in picks))

    def plane_hw(self, shape_zyx: Sequence[int]) -> tuple[int, int]:
        """``(H, W)`` of the view's planes (after the stretch)."""
        rows, cols = (a for a in range(3) if a != self.axis)
        size = [int(v) for v in shape_zyx]
        if self.stretch_axis is not None:
            size[self.stretch_axis] = self.size
        return size[rows], size[cols]

    def crop(self, volume: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
        """The view volume of a full ``(Z, Y, X)`` display volume (float32, stretched; an array or a
        :class:`~medisam.predict.display_volume.DisplayVolume`); with a ``window``, ``volume`` is the
        image itself and only the view's planes are windowed."""
        sl: list = [slice(None)] * 3  # one index (a lazy display maps only the view's planes)
        sl[self.axis] = slice(self.lo, self.hi + 1) if self.planes is None else np.asarray(self.planes)
        out = volume[tuple(sl)]
        if window is not None:
            out = apply_window(out, window)
        if self.stretch_axis is not None:
            out = resample_axis(out, self.stretch_axis, self.size, "linear")
        return out

    def spacing_zyx(self, shape_zyx: Sequence[int], spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
        """Voxel size of the view volume in mm."""
        out = [float(s) for s in spacing_zyx]
        if self.stretch_axis is not None:
            out[self.stretch_axis] *= shape_zyx[self.stretch_axis] / self.size
        if self.planes is not None and len(self.planes) > 1:
            out[self.axis] *= (self.hi - self.lo) / (len(self.planes) - 1)
        return out[0], out[1], out[2]

    def box(self, box3d: Box3D, shape_zyx: Sequence[int]) -> Box3D:
        """``box3d`` (full-volume voxel indices) in the view volume's voxel indices."""
        lo = [box3d.z0, box3d.y0, box3d.x0]
        hi = [box3d.z1, box3d.y1, box3d.x1]
        lo[self.axis] -= self.lo
        hi[self.axis] -= self.lo
        if self.planes is not None:
            lo[self.axis], hi[self.axis] = 0, len(self.planes) - 1
        if self.stretch_axis is not None:
            a, f = self.stretch_axis, self.size / shape_zyx[self.stretch_axis]
            lo[a] = int(math.floor(lo[a] * f))
            hi[a] = min(self.size - 1, max(lo[a], int(math.ceil((hi[a] + 1) * f)) - 1))
        return Box3D(lo[2], lo[1], lo[0], hi[2], hi[1], hi[0])

    def restore(self, planes: np.ndarray, shape_zyx: Sequence[int]) -> np.ndarray:
        """A view-volume mask (bool/float) -> the fraction of each original voxel it covers,
        on the original grid of slices ``lo..hi`` (float32; a sampled view's planes are
        interpolated linearly in between)."""
        out = np.asarray(planes, dtype=np.float32)
        if self.stretch_axis is not None:
            out = resample_axis(out, self.stretch_axis, shape_zyx[self.stretch_axis], "area")
        if self.planes is not None:
            out = interpolate_planes(out, self.axis, np.asarray(self.planes) - self.lo, self.hi - self.lo + 1)
        return out

    def restore_plane(self, plane: np.ndarray, shape_zyx: Sequence[int]) -> np.ndarray:
        """One plane of the view volume -> fractions on the original plane grid (float32)."""
        out = np.asarray(plane, dtype=np.float32)
        if self.stretch_axis is None:
            return out
        rows, cols = (a for a in range(3) if a != self.axis)
        index = 1 if self.stretch_axis == rows else 2
        return resample_axis(out[None], index, shape_zyx[self.stretch_axis], "area")[0]


def plane_anisotropy(spacing_zyx: Sequence[float], axis: int) -> tuple[int, float]:
    """The array axis of the longer pixel side of the planes along ``axis``, and how many
    times longer it is than the other side (1.0: square pixels)."""
    r, c = (a for a in range(3) if a != axis)
    sr, sc = float(spacing_zyx[r]), float(spacing_zyx[c])
    return (r, sr / sc) if sr > sc else (c, sc / sr)


def interpolate_planes(volume: np.ndarray, axis: int, positions: np.ndarray, length: int) -> np.ndarray:
    """Planes of ``volume`` along ``axis`` sit at ``positions`` (increasing, first 0, last
    ``length - 1``); linear interpolation onto all ``length`` positions."""
    moved = np.moveaxis(volume, axis, 0)
    t = np.arange(length, dtype=np.float64)
    k = np.clip(np.searchsorted(positions, t, side="right") - 1, 0, len(positions) - 2) if len(positions) > 1 \
        else np.zeros(length, dtype=int)
    if len(positions) == 1:
        return np.moveaxis(np.repeat(moved[:1], length, axis=0), 0, axis)
    span = (positions[k + 1] - positions[k]).astype(np.float64)
    w = ((t - positions[k]) / span).astype(np.float32).reshape(-1, *([1] * (moved.ndim - 1)))
    out = moved[k] * (1 - w) + moved[k + 1] * w
    return np.moveaxis(out, 0, axis)


#: A view is skipped when the box is thinner than this (pixels at the encoder's input size)
#: along either axis of its planes: a 3-slice slab seen edge-on is a line to the encoder.
MIN_VIEW_BOX_PX = 8.0
#: Fewest planes worth propagating a sampled secondary view over.
MIN_VIEW_PLANES = 3


def encodings_at_most(planes: int, stride: int) -> int:
    """Encodings of a run over ``planes`` planes that encodes one plane in ``stride`` (the
    planes between get interpolated embeddings), plus its last plane and its seed."""
    return planes if stride <= 1 else min(planes, -(-planes // stride) + 2)


def stride_words(stride: int, coarse: int) -> str:
    """How a propagation at ``stride`` (trying ``coarse`` first) encodes, in a plan line's words."""
    if coarse > stride:
        return f"1 in {coarse} to 1 in {stride} encoded"
    return f"1 in {stride} encoded" if stride > 1 else "each encoded"


@dataclass(frozen=True)
class ViewPlan:
    """Which views of a 3D box are encoded, and how many planes each (the cost model).

    ``grids[0]`` is the session axis's view (every plane of the box's range); the others
    are secondary views, possibly sampled.
    ``single_axis``: the encodings (at most) of the single-axis propagation of the box, the
    budget's unit; ``budget``: the encodings allowed (None: unbounded).
    ``notes`` says why a view was sampled or skipped; ``strides``: per grid, the encode
    stride of its propagation (:class:`~medisam.predict.propagation.PropagationConfig`
    ``encode_stride``; empty: 1); ``coarse``: per grid, the stride its propagation tries
    first where that is coarser (``refine_below_dice``; empty: the stride).
    """

    grids: tuple[ViewGrid, ...]
    single_axis: int
    budget: int | None
    notes: tuple[str, ...] = ()
    strides: tuple[int, ...] = ()
    coarse: tuple[int, ...] = ()

    @property
    def planes(self) -> int:
        """Planes to visit (the decoder runs on each; runs may stop early)."""
        return sum(g.num_planes for g in self.grids)

    @property
    def planes_after_seeds(self) -> int:
        """:attr:`planes` less each view's seed plane, decoded when the view opens: the planes a
        propagation yields one by one, which its progress bar counts."""
        return self.planes - len(self.grids)

    @property
    def grid_strides(self) -> tuple[int, ...]:
        """The encode stride of each grid (1 where none was given)."""
        return self.strides or (1,) * len(self.grids)

    @property
    def grid_coarse(self) -> tuple[int, ...]:
        """The stride each grid's propagation tries first (its stride where none was given)."""
        return self.coarse or self.grid_strides

    @property
    def encoded_at_most(self) -> int:
        """Encodings at most (:func:`encodings_at_most` of every view)."""
        return sum(encodings_at_most(g.num_planes, s) for g, s in zip(self.grids, self.grid_strides))

    def encoded_planes(self) -> set[tuple[int, int]]:
        """The ``(axis, slice)`` planes the plan encodes at most: each view's planes at its stride
        (every ``stride``-th plane of the view and its last, as
        :meth:`~medisam.predict.encoder.PlaneEncoder.anchors` interpolates between them) and its
        seed, the middle plane its box prompts; a plane shared by several boxes' plans is encoded
        once (the cache), so sets of plans add up."""
        out = set()
        for grid, stride in zip(self.grids, self.grid_strides):
            idx = grid.indices
            out.update((grid.axis, p) for t, p in enumerate(idx) if t % stride == 0 or t == len(idx) - 1)
            out.add((grid.axis, idx[(len(idx) - 1) // 2]))
        return out

    def describe(self) -> str:
        names = "kji"
        strides = self.grid_strides
        coarse = self.grid_coarse
        views = ", ".join(f"{names[g.axis]}: {g.num_planes}" + (" sampled" if g.planes is not None else "")
                          + (f" ({stride_words(s, c)})" if s > 1 or c > s else "")
                          for g, s, c in zip(self.grids, strides, coarse))
        cap = f", budget {self.budget}" if self.budget is not None else ""
        note = f" ({'; '.join(self.notes)})" if self.notes else ""
        # what the progress bar counts, where it differs from the plan's planes (each view's seed comes first)
        after = self.planes_after_seeds if len(self.grids) > 1 else None
        if any(s > 1 for s in strides):
            seeded = f" ({after} after the views' seed planes)" if after is not None else ""
            cost = f"{self.planes} planes{seeded}, at most {self.encoded_at_most} encodings"
        else:
            seeded = f" ({after} planes after the views' seed planes)" if after is not None else ""
            cost = f"{self.encoded_at_most} encodings{seeded}"
        return (f"3D box plan: {len(self.grids)} view(s) [{views}] = {cost} vs "
                f"{self.single_axis} along one axis{cap}{note}")


def plan_views(shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float], axis: int,
               box3d: Box3D, views: int = 3, budget: float | None = 1.5, input_size: int = 256,
               sampling: str = "secondary", stride_for: Callable[[float], int] | None = None,
               session_stride: int | None = None, max_anisotropy: float = MAX_VIEW_ANISOTROPY,
               effective_spacing_zyx: Sequence[float] | None = None) -> ViewPlan:
    """The views a tri-planar propagation of ``box3d`` encodes, within ``budget`` times the
    encodings of the box's single-axis propagation (``None``: every plane of every view).

    ``stride_for``: the encode stride of a view whose planes are that many mm apart
    (:meth:`PropagationConfig.stride_for`; None: every plane encoded); it sets the
    single-axis cost, the budget's unit (a thin-slice axis that interpolates encodes one
    plane in two). ``session_stride``: the session axis's encode stride in a tri-planar plan
    (None: the single axis's). A coarser session axis leaves the budget to the other views:
    on 1 mm slices, 1 plane in 4 leaves them about half the session axis's planes within
    1.5x, as many as they had at about 2x with 1 plane in 2 (docs/speed.md, stop 39).
    Secondary views whose box is thin at the encoder's scale (:data:`MIN_VIEW_BOX_PX`), or
    whose planes cross slices more than ``max_anisotropy`` times thicker than their pixels
    (:data:`MAX_VIEW_ANISOTROPY`; judged on ``effective_spacing_zyx`` where given: an axis
    interpolated from thicker slices counts at their spacing,
    :func:`~medisam.predict.slice_thickness.effective_spacing`), are skipped: a 2-of-3 vote needs both, so the plan is
    then the session axis alone (the single-axis propagation, at its stride). When every
    plane of the three views exceeds the budget, the views are encoded on evenly spread
    planes, all at one physical plane distance (mm), the smallest that fits:
    ``sampling="secondary"`` (default) keeps every plane of the session axis and samples the
    other two, ``"uniform"`` samples the three views alike. A secondary view left with fewer
    than :data:`MIN_VIEW_PLANES` planes drops the vote.
    """
    if sampling not in ("uniform", "secondary"):
        raise InputError(f"view sampling must be 'uniform' or 'secondary', got {sampling!r}")

    def stride(g: ViewGrid) -> int:
        # a sampled view encodes each of its planes (sampling it densely enough to interpolate
        # would visit twice the planes for the same encodings: not measured, so not planned)
        if stride_for is None or g.planes is not None:
            return 1
        return int(stride_for(g.spacing_zyx(shape_zyx, spacing_zyx)[g.axis]))

    def strides(grids: Sequence[ViewGrid], tri: bool = True) -> tuple[int, ...]:
        # the session axis's stride of a tri-planar plan (a plan of one view is the single axis);
        # a sampled session view (``sampling="uniform"``) encodes each of its planes
        own = session_stride if tri and session_stride is not None else None
        return tuple(own if own is not None and g.axis == axis and g.planes is None else stride(g) for g in grids)

    def cost(grids: Sequence[ViewGrid]) -> int:
        return sum(encodings_at_most(g.num_planes, s) for g, s in zip(grids, strides(grids)))

    def planned(grids: Sequence[ViewGrid], allowance: int | None, notes: list[str]) -> ViewPlan:
        return ViewPlan(tuple(grids), single, allowance, tuple(notes), strides(grids, tri=len(grids) > 1))

    main = ViewGrid.for_box(shape_zyx, spacing_zyx, axis, box3d, square=False)
    single = encodings_at_most(main.num_planes, stride(main))
    if views <= 1:
        return planned([main], None, [])
    names = "kji"
    notes: list[str] = []
    others = []
    for a in (b for b in range(3) if b != axis):
        grid = ViewGrid.for_box(shape_zyx, spacing_zyx, a, box3d, square=True)
        h, w = grid.plane_hw(shape_zyx)
        sub = grid.box(box3d, shape_zyx)
        rows, cols = (b for b in range(3) if b != a)
        seen = spacing_zyx if effective_spacing_zyx is None else effective_spacing_zyx
        coarse, ratio = plane_anisotropy(seen, a)
        if ratio > max_anisotropy:
            fine = seen[coarse] / ratio
            source = ("" if seen[coarse] == spacing_zyx[coarse]
                      else f" interpolated from {seen[coarse]:g} mm ones")
            notes.append(f"{names[a]} skipped: its pixels are {ratio:.1f}x longer across the slices "
                         f"({spacing_zyx[coarse]:g} mm slices{source}, {fine:g} mm pixels; "
                         f"at most {max_anisotropy:g}x)")
            continue
        extent = {0: sub.z1 - sub.z0 + 1, 1: sub.y1 - sub.y0 + 1, 2: sub.x1 - sub.x0 + 1}
        thin = min(extent[rows], extent[cols]) * input_size / max(h, w)
        if thin < MIN_VIEW_BOX_PX:
            notes.append(f"{names[a]} skipped: the box is {thin:.1f} px thin in its planes")
            continue
        others.append(grid)
    if len(others) < 2:
        return planned([main], None, notes)
    grids = [main, *others]
    if budget is None:
        return planned(grids, None, notes)
    allowance = int(math.floor(budget * single + 1e-9))
    if cost(grids) <= allowance:
        return planned(grids, allowance, notes)
    fixed = grids[:0 if sampling == "uniform" else 1]
    free = grids[len(fixed):]
    lengths = [(g.hi - g.lo) * spacing_zyx[g.axis] for g in free]

    def sampled_at(step: float) -> list[ViewGrid]:
        return [g.sampled(min(g.num_planes, int(math.floor(mm / step + 1e-9)) + 1)) for g, mm in zip(free, lengths)]

    left = allowance - cost(fixed)
    # the smallest plane distance that fits: plane counts change only where a view's length
    # is a whole multiple of it, so those distances are the candidates
    candidates = sorted({mm / k for g, mm in zip(free, lengths) for k in range(1, g.num_planes) if mm > 0})
    step = next((c for c in candidates if cost(sampled_at(c)) <= left), None)
    sampled = sampled_at(step) if step is not None else []
    few = [g for g in (sampled or free) if g.axis != axis and (not sampled or g.num_planes < MIN_VIEW_PLANES)]
    if few:
        notes.append(f"{'/'.join(names[g.axis] for g in few)}: fewer than {MIN_VIEW_PLANES} planes fit "
                     "the budget; the vote is dropped")
        return planned([main], allowance, notes)
    notes.append(f"planes every {step:.1f} mm")
    return planned([*fixed, *sampled], allowance, notes)


def plan_for(config: PropagationConfig, shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float],
             axis: int, box3d: Box3D, input_size: int = 256,
             effective_spacing_zyx: Sequence[float] | None = None) -> ViewPlan:
    """The plan a session with ``config`` follows for ``box3d`` (views, budget, sampling and
    strides from the config; ``effective_spacing_zyx``: see :func:`plan_views`): the one place
    a 3D box's plan is made."""
    plan = plan_views(shape_zyx, spacing_zyx, axis, box3d, views=config.views, budget=config.view_budget,
                      input_size=input_size, sampling=config.view_sampling, stride_for=config.stride_for,
                      session_stride=config.view_session_stride_for(spacing_zyx[axis]),
                      max_anisotropy=config.view_max_anisotropy, effective_spacing_zyx=effective_spacing_zyx)
    if len(plan.grids) == 1:  # the single axis: coarse planes first (``refine_below_dice``)
        plan = replace(plan, coarse=(config.coarse_stride(plan.grid_strides[0]),))
    return plan
