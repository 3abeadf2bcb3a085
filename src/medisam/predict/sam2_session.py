"""Memory-based propagation through volumes and videos with SAM 2 / MedSAM2.

:class:`Sam2Session` drives the official ``sam2`` video predictor (the model's ``net`` is a
``SAM2VideoPredictor``) on frames held in memory: the inference state is built here from
:class:`~medisam.predict.sam2_frames.NormalisedFrames` instead of sam2's JPEG-folder
``init_state`` (through :mod:`~medisam.predict.sam2_state`). It implements the session contract
(:mod:`medisam.predict.contract`), undo included:
prompts on a slice/frame for an object id, ``iter_propagate`` yielding per frame, and
``propagate`` returning a label map whose values are the object ids.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from medisam.errors import InputError, ModelError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.models.promptable import PromptableModel
from medisam.predict import sam2_state
from medisam.predict.propagation import clip_to
from medisam.predict.contract import (MAX_NOTICES, SliceResult, check_drawn_axis, check_object_id, paint_order,
                                     run_to_end, steps_of, tracks_with_memory)
from medisam.predict.sam2_frames import NormalisedFrames, as_frames, display_frames
from medisam.predict.store import KEEP_UNDO_RESULTS, MAX_UNDO, ObjectState, PromptStore, SlicePrompts
from medisam.predict.volume import SliceGeometry, as_box3d, parse_axis
from medisam.prompts import Box, Box3D, Points

log = logging.getLogger(__name__)


class Sam2Session:
    """Promptable tracking of objects through a volume ``(Z, Y, X)``, a video or a 2D image.

    The API is :class:`~medisam.predict.session.VolumeSession`'s: ``add_box`` /
    ``add_points`` / ``add_mask`` return the prompted frame's :class:`SliceResult`,
    ``iter_propagate`` yields one :class:`SliceResult` per object and frame, ``propagate``
    returns the label map, and ``remove_object`` / ``reset`` / ``undo`` edit the prompts.

    Args:
        model: a loaded model of family ``"sam2"`` (``load_model("medsam2", ...)``).
        image: :class:`MedicalImage` (2D, volume or video) or an array ``(Z, Y, X)`` /
            ``(T, Y, X, 3)`` / 2D image.
        axis: the array axis whose slices are the frames, ``0/1/2`` or ``"k"/"j"/"i"``, as
            :class:`~medisam.predict.session.VolumeSession`'s: a grey volume is tracked along
            it (e.g. its acquisition axis, :func:`~medisam.predict.volume.acquisition_axis`);
            videos and 2D images along axis 0 only.
        window: CT window preset or ``(width, level)``; default per modality, one mapping
            for a whole grey volume, per frame for videos (see :mod:`~medisam.predict.sam2_frames`).

    Prompts are in pixel coordinates of one slice/frame (x = column, y = row of the plane, whose
    rows and columns are the other two array axes in order: :mod:`medisam.predict.volume`'s table),
    ``slice`` indexes ``axis``; 3D boxes and the label map are in the volume's ``(Z, Y, X)``. Frames with
    a prompt are SAM 2 "conditioning" frames; the others are predicted from the memory of
    the frames already tracked. ``SliceResult.score`` is SAM 2's object-presence
    probability (sigmoid of its object score), ``low_res_logits`` its ``(S/4, S/4)`` logits.
    """

    def __init__(self, model: PromptableModel, image: MedicalImage | np.ndarray, axis: int | str = 0,
                 window: str | tuple[float, float] | None = None, max_undo: int = MAX_UNDO):
        if not tracks_with_memory(model):
            raise ModelError(f"Sam2Session needs a SAM 2 model, got {model.name!r} (family "
                             f"{model.spec.family}); use VolumeSession")
        self.model = model
        self._axis = parse_axis(axis)
        self.image, frames = as_frames(image, self._axis)
        self.num_frames = frames.shape[0]
        self.height, self.width = frames.shape[1:3]
        self.frames = NormalisedFrames(display_frames(self.image, frames, window), int(model.net.image_size))
        self.store = _UndoStore(max_undo, capture=self._capture, on_rollback=self._rolled_back)
        self.notices: deque[str] = deque(maxlen=MAX_NOTICES)  # the contract's; SAM 2 says nothing beyond results
        self._results: dict[int, dict[int, SliceResult]] = {}
        self._state = self._new_state()

    # ------------------------------------------------------------------ state
    @property
    def predictor(self):  # noqa: ANN201 - SAM2VideoPredictor
        """The ``SAM2VideoPredictor`` network."""
        return self.model.net

    @property
    def num_slices(self) -> int:
        return self.num_frames

    @property
    def plane_hw(self) -> tuple[int, int]:
        """``(H, W)`` of every slice/frame."""
        return self.height, self.width

    @property
    def axis(self) -> int:
        """The array axis whose slices are the frames (0 for videos and 2D images)."""
        return self._axis

    @property
    def geometry(self) -> SliceGeometry:
        """How the frames map to the ``(Z, Y, X)`` grid (as a VolumeSession's): 3D clicks
        (:func:`~medisam.predict.refine3d.click_on_plane`) read it to find their slice and pixel,
        3D boxes and the label map go through it."""
        spacing = self.image.spacing_zyx if self.image.is_volume else (1.0, 1.0, 1.0)
        shape = [self.height, self.width]  # the plane's rows and columns: the other two axes in order
        shape.insert(self._axis, self.num_frames)
        return SliceGeometry(tuple(shape), self._axis, tuple(float(v) for v in spacing[-3:]))

    @property
    def object_ids(self) -> list[int]:
        """Object ids with prompts, sorted."""
        return sorted(self.store.objects)

    @property
    def can_undo(self) -> int:
        """Undo steps available."""
        return len(self.store.history)

    def step(self):  # noqa: ANN201 - context manager
        """``with session.step(): ...``: the calls inside are ONE undo step, all or nothing."""
        return self.store.step()

    def slice_prompts(self, slice: int, obj_id: int) -> SlicePrompts | None:
        """The prompts of ``obj_id`` on ``slice`` (None: none there)."""
        state = self.store.objects.get(check_object_id(obj_id))
        return None if state is None else state.seeds.get(slice)

    def found_box(self, slice: int, obj_id: int = 1) -> Box | None:  # noqa: ARG002 - the contract's signature
        """None: SAM 2 answers points alone itself, with no box search (:mod:`medisam.predict.point_box`)."""
        return None

    def _new_state(self) -> dict[str, Any]:
        return sam2_state.new_state(self.frames, self.height, self.width, self.model.device)

    def _autocast(self):  # noqa: ANN202
        if self.model.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _check_frame(self, frame: int) -> int:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"slice/frame index must be an integer, got {frame!r}")
        if not 0 <= frame < self.num_frames:
            raise InputError(f"slice/frame {frame} out of range: 0..{self.num_frames - 1}")
        return int(frame)

    # ---------------------------------------------------------------- prompts
    def add_box(self, slice: int, box: Box | Sequence[float], obj_id: int = 1,
                points: Points | Sequence[Sequence[float]] | None = None) -> SliceResult:
        """Prompt ``obj_id`` on ``slice`` with an XYXY pixel box (and optional clicks).

        The box replaces the object's earlier box (or mask) on that slice and keeps its
        clicks there (as in every session, see :mod:`medisam.predict.contract`).
        """
        frame = self._check_frame(slice)
        b = Box.of(box).check_inside(self.height, self.width)
        p = Points.of(points).check_inside(self.height, self.width) if points is not None else None
        return self._prompt(frame, obj_id, lambda old: replace(old, box=b, mask=None, points=_join(old.points, p)))

    def add_points(self, slice: int, points: Points | Sequence[Sequence[float]],
                   obj_id: int = 1) -> SliceResult:
        """Add clicks ``(x, y[, label])`` (1 positive, 0 negative) for ``obj_id`` on ``slice``.

        Clicks accumulate with the object's earlier box/clicks on that slice; on a tracked
        frame they correct the tracked mask (SAM 2 feeds its logits back).
        """
        frame = self._check_frame(slice)
        p = Points.of(points).check_inside(self.height, self.width)
        return self._prompt(frame, obj_id, lambda old: replace(old, points=_join(old.points, p)))

    def add_mask(self, slice: int, mask2d: np.ndarray, obj_id: int = 1) -> SliceResult:
        """Use a binary ``(H, W)`` mask of ``obj_id`` on ``slice`` as the prompt (replaces its prompts there)."""
        frame = self._check_frame(slice)
        m = np.asarray(mask2d)
        if m.shape != (self.height, self.width):
            raise PromptError(f"mask of shape {m.shape} does not match the slice plane {(self.height, self.width)}")
        if not m.astype(bool).any():
            raise PromptError(f"mask for slice {frame} is empty")
        return self._prompt(frame, obj_id, lambda old: SlicePrompts(mask=m.astype(bool)))

    def add_box3d(self, box3d: Box3D | Sequence[float], obj_id: int = 1, drawn_on: int | None = None,
                  drawn_axis: int = 0) -> SliceResult:
        """CVPR24 / MedSAM2 3D-box protocol: the box's extent on the frame plane prompts the middle
        frame of its range along the session's axis (``drawn_on``: the slice along ``drawn_axis``, 0 = k,
        it was drawn on, a 2D box with the object's slice range; prompted there when the session slices
        along ``drawn_axis``, as a VolumeSession),
        and the object's results stay inside that range and plane extent.

        ``box3d`` is a :class:`Box3D` or ``(x0, y0, z0, x1, y1, z1)`` voxel indices of the
        ``(Z, Y, X)`` array, inclusive, whatever the axis. Replaces the object's earlier prompts;
        all or nothing.
        """
        b3 = as_box3d(box3d)
        drawn_axis = check_drawn_axis(drawn_axis)
        drawn_on = b3.check_drawn_on(drawn_on, drawn_axis)
        box, lo, hi = self.geometry.box3d_to_plane(b3)
        obj_id = check_object_id(obj_id)
        with self.step():
            self.store.push()
            if obj_id in self.store.objects:
                self._forget(obj_id)
            state = self.store.objects[obj_id] = ObjectState(obj_id, {}, (lo, hi), box, box, b3, drawn_on=drawn_on,
                                                                 drawn_axis=drawn_axis)
            on_axis = drawn_on is not None and self._axis == drawn_axis
            seed = drawn_on if on_axis else lo + (hi - lo) // 2  # where drawn, or the range's middle
            state.seeds[seed] = SlicePrompts(box=box, version=self.store.next_version())
            state.box_version = state.seeds[seed].version
            return self._send(obj_id, seed, state.seeds[seed], SlicePrompts())

    def _prompt(self, frame: int, obj_id: int, update) -> SliceResult:  # noqa: ANN001
        """Change ``obj_id``'s prompts on ``frame`` by ``update`` (one undo step) and run sam2 on them."""
        obj_id = check_object_id(obj_id)
        with self.step():
            self.store.push()
            state = self.store.objects.setdefault(obj_id, ObjectState(obj_id))
            old = state.seeds.get(frame, SlicePrompts())
            new = state.seeds[frame] = replace(update(old), version=self.store.next_version())
            return self._send(obj_id, frame, new, old)

    def _send(self, obj_id: int, frame: int, new: SlicePrompts, old: SlicePrompts) -> SliceResult:
        """Give sam2 the prompts ``new`` of one object on one frame (``old``: what it had there)."""
        predictor, state = self.predictor, self._state
        with self._autocast():
            if new.mask is not None and new.mask is not old.mask:
                _, obj_ids, logits = predictor.add_new_mask(state, frame, obj_id, torch.from_numpy(new.mask))
            if new.box is not None or new.points is not None:
                coords = labels = None
                if new.points is not None:
                    coords = torch.from_numpy(np.asarray(new.points.coords, dtype=np.float32))
                    labels = torch.from_numpy(np.asarray(new.points.labels, dtype=np.int32))
                box = None if new.box is None else torch.from_numpy(new.box.as_array())
                _, obj_ids, logits = predictor.add_new_points_or_box(
                    state, frame, obj_id, points=coords, labels=labels, clear_old_points=True, box=box)
        self._store(frame, obj_ids, logits, "prompt", only=obj_id)
        return self._results[obj_id][frame]

    def clear_slice(self, slice: int, obj_id: int = 1) -> None:
        """Remove one object's prompts on one slice (the object goes when none are left)."""
        frame = self._check_frame(slice)
        seeds = self.store.objects[self._known(obj_id)].seeds
        if frame not in seeds:
            raise PromptError(f"object {obj_id} has no prompt on slice {frame}")
        if len(seeds) == 1:
            self.remove_object(obj_id)
            return
        with self.step():
            self.store.push()
            del self.store.objects[obj_id].seeds[frame]
            with self._autocast():
                self.predictor.clear_all_prompts_in_frame(self._state, frame, obj_id, need_output=False)
            self._results.get(obj_id, {}).pop(frame, None)

    def _known(self, obj_id: int) -> int:
        obj_id = check_object_id(obj_id)
        if obj_id not in self.store.objects:
            raise PromptError(f"no object {obj_id}; objects: {self.object_ids or 'none'}")
        return obj_id

    def remove_object(self, obj_id: int) -> None:
        """Forget one object's prompts and results (undoable)."""
        obj_id = self._known(obj_id)
        with self.step():
            self.store.remove(obj_id)
            self._forget(obj_id)

    def _forget(self, obj_id: int) -> None:
        """Drop one object from sam2's state and its results."""
        with self._autocast():
            self.predictor.remove_object(self._state, obj_id, strict=True, need_output=False)
        self._results.pop(obj_id, None)

    def reset(self) -> None:
        """Forget every prompt and result (undoable); sam2 goes on with a fresh state. What was dropped
        stays for the undo while the reset is among the last ``KEEP_UNDO_RESULTS`` undo steps, as any edit."""
        self.store.clear()
        self._state = self._new_state()
        self._results = {}

    def undo(self) -> None:
        """Revert the last add_*/clear_slice/remove_object/reset (or :meth:`step` block), results included.

        The undo step gives back the prompts, the results (propagated slices included: the label
        map is the one before the undone step) and sam2's own tracking state (its outputs per frame,
        so a later click on a tracked frame corrects that frame's mask as it would have then). The
        results and sam2's state are kept for the last ``KEEP_UNDO_RESULTS`` undo steps, as a
        VolumeSession keeps its runs (:mod:`medisam.predict.store`); an older step gives its prompts
        to a fresh state, drops the propagated slices and says so in a notice (propagate again).
        """
        if not self.store.history:
            self.store.undo()  # "nothing to undo"
        saved = self.store.saved_for(self.store.history[-1])
        tracked_now = self._tracked()
        self.store.undo()
        if saved is not None and saved.results is not None:
            self._give_back(saved)
            return
        dropped = sorted((tracked_now | (saved.tracked if saved else frozenset())) & set(self.store.objects))
        self._rebuild()
        if dropped and self._undo_notice(dropped) not in self.notices:
            self.notices.append(self._undo_notice(dropped))

    def _tracked(self) -> frozenset[int]:
        """The objects that have propagated slices now."""
        return frozenset(obj_id for obj_id, results in self._results.items()
                         if any(r.source == "propagated" for r in results.values()))

    def _capture(self) -> "_Saved":
        """What an undo step (or a step's rollback) gives back besides the prompts: the results
        (copied dicts sharing the SliceResults) and sam2's tracking state (sharing its tensors)."""
        return _Saved(self._tracked(), _copy_results(self._results), sam2_state.tracking_copy(self._state))

    def _give_back(self, saved: "_Saved") -> None:
        """Restore the results and sam2's tracking state of ``saved`` (taken by :meth:`_capture`)."""
        self._results = _copy_results(saved.results)
        sam2_state.restore_tracking(self._state, saved.tracking)

    def _rolled_back(self) -> None:
        """A failed :meth:`step`: the session as it was when the step began (no model run)."""
        self._give_back(self.store.at_step)

    def _undo_notice(self, obj_ids: Sequence[int]) -> str:
        """What an undo past the kept steps says when it dropped the propagated slices of ``obj_ids``
        (until the next propagation)."""
        return (f"undo: a {self.model.name} session keeps the propagated slices of its last {KEEP_UNDO_RESULTS} "
                f"undo steps, so those of object{'s' if len(obj_ids) > 1 else ''} {', '.join(map(str, obj_ids))} "
                "were dropped: propagate again")

    def _drop_undo_notices(self) -> None:
        """Forget the undo notices said so far (a propagation has answered them)."""
        prefix = f"undo: a {self.model.name} session keeps the propagated slices"
        for notice in [n for n in self.notices if n.startswith(prefix)]:
            self.notices.remove(notice)

    def _rebuild(self) -> None:
        """A fresh sam2 state holding the store's prompts (an undo past the kept steps)."""
        self._state = self._new_state()
        self._results = {}
        for obj_id, state in self.store.objects.items():
            for frame in sorted(state.seeds):
                self._send(obj_id, frame, state.seeds[frame], SlicePrompts())

    def _store(self, frame: int, obj_ids: Sequence[int], logits: torch.Tensor, source: str,
               only: int | None = None) -> list[SliceResult]:
        """Keep the ``(N, 1, H, W)`` video-resolution logits of N objects as per-object results."""
        masks = (logits[:, 0] > 0).cpu().numpy()
        out = []
        for i, obj_id in enumerate(int(o) for o in obj_ids):
            if only is not None and obj_id != only:
                continue
            raw = sam2_state.frame_output(self._state, obj_id, frame)
            score, low_res = float("nan"), None
            if raw is not None:
                score = float(torch.sigmoid(raw["object_score_logits"].float()).flatten()[0])
                low_res = raw["pred_masks"][0, 0].float().cpu().numpy()
            is_seed = sam2_state.is_conditioning(self._state, obj_id, frame)
            mask, stop = self._limit(obj_id, frame, masks[i])
            result = SliceResult(frame, obj_id, mask, score, low_res,
                                 "prompt" if source == "prompt" or is_seed else "propagated", stop, self._axis)
            self._results.setdefault(obj_id, {})[frame] = result
            out.append(result)
        return out

    def _limit(self, obj_id: int, frame: int, mask: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Apply an object's 3D-box limits: empty outside its slice range, clipped to its x/y extent."""
        state = self.store.objects.get(obj_id)
        if state is None or state.slice_range is None:
            return mask, None
        lo, hi = state.slice_range
        if not lo <= frame <= hi:
            return np.zeros_like(mask), "outside box"
        return clip_to(mask, state.clip_box), None

    def _passes(self, direction: str) -> list[tuple[int, bool, int]]:
        """``(start frame, reverse, frames to track)`` of sam2 runs for a direction.

        Runs start at the first prompted frame ("both", "forward") or the last one
        ("backward") and stop at the farthest slice any object may reach (3D-box ranges).
        """
        steps_of(direction)
        if not self.object_ids:
            raise PromptError("no prompts: add a box, points or a mask first")
        cond = sam2_state.conditioning_frames(self._state)
        ranges = [self.store.objects[o].slice_range or (0, self.num_frames - 1) for o in self.object_ids]
        high, low = max(r[1] for r in ranges), min(r[0] for r in ranges)
        passes = []
        if direction in ("both", "forward"):
            passes.append((min(cond), False, max(0, high - min(cond))))
        if direction in ("both", "backward"):
            start = min(cond) if direction == "both" else max(cond)
            if start > 0:
                passes.append((start, True, max(0, start - low)))
            elif direction == "backward":  # sam2 skips reverse runs from frame 0: just the prompt frame
                passes.append((0, False, 0))
        return passes

    # ------------------------------------------------------------ propagation
    def iter_propagate(self, direction: str = "both") -> Iterator[SliceResult]:
        """Track every object from its prompted frames; yield a result per object and frame.

        ``direction``: ``"forward"`` (from the first prompted frame to the end),
        ``"backward"`` (from the last prompted frame to frame 0) or ``"both"`` (forward
        from the first prompted frame, then backward from it). Every call re-tracks from
        the prompts (SAM 2's memory depends on the whole run); stopping the generator
        early keeps the frames done so far.
        """
        passes = self._passes(direction)
        _without_sam2_bar(self.predictor)
        sam2_state.forget_tracking(self._state)  # the prompts alone decide the run (repeatable)
        self._drop_undo_notices()  # propagated again, as it said: the notices are this run's
        seen: set[int] = set()
        for start, reverse, count in passes:
            stream = self.predictor.propagate_in_video(self._state, start_frame_idx=start, reverse=reverse,
                                                       max_frame_num_to_track=count)
            while True:
                with self._autocast():  # only around sam2's work, not the caller's between yields
                    item = next(stream, None)
                if item is None:
                    break
                frame, obj_ids, logits = item
                results = self._store(int(frame), obj_ids, logits, "propagated")
                if frame not in seen:
                    seen.add(frame)
                    yield from results

    def planned_slices(self, direction: str = "both") -> int:
        """Number of results ``iter_propagate(direction)`` yields (for progress bars)."""
        if not self.object_ids:
            return 0
        passes = self._passes(direction)
        frames = sum(count + 1 for _, _, count in passes) - (len(passes) - 1)  # "both" shares its start
        return frames * len(self.object_ids)

    def plan_lines(self, direction: str = "both") -> list[str]:
        """The cost of the coming tracking: frames per pass (each frame is encoded once per pass)."""
        if not self.object_ids:
            return []
        counts = [count + 1 for _, _, count in self._passes(direction)]
        return [f"SAM 2 tracks {len(self.object_ids)} object(s) in {len(counts)} pass(es) over "
                f"{' + '.join(map(str, counts))} frame(s): one encoding and one memory step per frame and pass"]

    def propagate(self, direction: str = "both", progress: bool = True) -> MedicalImage:
        """Run :meth:`iter_propagate` to the end and return the label map (input geometry)."""
        run_to_end(self, self.iter_propagate(direction), direction, progress, "frame", "propagate (SAM 2)")
        return self.label_map()

    def results(self, obj_id: int) -> dict[int, SliceResult]:
        """The current result of one object per frame (only frames with a result)."""
        state = self.store.objects[self._known(obj_id)]
        lo, hi = state.slice_range or (0, self.num_frames - 1)  # a 3D box's results stay in its range
        return {t: r for t, r in sorted(self._results.get(obj_id, {}).items()) if lo <= t <= hi}

    def label_map(self) -> MedicalImage:
        """Labels (object id per pixel, the smaller object on top where objects overlap, as in
        every session: :func:`~medisam.predict.contract.paint_order`) on the input grid.

        ``(Z, Y, X)`` / ``(T, Y, X)`` for volumes and videos (frame ``t`` is plane ``t`` along the
        session's axis), ``(Y, X)`` for a 2D image.
        """
        n = max(self.object_ids, default=0)
        geometry = self.geometry
        labels = np.zeros(geometry.shape_zyx, dtype=np.uint8 if n < 256 else np.uint16)
        results = {obj_id: self.results(obj_id) for obj_id in self.object_ids}
        for obj_id in paint_order({o: sum(r.area for r in res.values()) for o, res in results.items()}):
            for t, r in results[obj_id].items():
                r.paint(geometry.take(labels, t), obj_id)
        return self.image.as_labels(labels if self.image.is_volume else labels[0])


@dataclass(frozen=True)
class _Saved:
    """What a Sam2Session's undo step holds besides the prompts (:meth:`Sam2Session._capture`)."""

    tracked: frozenset[int]  # the objects that had propagated slices (named where the rest is not kept)
    results: dict[int, dict[int, SliceResult]] | None = None  # per object and frame; None: not kept
    tracking: dict[str, Any] | None = None  # sam2's tracking state (:func:`sam2_state.tracking_copy`)

    def thin(self) -> "_Saved":
        """The same step without its results and sam2 state (past the kept steps: memory stays bounded)."""
        return _Saved(self.tracked)


def _copy_results(results: dict[int, dict[int, SliceResult]]) -> dict[int, dict[int, SliceResult]]:
    """The per-object dicts copied, the (immutable) SliceResults shared."""
    return {obj_id: dict(per_frame) for obj_id, per_frame in results.items()}


class _UndoStore(PromptStore):
    """A :class:`PromptStore` whose undo snapshots also hold the session's results and sam2's
    tracking state (``capture``), so an undo or a failed step gives back what the user saw.

    A step captures the session when it begins (its rollback state, :attr:`at_step`), and that
    capture is the snapshot's when the step pushes one (as the prompts' rollback copy is); a push
    outside a step (``reset``) captures there. Only the last ``KEEP_UNDO_RESULTS`` snapshots keep
    their results and sam2 state (the arrays they share with the session and with each other are
    freed once no snapshot holds them); older ones keep the names of their tracked objects."""

    def __init__(self, max_undo: int, capture: Callable[[], _Saved], on_rollback: Callable[[], None]):
        super().__init__(max_undo, on_rollback=on_rollback)
        self._capture = capture
        self._saved: list[tuple[dict, _Saved]] = []  # (history snapshot, what the session was then)
        self.at_step: _Saved | None = None  # the open step's capture (its rollback state)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        if self.at_step is not None:  # nested: the outer step's capture stands
            with super().step():
                yield
            return
        self.at_step = self._capture()
        try:
            with super().step():
                yield
        finally:
            self.at_step = None
            self._trim()  # a rolled-back step's snapshot is gone from the history

    def push(self) -> None:
        last = self.history[-1] if self.history else None
        super().push()
        if self.history and self.history[-1] is not last:  # a new snapshot (once per step)
            self._saved.append((self.history[-1], self.at_step if self.at_step is not None else self._capture()))
            self._trim()

    def _trim(self) -> None:
        """Forget the captures of snapshots no longer in the history; thin all but the last kept ones."""
        live = {id(h) for h in self.history}  # the snapshots are held here, so their ids are unique
        self._saved = [(snap, saved) for snap, saved in self._saved if id(snap) in live]
        old = max(0, len(self._saved) - KEEP_UNDO_RESULTS)
        self._saved[:old] = [(snap, saved.thin()) for snap, saved in self._saved[:old]]

    def saved_for(self, snapshot: dict) -> _Saved | None:
        """What the session was when ``snapshot`` was taken (None if unknown)."""
        return next((saved for snap, saved in reversed(self._saved) if snap is snapshot), None)

    def undo(self) -> None:
        super().undo()
        self._trim()


def _no_bar(iterable, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202, ARG001 - tqdm's signature
    """``tqdm(iterable, ...)`` without the bar: the iterable itself."""
    return iterable


def _without_sam2_bar(predictor) -> None:  # noqa: ANN001 - a SAM2VideoPredictor
    """Turn off sam2's own "propagate in video" bar: ``propagate_in_video`` wraps its frames in
    its module's ``tqdm``, always on, so ``--no-progress`` still printed it and a progress run showed
    two bars; the session's bar (:func:`~medisam.predict.contract.run_to_end`) is the one shown."""
    import sys

    module = sys.modules.get(type(predictor).propagate_in_video.__module__)
    if module is not None and hasattr(module, "tqdm"):
        module.tqdm = _no_bar


def _join(old: Points | None, new: Points | None) -> Points | None:
    """Clicks ``old`` followed by ``new`` (either may be None)."""
    if old is None or new is None:
        return new if old is None else old
    return Points(np.concatenate([old.coords, new.coords]), np.concatenate([old.labels, new.labels]))
