"""The model-free prompt and run store of a session: prompts, results, undo snapshots.

Undo model (the same for every session, see :mod:`medisam.predict.contract`): each
mutating call -- or each :meth:`PromptStore.step` block, however many calls it makes --
pushes ONE deep copy of the prompts (``objects``); :meth:`PromptStore.undo` restores the
last one. Results (``runs``) are keyed by the prompt ``version`` that made them, so prompts
brought back by undo find their results again while those are kept.

What is kept: the runs of the current prompts and of the last ``KEEP_UNDO_RESULTS``
snapshots; every other run is dropped at once (older undo steps recompute their seed
slices, propagate again for the rest), so a long-lived session's memory does not grow with
its edits. ``reset`` and ``remove_object`` are edits like any other: undoing one brings
back what was there, results included (they freed their runs at once before stop 69, and a
reset then undo lost a propagation: a tri-planar box's 40 s); the runs go when
``KEEP_UNDO_RESULTS`` later edits have pushed their snapshot out.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np

from medisam.errors import InputError, PromptError
from medisam.predict.contract import SliceResult
from medisam.predict.edits import EditLayer
from medisam.prompts import Box, Box3D, Points

#: Undo steps whose slice results a session keeps.
KEEP_UNDO_RESULTS = 4
#: Default number of undo steps.
MAX_UNDO = 100


@dataclass(frozen=True)
class SlicePrompts:
    """The prompts on one seed slice of one object (pixel coordinates of the plane)."""

    box: Box | None = None
    points: Points | None = None
    mask: np.ndarray | None = None  # user-given (H, W) bool mask
    mask_logits: np.ndarray | None = None  # low-res logits to refine (from an earlier result)
    version: int = 0


def check_in_range(t: int, obj_id: int, slice_range: tuple[int, int] | None) -> None:
    """PromptError when slice ``t`` lies outside object ``obj_id``'s slice range (None: no range)."""
    if slice_range is not None and not slice_range[0] <= t <= slice_range[1]:
        raise PromptError(f"slice {t} lies outside object {obj_id}'s slice range {slice_range[0]}..{slice_range[1]}")


@dataclass(frozen=True)
class Click3D:
    """One 3D corrective click: voxel ``(z, y, x)``, its sign and the radius (voxels) it acts over."""

    zyx: tuple[int, int, int]
    positive: bool
    radius: float
    #: a background click on a voxel that another object holds too: within its radius this object
    #: gives up what the others hold (``RefineParams.negative_yields``; docs/interactive3d.md)
    yields: bool = False


@dataclass
class ObjectState:
    """Prompts of one object: seed slices, an optional slice range and x/y clip box."""

    obj_id: int
    seeds: dict[int, SlicePrompts] = field(default_factory=dict)
    slice_range: tuple[int, int] | None = None
    clip_box: Box | None = None
    extent: Box | None = None  # x/y extent of a 3D box prompt (plane pixel edges)
    box3d: Box3D | None = None  # the 3D box prompt itself (voxel indices)
    box_version: int | None = None  # version of the seed the 3D box made (fused when views > 1)
    edit: EditLayer | None = None  # voxels set by 3D corrective clicks (over the slice results)
    clicks3d: tuple[Click3D, ...] = ()  # the 3D corrective clicks that made ``edit``, in order
    window: tuple[float, float] | None = None  # the 3D box's own (width, level); None: the session's display
    drawn_on: int | None = None  # the slice a 2D box with a slice range was drawn on; None: a 3D box
    drawn_axis: int = 0  # the array axis ``drawn_on`` indexes (0: a k slice)


@dataclass(frozen=True)
class Run:
    """Results of one propagation run from a seed (direction +1/-1) or of the seed itself (0)."""

    planned_end: int  # last slice this run is meant to cover (inclusive)
    results: tuple[SliceResult, ...] = ()
    stopped: bool = False
    #: a seed's own run (step 0) of points alone: the box they were answered with
    #: (:mod:`medisam.predict.point_box`), which the seed's runs then use as a drawn box
    found_box: Box | None = None

    def covers(self, t: int, seed: int, step: int) -> bool:
        return (seed < t <= self.planned_end) if step > 0 else (self.planned_end <= t < seed)

    def last_slice(self, seed: int) -> int:
        return self.results[-1].slice if self.results else seed


