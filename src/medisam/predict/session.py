"""Interactive 3D segmentation by slice-to-slice propagation with a 2D SAM/LiteMedSAM model.

A :class:`VolumeSession` is the single-axis engine (:class:`~medisam.predict.axis_session.AxisSession`:
prompts on slices of one axis, propagated slice to slice; see there how slices are owned)
plus the tri-planar orchestration of 3D boxes (:mod:`medisam.predict.triplanar`). It
implements the session contract (:mod:`medisam.predict.contract`); open one with
:func:`medisam.predict.factory.open_session`.

A 3D box (:meth:`VolumeSession.add_box3d`) is by default segmented tri-planarly
(``PropagationConfig.views=3``): the box is propagated along all three axes and the three
label volumes are fused by majority; the fused masks become the 3D box seed's results on
the session's axis, so corrections on single slices work as usual. ``views=1``, or
``propagate(direction="forward"/"backward")``, propagates the box along the session's
axis only. Prompts on single slices always propagate along the session's axis.

Each plane is encoded at most once per view: embeddings live in the predictor's
:class:`~medisam.predict.EmbeddingCache`, sized from the model to hold every plane of
the three views, and only planes that a prompt or a run visits are encoded.
"""

from __future__ import annotations

from typing import Iterator

from medisam.predict.axis_runs import clip_to as _clip  # noqa: F401 - re-export (old name)
from medisam.predict.axis_runs import two_pass
from medisam.predict.axis_session import AxisSession
from medisam.predict.contract import DIRECTIONS, SliceResult, ViewProgress, check_object_id
from medisam.predict.store import KEEP_UNDO_RESULTS, ObjectState, Run, SlicePrompts
from medisam.predict.triplanar import TriPlanar, Views
from medisam.predict.view_plan import ViewPlan, encodings_at_most
from medisam.prompts import Box3D

_Run = Run  # old name

__all__ = ["DIRECTIONS", "KEEP_UNDO_RESULTS", "ObjectState", "SlicePrompts", "SliceResult", "ViewProgress",
           "VolumeSession", "check_object_id"]


class VolumeSession(AxisSession):
    """Segment objects through a 3D volume from prompts on a few slices (arguments: :class:`AxisSession`).

    Attributes:
        encoded_slices / visited_slices: slices of the session's axis the encoder ran on /
            whose embedding a prompt or run used.
        encoded_planes / visited_planes: the same as ``(axis, index)`` pairs over every view
            (the other axes' planes of a tri-planar 3D box included).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._triplanar = TriPlanar(self)

    def _planes_needed(self) -> int:
        """Every slice of the session's axis (of all three axes with ``views=3``)."""
        return sum(self.geometry.shape_zyx) if self.config.views > 1 else self.geometry.num_slices

    def view_plan(self, obj_id: int) -> ViewPlan | None:
        """The views (and planes per view) a 3D box of ``obj_id`` is propagated over, within
        ``config.view_budget`` (:func:`~medisam.predict.view_plan.plan_views`; None: no 3D box)."""
        state = self._objects[self._known(obj_id)]
        return None if state.box3d is None else self._triplanar.plan(state)

    def _view_sessions(self, obj_id: int, box3d: Box3D, version: int) -> Views:
        return self._triplanar.sessions(obj_id, box3d, version)

    # ------------------------------------------------ hooks of the single-axis engine
    def _extra_state(self) -> object:
        return self._triplanar.fused  # which 3D-box runs are the fused result (their views are dropped)

    def _set_extra_state(self, extra: object) -> None:
        self._triplanar.fused = set(extra or ())

    def _before_propagate(self) -> None:
        self._triplanar.drop_stale()

    def _fused_seed(self, state: ObjectState, direction: str) -> int | None:
        """The seed slice of ``state``'s 3D box when it is segmented tri-planarly, else None."""
        if self.config.views <= 1 or direction != "both" or state.box3d is None:
            return None
        return next((t for t, p in state.seeds.items() if p.version == state.box_version), None)

    def _fuse_iter(self, obj_id: int, seed: int) -> Iterator[SliceResult | ViewProgress]:
        return self._triplanar.iterate(obj_id, seed)

    def _fuse_planned(self, obj_id: int, state: ObjectState, seed: int) -> int:
        return self._triplanar.planned(obj_id, state, seed)

    def planned_slices(self, direction: str = "both") -> int:
        self._triplanar.drop_stale()
        return super().planned_slices(direction)

    def plan_lines(self, direction: str = "both") -> list[str]:
        """The cost model of each 3D box (and two-pass slice box) of the coming propagation; a
        box's encodings also in time where this machine's encoder was measured
        (:func:`~medisam.models.speed_profile.encoding_time`)."""
        pieces: list[tuple[str, int | None]] = []  # (line, its encodings at most, where counted)
        along_axis = True  # every counted piece runs along the session axis (no 3D box's views)
        for obj_id in self.object_ids:
            state = self._objects[obj_id]
            seed = self._fused_seed(state, direction)
            if seed is not None:
                if self._fuse_planned(obj_id, state, seed) > 0:  # not fused yet
                    plan = self.view_plan(obj_id)
                    pieces.append((f"object {obj_id}: {plan.describe()}", plan.encoded_at_most))
                    along_axis = False
            elif any(two_pass(self, obj_id, t) for t in state.seeds):
                pieces.append((f"object {obj_id}: slice box in two passes (the stop-ruled chain, then the 3D-box "
                               "engine inside its slice range and the box): encodes the chain's slices only, decodes "
                               "them twice", None))
            else:  # runs along the session axis: a slice prompt's (ended by the stop rules) or one direction's
                piece = self._axis_plan(obj_id, direction)
                if piece:
                    pieces.append(piece)
        lines = [line for line, _ in pieces]
        counted = [(i, n) for i, (_, n) in enumerate(pieces) if n is not None]
        if len(counted) == 1:
            time = self._encoding_time(counted[0][1])
            lines[counted[0][0]] += f"; {time}" if time else ""
        elif counted:  # objects share a plane's encoding: the lines' sum is not the cost
            total = sum(n for _, n in counted)
            if along_axis:  # no more than the axis's planes
                total = min(total, encodings_at_most(self.geometry.num_slices, self.encoder.stride))
            time = self._encoding_time(total)
            lines.append(f"in all, {len(counted)} objects: at most {total} encodings (an encoded plane serves "
                         "every object on it; each line above counts its object alone)"
                         + (f"; {time}" if time else ""))
        return lines
