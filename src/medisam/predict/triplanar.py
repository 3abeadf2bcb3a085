"""Tri-planar orchestration of a 3D box: three single-axis engines, one fused result.

Besides the session's axis, the box is propagated along the two other axes, each view an
:class:`~medisam.predict.axis_session.AxisSession` seeded on its own middle slice with the
box's in-plane extent and clipped to the box (their planes, which have non-square pixels
when the slice spacing differs from the pixel spacing, are first stretched to square ones,
see :class:`~medisam.predict.view_plan.ViewGrid`; the session's axis is seen as it is). The
three label volumes are fused by majority (:func:`~medisam.predict.propagation.fuse_views`)
and become the box seed's runs on the session's axis. All views share one predictor/cache.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Iterator

import numpy as np

from medisam.io.medical_image import MedicalImage
from medisam.predict.axis_session import AxisSession
from medisam.predict.contract import SliceResult, ViewProgress
from medisam.predict.propagation import fuse_views, views_in_vote
from medisam.predict.slice_thickness import effective_spacing
from medisam.predict.store import ObjectState, Run
from medisam.predict.view_plan import ViewGrid, ViewPlan, plan_for
from medisam.prompts import Box3D

log = logging.getLogger(__name__)

Views = list[tuple[ViewGrid, AxisSession]]


class TriPlanar:
    """The views and fused runs of the 3D boxes of one session (``owner``)."""

    def __init__(self, owner: AxisSession):
        self.owner = owner
        self.views: dict[tuple[int, int], Views] = {}  # (obj, box version) -> views being propagated
        self.fused: set[tuple[int, int, int]] = set()  # (obj, seed, version) whose runs are fused
        # (3D box, config) -> its plan: announced, counted for the progress bar, then followed
        self.plans: dict[tuple, ViewPlan] = {}
        self._effective: tuple[float, float, float] | None = None  # the volume's effective spacing

    def drop_stale(self) -> None:
        """Forget views, plans and fused marks of 3D boxes that were replaced, removed or undone."""
        store = self.owner.store
        live = {(o, s.box_version) for o, s in store.objects.items()}
        for key in [k for k in self.views if k not in live]:
            del self.views[key]
        self.fused = {k for k in self.fused & store.live() if (k[0], k[1], 0, k[2]) in store.runs}
        boxes = {s.box3d for s in store.objects.values()}
        self.plans = {k: plan for k, plan in self.plans.items() if k[0] in boxes}

    def plan(self, state: ObjectState) -> ViewPlan:
        """The views (and planes per view) of ``state``'s 3D box within ``config.view_budget``."""
        o, cfg = self.owner, self.owner.config
        key = (state.box3d, cfg)
        if key not in self.plans:
            self.plans[key] = plan_for(cfg, o.geometry.shape_zyx, o.geometry.spacing_zyx, o.axis, state.box3d,
                                       o.model.spec.input_size, self.effective_spacing())
        return self.plans[key]

    def effective_spacing(self) -> tuple[float, float, float] | None:
        """The volume's spacing with interpolated axes at their source slices' spacing
        (:func:`~medisam.predict.slice_thickness.effective_spacing`), measured once; None
        where the plan has no anisotropy limit to judge."""
        cfg = self.owner.config
        if cfg.views <= 1 or not math.isfinite(cfg.view_max_anisotropy):
            return None
        if self._effective is None:
            self._effective = effective_spacing(self.owner.image.array, self.owner.geometry.spacing_zyx)
        return self._effective

    def sessions(self, obj_id: int, box3d: Box3D, version: int) -> Views:
        """One single-axis engine per planned view over the box's slice range (object 1 = the
        box), made on first use."""
        key = (obj_id, version)
        if key not in self.views:
            o = self.owner
            shape, spacing = o.geometry.shape_zyx, o.geometry.spacing_zyx
            plan = self.plan(o.store.objects[obj_id])
            log.info("object %d: %s", obj_id, plan.describe())
            views = []
            window = o.store.objects[obj_id].window  # the box's own window: its planes windowed here
            for grid, stride, coarse in zip(plan.grids, plan.grid_strides, plan.grid_coarse):  # as planned
                display = grid.crop(o.display) if window is None else grid.crop(o.image.array, window)
                image = MedicalImage.from_array(display, spacing=grid.spacing_zyx(shape, spacing)[::-1], is_rgb=False)
                # a view the plan lets start coarse keeps the automatic stride (the same planes: its spacing)
                stride = None if coarse > stride else stride
                view = AxisSession(o.model, image, axis=grid.axis, predictor=o.predictor,
                                   config=replace(o.config, views=1, encode_stride=stride), display=display)
                view.add_box3d(grid.box(box3d, shape), obj_id=1)
                self._merge_planes(grid, view)
                views.append((grid, view))
            self.views[key] = views
        return self.views[key]

    def _merge_planes(self, grid: ViewGrid, view: AxisSession) -> None:
        """Count a view's encoded/visited slices as the owner's planes (and slices on its axis)."""
        o = self.owner
        for mine, theirs, slices in ((o.visited_planes, view.visited_slices, o.visited_slices),
                                     (o.encoded_planes, view.encoded_slices, o.encoded_slices)):
            mine.update((grid.axis, grid.plane_index(t)) for t in theirs)
            if grid.axis == o.axis:
                slices.update(grid.plane_index(t) for t in theirs)

    def planned(self, obj_id: int, state: ObjectState, seed: int) -> int:
        """Items :meth:`iterate` would still yield for the box seed (upper bound)."""
        version = state.seeds[seed].version
        if (obj_id, seed, version) in self.fused:
            return 0
        views = self.views.get((obj_id, version))
        if views is not None:
            return sum(view.planned_slices("both") for _, view in views)
        return self.plan(state).planes_after_seeds

    def iterate(self, obj_id: int, seed: int) -> Iterator[SliceResult | ViewProgress]:
        """Propagate the 3D box of ``obj_id`` along its views, then store the majority-fused
        masks as the box seed's runs. Yields the session axis's view as :class:`SliceResult`
        (its slices ARE session slices) and the two other views as :class:`ViewProgress`."""
        o = self.owner
        state = o.store.objects[obj_id]
        version = state.seeds[seed].version
        if (obj_id, seed, version) in self.fused:
            return
        b = state.box3d
        shape = o.geometry.shape_zyx
        views = self.sessions(obj_id, b, version)
        for grid, view in views:
            for r in view.iter_propagate("both"):
                self._merge_planes(grid, view)
                index, mask = grid.plane_index(r.slice), grid.restore_plane(r.mask, shape) >= 0.5
                if grid.axis == o.axis:
                    yield r.replace(slice=index, obj_id=obj_id, mask=mask)
                else:
                    yield ViewProgress(grid.axis, index, obj_id, mask, r.score, r.source, r.stop)
        self._store_fused(obj_id, state, seed, version, views)

    def _voters(self, obj_id: int, views: Views, votes: list[np.ndarray],
                session_scores: list[float]) -> list[np.ndarray]:
        """``votes`` with each view that fails :func:`views_in_vote` replaced by the session
        axis's view (its vote goes to the session axis), with a warning that says so; only
        where the session axis's view is confident (mean of ``session_scores`` at least
        ``config.view_trusted_score``). The warning is also one of the owner's ``notices``."""
        cfg = self.owner.config
        if not session_scores or float(np.mean(session_scores)) < cfg.view_trusted_score:
            return votes
        kept, agree = views_in_vote(votes, cfg.view_min_agreement)
        for i, a in enumerate(agree, start=1):
            if i not in kept:
                notice = (f"object {obj_id}: the {'kji'[views[i][0].axis]} view is left out of the vote: its mask "
                          f"agrees with the session axis's at Dice {a:.2f} (< view_min_agreement "
                          f"{cfg.view_min_agreement:.2f})")
                log.warning("%s", notice)
                self.owner.notices.append(notice)
        return [v if i in kept else votes[0] for i, v in enumerate(votes)]

    def _store_fused(self, obj_id: int, state: ObjectState, seed: int, version: int, views: Views) -> None:
        o = self.owner
        b, shape = state.box3d, o.geometry.shape_zyx
        crop = b.slices
        votes = []
        for grid, view in views:
            planes = np.zeros(view.image.array.shape, dtype=bool)
            for t, r in view.results(1).items():
                view.geometry.put(planes, t, r.mask, True)
            full: list = list(crop)
            full[grid.axis] = slice(None)  # the view volume already spans the box's range on its axis
            votes.append(grid.restore(planes, shape)[tuple(full)])
        main_grid, main_view = views[0]  # the session axis's own view: scores per (encoded) slice
        scores = {main_grid.plane_index(t): r.score for t, r in main_view.results(1).items()}
        fused = np.zeros(shape, dtype=bool)
        fused[crop] = fuse_views(self._voters(obj_id, views, votes, list(scores.values())))
        lo, hi = state.slice_range

        def result(t: int, source: str) -> SliceResult:
            return SliceResult(t, obj_id, o.geometry.take(fused, t).copy(), scores.get(t, 0.0), None, source,
                               axis=o.axis)

        runs = o.store.runs
        runs[(obj_id, seed, 0, version)] = Run(seed, (result(seed, "prompt"),))
        runs[(obj_id, seed, 1, version)] = Run(hi, tuple(result(t, "fused") for t in range(seed + 1, hi + 1)))
        runs[(obj_id, seed, -1, version)] = Run(lo, tuple(result(t, "fused") for t in range(seed - 1, lo - 1, -1)))
        self.fused.add((obj_id, seed, version))
        del self.views[(obj_id, version)]