RunKey = tuple[int, int, int, int]  # (obj, seed slice, step, version)


def snapshot_objects(objects: dict[int, ObjectState]) -> dict[int, ObjectState]:
    """A copy of the prompts for undo that shares what is never changed in place: the frozen
    prompts (:class:`SlicePrompts`, boxes, :class:`Click3D`), the 3D click layers
    (:class:`EditLayer`) and their arrays. A session changes an object by assigning its fields
    and its ``seeds`` entries, so each snapshot needs its own states and ``seeds`` dicts only.
    A deep copy instead held every object's click layer once per undo step: with 400 objects,
    each click step copied all 400 layers, twice (the step's rollback copy and its snapshot)."""
    return {obj_id: replace(state, seeds=dict(state.seeds)) for obj_id, state in objects.items()}


class PromptStore:
    """Objects' prompts, their runs and undo snapshots; knows nothing of models.

    Args:
        max_undo: undo steps kept.
        on_rollback: called after a failed :meth:`step` restored the prompts (a session
            whose model keeps its own state rebuilds it there).
    """

    def __init__(self, max_undo: int = MAX_UNDO, on_rollback: Callable[[], None] | None = None):
        self.objects: dict[int, ObjectState] = {}
        self.runs: dict[RunKey, Run] = {}
        self.history: list[dict[int, ObjectState]] = []
        self.version = 0
        self.max_undo = max_undo
        self.on_rollback = on_rollback
        self._depth = 0
        self._pushed = False
        self._before: dict[int, ObjectState] | None = None  # the open step's rollback copy

    def next_version(self) -> int:
        self.version += 1
        return self.version

    # ------------------------------------------------------------------ undo
    def push(self) -> None:
        """Snapshot the prompts before a change (once per :meth:`step`)."""
        if self._depth and self._pushed:
            return
        self._pushed = bool(self._depth)
        # inside a step the snapshot is the step's rollback copy: the prompts before the step, which
        # is what undoing the step restores (one copy of every object per click, not two)
        self.history.append(self._before if self._depth and self._before is not None
                            else snapshot_objects(self.objects))
        del self.history[:-self.max_undo]
        self.prune()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Make every change inside ONE undo step, all or nothing: on an exception the
        prompts (and the undo history) are exactly as before, and ``on_rollback`` runs."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        before = self._before = snapshot_objects(self.objects)
        n_history, version = len(self.history), self.version
        self._depth, self._pushed = 1, False
        try:
            yield
        except BaseException:
            self.objects = before
            del self.history[n_history:]
            self.version = version
            self.prune()
            if self.on_rollback is not None:
                self.on_rollback()
            raise
        finally:
            self._depth, self._pushed, self._before = 0, False, None

    def undo(self) -> None:
        """Restore the prompts of the last snapshot."""
        if not self.history:
            raise InputError("nothing to undo")
        self.objects = self.history.pop()
        self.prune()

    # ----------------------------------------------------------------- edits
    def remove(self, obj_id: int) -> None:
        """Drop one object (undoable: its runs stay while the snapshot is among the kept ones)."""
        self.push()
        del self.objects[obj_id]

    def clear(self) -> None:
        """Drop every object (undoable: their runs stay while the snapshot is among the kept ones)."""
        self.push()
        self.objects = {}

    # ---------------------------------------------------------------- runs
    def live(self) -> set[tuple[int, int, int]]:
        """``(obj, seed, version)`` of the current prompts and of the kept undo snapshots."""
        return {(obj_id, seed, prompts.version)
                for objects in (self.objects, *self.history[-KEEP_UNDO_RESULTS:])
                for obj_id, state in objects.items() for seed, prompts in state.seeds.items()}

    def prune(self) -> None:
        """Drop the runs of prompts that are neither current nor in the kept snapshots."""
        live = self.live()
        self.free(lambda key: (key[0], key[1], key[3]) not in live)

    def free(self, stale: Callable[[RunKey], bool]) -> None:
        for key in [k for k in self.runs if stale(k)]:
            del self.runs[key]

    def retained_bytes(self) -> int:
        """Bytes of the masks and logits the runs hold (for memory checks)."""
        return sum(r.nbytes for run in self.runs.values() for r in run.results)
