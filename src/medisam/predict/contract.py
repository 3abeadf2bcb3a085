"""The one session contract every 3D/video session implements, and its one result type.

Implementations: :class:`~medisam.predict.session.VolumeSession` (2D models, slice-to-slice
propagation, tri-planar 3D boxes), :class:`~medisam.predict.tracking.TrackingSession`
(2D models on videos) and :class:`~medisam.predict.sam2_session.Sam2Session` (SAM 2 memory).
Open one with :func:`medisam.predict.factory.open_session`, which picks the implementation.

One meaning per call, whatever the implementation (prompts in pixels of one slice plane,
x = column, y = row; object ids are the label values 1..65535):

* ``add_box(slice, box, obj_id)``: the box replaces the object's earlier box (and mask) on
  that slice; its clicks there are kept.
* ``add_points(slice, points, obj_id)``: clicks accumulate with the object's prompts on that
  slice; on a slice that shows a propagated mask they correct that mask.
* ``add_mask(slice, mask, obj_id)``: replaces every prompt of the object on that slice.
* ``add_box3d(box3d, obj_id)``: replaces all of the object's prompts; its results stay in
  the box. All or nothing: on any error the session is exactly as before.
* ``clear_slice`` / ``remove_object`` / ``reset``: drop prompts (and free their results).
* ``undo()``: one undo model everywhere -- every mutating call (or every :meth:`step`
  block) pushes one snapshot of the prompts; ``undo`` restores the last one. Results of
  the restored prompts are recomputed where they were not kept (see ``KEEP_UNDO_RESULTS``
  in :mod:`medisam.predict.store`; a SAM 2 session keeps the same last steps' results and
  sam2 state, and past them re-adds its prompts and must propagate again).
* ``label_map()``: one object id per voxel. Where objects overlap in a volume session
  (VolumeSession, Sam2Session), the smaller object (by the model's own result,
  :func:`paint_order`) is on top, so a structure nested in another (a tumour's necrosis in
  its oedema, a lesion in its organ) stays visible whatever its id; a TrackingSession gives
  each pixel by its tracking rules (:mod:`~medisam.predict.tracking_rules`).
* ``iter_propagate(direction)``: yields :class:`SliceResult` on the session axis as it goes
  (a tri-planar 3D box also yields :class:`ViewProgress` items while its other two views
  run, so progress and cancellation keep working); stopping it early keeps what is done.
* ``plan_lines(direction)``: the cost of the coming propagation in words (a 3D box's views
  and encodings, a video's frames), shown before the work by the CLI, the server
  (``GET /sessions/{sid}/plan``) and the web UI; ``notices``: what propagations said beyond
  their results (a view left out of a 3D box's vote), oldest first, at most
  :data:`MAX_NOTICES`.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from medisam.errors import InputError, PromptError
from medisam.label_boxes import mask_bbox

if TYPE_CHECKING:
    from medisam.io.medical_image import MedicalImage
    from medisam.models.promptable import PromptableModel
    from medisam.predict.store import SlicePrompts
    from medisam.prompts import Box, Box3D, Points

DIRECTIONS = ("both", "forward", "backward")
#: notices a session keeps (the oldest are dropped): memory stays flat in long sessions
MAX_NOTICES = 100


class SliceResult:
    """One object's mask on one slice of the session axis (immutable).

    Attributes:
        slice: slice index along ``axis`` (the session's axis).
        obj_id: object id (= label value).
        mask: ``(H, W)`` bool on the slice plane grid (empty when the object vanished); a new
            read-only array at each read, rebuilt from :attr:`crop`.
        score: predicted IoU (1.0 for a user-given mask; SAM 2: object-presence probability).
        low_res_logits: ``(L, L)`` model-grid logits (None for a user-given or fused mask).
        source: ``"prompt"`` for a seed slice, ``"propagated"`` otherwise, ``"fused"`` for
            the tri-planar result of a 3D box (its seed slice stays ``"prompt"``), ``"click3d"``
            / ``"click2d"`` for a mask corrected by clicks (the random walker, no model run).
        stop: why propagation stopped at this slice (None when it went on).
        axis: array axis ``slice`` indexes (always the session's axis).
        crop, origin: the mask's bounding box, kept instead of the plane, and its first
            ``(row, col)``: a result holds memory for its object, not for its plane (400 nuclei
            over 48 planes of 448 x 448 held 567 MiB of planes).
        area: the mask's pixels.
    """

    #: the constructor's arguments besides the mask
    FIELDS = ("slice", "obj_id", "score", "low_res_logits", "source", "stop", "axis")
    __slots__ = (*FIELDS, "crop", "origin", "plane_shape", "area")

    def __init__(self, slice: int, obj_id: int, mask: np.ndarray, score: float,  # noqa: A002 - the field's name
                 low_res_logits: np.ndarray | None = None, source: str = "propagated", stop: str | None = None,
                 axis: int = 0):
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise InputError(f"a slice result's mask is one plane (H, W), got shape {mask.shape}")
        box = mask_bbox(mask)
        crop = np.zeros((0, 0), dtype=bool) if box is None else mask[box]
        self._fill(crop, (0, 0) if box is None else (box[0].start, box[1].start), mask.shape,
                   slice=slice, obj_id=obj_id, score=score, low_res_logits=low_res_logits, source=source, stop=stop,
                   axis=axis)

    def _fill(self, crop: np.ndarray, origin: tuple[int, int], plane_shape: tuple[int, int], **fields: object) -> None:
        crop = np.array(crop, dtype=bool)  # its own copy, read-only
        crop.flags.writeable = False
        fields.update(crop=crop, origin=tuple(int(v) for v in origin), plane_shape=tuple(plane_shape),
                      area=int(crop.sum()))
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SliceResult is immutable: use replace(), not .{name} =")

    @property
    def mask(self) -> np.ndarray:
        """The ``(H, W)`` bool plane, rebuilt from :attr:`crop` (a new read-only array each read)."""
        out = np.zeros(self.plane_shape, dtype=bool)
        out[self.window] = self.crop
        out.flags.writeable = False
        return out

    @property
    def window(self) -> tuple[slice, slice]:
        """The rows and columns of the plane that :attr:`crop` covers."""
        (r, c), (h, w) = self.origin, self.crop.shape
        return slice(r, r + h), slice(c, c + w)

    def part(self, rows: slice, cols: slice) -> np.ndarray:
        """The mask on ``rows`` x ``cols`` of the plane (bounded slices), without building the plane."""
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
        (r0, c0), (h, w) = self.origin, self.crop.shape
        lo_r, hi_r = max(rows.start, r0), min(rows.stop, r0 + h)
        lo_c, hi_c = max(cols.start, c0), min(cols.stop, c0 + w)
        if lo_r < hi_r and lo_c < hi_c:
            out[lo_r - rows.start:hi_r - rows.start, lo_c - cols.start:hi_c - cols.start] = \
                self.crop[lo_r - r0:hi_r - r0, lo_c - c0:hi_c - c0]
        return out

    def paint(self, plane: np.ndarray, value: int, where: np.ndarray | None = None) -> None:
        """Set ``plane`` (the slice's plane of a label map, in place) to ``value`` on the mask
        (and, with ``where``, only where ``where`` holds on the mask's window)."""
        if not self.area:
            return
        view = plane[self.window]
        view[self.crop if where is None else self.crop & where[self.window]] = value

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays it holds (crop and logits)."""
        return self.crop.nbytes + (0 if self.low_res_logits is None else self.low_res_logits.nbytes)

    def replace(self, **changes: object) -> "SliceResult":
        """A copy with ``changes`` (any of the constructor's arguments, ``mask`` included)."""
        unknown = set(changes) - {*self.FIELDS, "mask"}
        if unknown:
            raise TypeError(f"SliceResult has no field {', '.join(sorted(unknown))}")
        fields = {name: getattr(self, name) for name in self.FIELDS}
        fields.update(changes)
        if "mask" in changes:
            return SliceResult(**fields)  # type: ignore[arg-type]
        return _rebuilt(self.crop, self.origin, self.plane_shape, fields)

    def __repr__(self) -> str:
        return (f"SliceResult(slice={self.slice}, obj_id={self.obj_id}, area={self.area}, score={self.score:.3f}, "
                f"source={self.source!r}, stop={self.stop!r}, axis={self.axis})")

    def __reduce__(self):  # noqa: ANN204 - copy.deepcopy (a session's snapshot) and pickle, in the compact form
        fields = {name: getattr(self, name) for name in self.FIELDS}
        return (_rebuilt, (self.crop, self.origin, self.plane_shape, fields))


def _rebuilt(crop: np.ndarray, origin: tuple[int, int], plane_shape: tuple[int, int], fields: dict) -> SliceResult:
    """A :class:`SliceResult` from its kept crop (copy, unpickling), without building its plane."""
    out = SliceResult.__new__(SliceResult)
    out._fill(crop, origin, plane_shape, **fields)
    return out


@dataclass(frozen=True)
class ViewProgress:
    """Progress of one of the two other views of a tri-planar 3D box: NOT a session result.

    ``mask`` is the view's result on plane ``index`` of array axis ``axis`` (the input grid);
    the session's own results (fused) appear in ``results`` / ``label_map`` once all views
    are done. Consumers that only count items (progress bars) can ignore the type.
    """

    axis: int
    index: int
    obj_id: int
    mask: np.ndarray
    score: float
    source: str = "view"
    stop: str | None = None


def check_object_id(obj_id: int) -> int:
    """Object ids are the output label values: integers 1..65535."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or not 1 <= obj_id <= 65535:
        raise PromptError(f"object id must be an integer 1..65535 (it becomes the label value), got {obj_id!r}")
    return int(obj_id)


def check_drawn_axis(axis: int) -> int:
    """The array axis a drawn-on slice indexes: 0 (k), 1 (j) or 2 (i)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not 0 <= axis <= 2:
        raise PromptError(f"drawn_axis must be the array axis 0, 1 or 2, got {axis!r}")
    return int(axis)


def steps_of(direction: str) -> tuple[int, ...]:
    """Slice steps of a propagation direction: ``both`` -> (1, -1)."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return {"both": (1, -1), "forward": (1,), "backward": (-1,)}[direction]


def paint_order(sizes: dict[int, int]) -> list[int]:
    """Object ids in the order a label map paints them: largest first (voxels of the model's
    own result, ``sizes``), so the smaller of two overlapping objects is on top; equal sizes
    keep id order (the later id on top). Sizes from the model's result, not from 3D clicks,
    so a click never reorders the objects."""
    return sorted(sizes, key=lambda obj_id: (-sizes[obj_id], obj_id))


def run_to_end(session: "Session", results: Iterator, direction: str, progress: bool, unit: str, desc: str) -> None:
    """Exhaust a propagation's ``results``; with ``progress``, first print the session's plan
    lines (the cost of the coming work) on stderr, then show a progress bar over its planned
    items, closed at the count reached (runs may end early)."""
    total = session.planned_slices(direction)
    if not (progress and total):
        for _ in results:
            pass
        return
    from tqdm.auto import tqdm

    for line in session.plan_lines(direction):
        print(line, file=sys.stderr)
    with tqdm(total=total, unit=unit, desc=desc) as bar:
        for _ in results:
            bar.update(1)
        bar.total = bar.n  # runs that stopped early (stop rules, objects that left) end the plan
        bar.refresh()


def tracks_with_memory(model: PromptableModel) -> bool:
    """True for models whose sessions track with a memory (SAM 2 family): the one family check."""
    return model.spec.supports_memory_propagation


@runtime_checkable
class Session(Protocol):
    """What the server, the web app, the CLI and ``refine3d`` may call on any session."""

    @property
    def num_slices(self) -> int: ...

    @property
    def plane_hw(self) -> tuple[int, int]: ...

    @property
    def object_ids(self) -> list[int]: ...

    @property
    def can_undo(self) -> int: ...

    def add_box(self, slice: int, box: Box | Sequence[float], obj_id: int = 1) -> SliceResult: ...

    def add_points(self, slice: int, points: Points | Sequence[Sequence[float]], obj_id: int = 1) -> SliceResult: ...

    def add_mask(self, slice: int, mask2d: np.ndarray, obj_id: int = 1) -> SliceResult: ...

    def add_box3d(self, box3d: Box3D | Sequence[float], obj_id: int = 1,
                  drawn_on: int | None = None, drawn_axis: int = 0) -> SliceResult: ...

    def slice_prompts(self, slice: int, obj_id: int) -> SlicePrompts | None: ...

    def found_box(self, slice: int, obj_id: int = 1) -> Box | None: ...

    def clear_slice(self, slice: int, obj_id: int = 1) -> None: ...

    def remove_object(self, obj_id: int) -> None: ...

    def reset(self) -> None: ...

    def undo(self) -> None: ...

    def step(self) -> AbstractContextManager[None]: ...

    def iter_propagate(self, direction: str = "both") -> Iterator[SliceResult | ViewProgress]: ...

    def planned_slices(self, direction: str = "both") -> int: ...

    def plan_lines(self, direction: str = "both") -> list[str]: ...

    @property
    def notices(self) -> Sequence[str]: ...

    def propagate(self, direction: str = "both", progress: bool = True) -> MedicalImage: ...

    def results(self, obj_id: int) -> dict[int, SliceResult]: ...

    def label_map(self) -> MedicalImage: ...
