"""Interactive 3D segmentation by slice-to-slice propagation with a 2D SAM/LiteMedSAM model.

A :class:`VolumeSession` holds a model, a volume seen along one slicing axis, and typed
per-object state: the prompted ("seed") slices and the propagation runs computed from
them. Prompts are in pixel coordinates of one slice plane (x = column, y = row, see
:mod:`medisam.predict.volume` for which array axes those are). Object ids are the label
values of the output map.

How slices are owned: every seed slice keeps its own prompted result; every other slice
takes the result of the nearest seed whose propagation run reaches it (ties go to the
earlier slice). So a correction on any slice after a propagation (``add_box`` /
``add_points``) re-propagates outward from that slice only up to half way to the
neighbouring seeds, and leaves the rest alone.

A 3D box (:meth:`VolumeSession.add_box3d`) is by default segmented tri-planarly
(``PropagationConfig.views=3``): besides the session's axis, the box is propagated along
the two other axes, each view seeded on its own middle slice with the box's in-plane
extent and clipped to the box (their planes, which have non-square pixels when the slice
spacing differs from the pixel spacing, are first stretched to square ones, see
:class:`~medisam.predict.volume.ViewGrid`; the session's axis is seen as it is), and the
three label volumes are fused by majority (:func:`~medisam.predict.propagation.fuse_views`).
The fused masks become the
3D box seed's results on the session's axis, so corrections on single slices work as
above. ``views=1``, or ``propagate(direction="forward"/"backward")``, propagates the box
along the session's axis only. Prompts on single slices always propagate along the
session's axis.

Each plane is encoded at most once per view: embeddings live in the predictor's
:class:`~medisam.predict.EmbeddingCache`, sized here to hold every plane of the three
views, and only planes that a prompt or a run visits are encoded.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np
import torch

from medisam.errors import InputError, ModelError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.models.promptable import PromptableModel
from medisam.predict.cache import CachedEmbedding, EmbeddingCache, embedding_key
from medisam.predict.predictor import Predictor
from medisam.predict.propagation import PropagationConfig, box_around, fuse_views, interior_point, stop_reason
from medisam.predict.stop_rules import SeedStopper
from medisam.predict.volume import (SliceGeometry, ViewGrid, ViewPlan, as_box3d, parse_axis, plan_views, volume_of,
                                    volume_to_display)
from medisam.prompts import Box, Box3D, MaskPrompt, Points

log = logging.getLogger(__name__)

DIRECTIONS = ("both", "forward", "backward")
#: Undo steps whose slice results a session keeps (see VolumeSession._prune_runs).
KEEP_UNDO_RESULTS = 4


@dataclass(frozen=True)
class SliceResult:
    """One object's mask on one slice.

    Attributes:
        slice: slice index along ``axis``.
        obj_id: object id (= label value).
        mask: ``(H, W)`` bool on the slice plane grid (empty when the object vanished).
        score: predicted IoU (1.0 for a user-given mask; for a fused slice, that of the
            session axis's view).
        low_res_logits: ``(L, L)`` model-grid logits (None for a user-given or fused mask).
        source: ``"prompt"`` for a seed slice, ``"propagated"`` otherwise, ``"fused"`` for
            the tri-planar result of a 3D box (its seed slice stays ``"prompt"``).
        stop: why propagation stopped at this slice (None when it went on).
        axis: array axis ``slice`` indexes; the session's axis except for the results of
            the other two views of a 3D box that ``iter_propagate`` yields (their masks are
            planes of that axis).
    """

    slice: int
    obj_id: int
    mask: np.ndarray
    score: float
    low_res_logits: np.ndarray | None = None
    source: str = "propagated"
    stop: str | None = None
    axis: int = 0


@dataclass(frozen=True)
class SlicePrompts:
    """The prompts on one seed slice of one object (pixel coordinates of the plane)."""

    box: Box | None = None
    points: Points | None = None
    mask: np.ndarray | None = None  # user-given (H, W) bool mask
    mask_logits: np.ndarray | None = None  # low-res logits to refine (from an earlier result)
    version: int = 0


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


@dataclass(frozen=True)
class _Run:
    """Results of one propagation run from a seed (direction +1/-1) or of the seed itself (0)."""

    planned_end: int  # last slice this run is meant to cover (inclusive)
    results: tuple[SliceResult, ...] = ()
    stopped: bool = False

    def covers(self, t: int, seed: int, step: int) -> bool:
        return (seed < t <= self.planned_end) if step > 0 else (self.planned_end <= t < seed)

    def last_slice(self, seed: int) -> int:
        return self.results[-1].slice if self.results else seed


def check_object_id(obj_id: int) -> int:
    """Object ids are the output label values: integers 1..65535."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or not 1 <= obj_id <= 65535:
        raise PromptError(f"object id must be an integer 1..65535 (it becomes the label value), got {obj_id!r}")
    return int(obj_id)


def _clip(mask: np.ndarray, box: Box | None) -> np.ndarray:
    """Zero a plane mask outside ``box`` (pixel edges); the x/y extent of a 3D box prompt."""
    if box is None:
        return mask
    out = np.zeros_like(mask)
    y0, x0 = int(np.floor(box.y0)), int(np.floor(box.x0))
    y1, x1 = int(np.ceil(box.y1)), int(np.ceil(box.x1))
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    return out


class VolumeSession:
    """Segment objects through a 3D volume from prompts on a few slices.

    Args:
        model: a SAM-family :class:`PromptableModel` (LiteMedSAM, SAM, MedSAM).
        image: :class:`MedicalImage` volume or a ``(Z, Y, X)`` array.
        axis: slicing axis of the ``(Z, Y, X)`` array, ``0/1/2`` or ``"k"/"j"/"i"``.
        window: CT window preset or ``(width, level)``; default: one window for the whole
            volume from the modality (see :func:`medisam.predict.volume.volume_to_display`).
        predictor: reuse a predictor (and its cache); by default one is made with a cache
            that holds every slice of the volume.
        config: propagation rules (:class:`PropagationConfig`).
        display: the volume already mapped to float32 [0, 255] (same shape), instead of
            mapping ``image`` with ``window``; lets sessions over one volume share it.

    Attributes:
        encoded_slices / visited_slices: slices of the session's axis the encoder ran on /
            whose embedding a prompt or run used.
        encoded_planes / visited_planes: the same as ``(axis, index)`` pairs over every view
            (the other axes' planes of a tri-planar 3D box included).
    """

    def __init__(self, model: PromptableModel, image: MedicalImage | np.ndarray, axis: int | str = 0,
                 window: str | tuple[float, float] | None = None, predictor: Predictor | None = None,
                 config: PropagationConfig | None = None, display: np.ndarray | None = None):
        if model.spec.family == "sam2":
            raise ModelError(f"{model.name} is a SAM 2 model: use Sam2Session (memory-based tracking) "
                             "instead of VolumeSession")
        self.image = volume_of(image)
        self.model = model
        self.geometry = SliceGeometry(tuple(self.image.spatial_shape), parse_axis(axis),
                                      tuple(float(s) for s in self.image.spacing_zyx))
        self.config = config or PropagationConfig()
        if display is None:
            display = volume_to_display(self.image.array, self.image.modality, window)
        elif display.shape != self.image.array.shape:
            raise InputError(f"display volume {display.shape} does not match the image {self.image.array.shape}")
        self._display = display
        self._plane_keys: dict[int, str] = {}  # plane -> embedding key (the display never changes)
        if predictor is None:
            predictor = Predictor(model, cache=EmbeddingCache(max_bytes=self._cache_bytes_needed()))
        elif predictor.model is not model:
            raise InputError("the predictor was built for another model")
        self.predictor = predictor
        self.encoded_slices: set[int] = set()  # slices this session ran the encoder on
        self.visited_slices: set[int] = set()  # slices whose embedding a prompt or run used
        self.encoded_planes: set[tuple[int, int]] = set()  # (axis, index) over all views
        self.visited_planes: set[tuple[int, int]] = set()
        self._views: dict[tuple[int, int], list[tuple[ViewGrid, VolumeSession]]] = {}  # (obj, version)
        self._fused: set[tuple[int, int, int]] = set()  # (obj, seed, version) with fused runs
        self._objects: dict[int, ObjectState] = {}
        self._runs: dict[tuple[int, int, int, int], _Run] = {}  # (obj, seed, step, version)
        self._history: list[dict[int, ObjectState]] = []
        self._version = 0

    # ------------------------------------------------------------- geometry
    @property
    def axis(self) -> int:
        return self.geometry.axis

    @property
    def num_slices(self) -> int:
        return self.geometry.num_slices

    @property
    def plane_hw(self) -> tuple[int, int]:
        """``(H, W)`` of every slice plane."""
        return self.geometry.plane_hw

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    def object_state(self, obj_id: int) -> ObjectState:
        """A copy of one object's prompt state."""
        return copy.deepcopy(self._objects[self._known(obj_id)])

    def _cache_bytes_needed(self) -> int:
        """Room for every slice of the session's axis (of all three axes with ``views=3``)."""
        side = self.model.mask_input_size // 4  # embedding side (64 for LiteMedSAM and SAM)
        per_slice = 256 * side * side * 4
        planes = sum(self.geometry.shape_zyx) if self.config.views > 1 else self.geometry.num_slices
        return max(512 << 20, (planes + 2) * per_slice)

    # -------------------------------------------------------------- prompts
    def add_box(self, slice: int, box: Box | Sequence[float], obj_id: int = 1,
                slices: tuple[int, int] | None = None) -> SliceResult:
        """Prompt a box (XYXY pixels of the plane) on ``slice``; returns that slice's mask.

        A box replaces an earlier box on the same slice and keeps its points. Propagation
        from it ends where the object does (``config.stop_rules``) and, when ``slices=(k0,
        k1)`` is given (inclusive), within that slice range (the object's range from then on).
        """
        b = Box.of(box).check_inside(*self.plane_hw)
        return self._set_seed(slice, obj_id, lambda old: replace(old, box=b, mask=None), slice_range=slices)

    def add_points(self, slice: int, points: Points | Sequence[Sequence[float]], obj_id: int = 1) -> SliceResult:
        """Add clicks ``(x, y[, label])`` on ``slice`` (accumulating); returns that slice's mask.

        On a slice that already shows a propagated mask, the clicks refine that mask
        (its box and logits become part of the prompt).
        """
        p = Points.of(points).check_inside(*self.plane_hw)

        def update(old: SlicePrompts) -> SlicePrompts:
            if old.points is not None:
                p2 = Points(np.concatenate([old.points.coords, p.coords]),
                            np.concatenate([old.points.labels, p.labels]))
            else:
                p2 = p
            return replace(old, points=p2)

        return self._set_seed(slice, obj_id, update, refine_current=True)

    def add_mask(self, slice: int, mask2d: np.ndarray, obj_id: int = 1) -> SliceResult:
        """Use a given ``(H, W)`` binary mask on ``slice`` as that slice's result and a seed."""
        m = np.asarray(mask2d)
        if m.shape != self.plane_hw:
            raise PromptError(f"mask of shape {m.shape} does not match the slice plane {self.plane_hw}")
        if not m.astype(bool).any():
            raise PromptError(f"mask for slice {slice} is empty")
        return self._set_seed(slice, obj_id, lambda old: SlicePrompts(mask=m.astype(bool)))

    def add_box3d(self, box3d: Box3D | Sequence[float], obj_id: int = 1) -> SliceResult:
        """CVPR24 3D-box protocol: the box's x/y extent prompts the middle slice of its range,
        and the object's propagation stays inside that slice range (and x/y extent when
        ``config.clip_to_box``). ``box3d`` is a :class:`Box3D` or ``(x0, y0, z0, x1, y1, z1)``
        voxel indices of the ``(Z, Y, X)`` array (i, j, k), inclusive.

        With ``config.views=3`` (default) :meth:`propagate` segments the box along all three
        axes and fuses them (see the module docstring); the returned seed-slice result is
        that of the session's axis until then.
        """
        b3 = as_box3d(box3d)
        box, lo, hi = self.geometry.box3d_to_plane(b3)
        obj_id = check_object_id(obj_id)
        self._push_history()
        state = ObjectState(obj_id, {}, (lo, hi), box if self.config.clip_to_box else None, box, b3)
        self._objects[obj_id] = state
        middle = self._best_seed_slice(box, lo, hi)
        self._version += 1
        state.seeds[middle] = SlicePrompts(box=box, version=self._version)
        state.box_version = self._version
        return self._seed_result(obj_id, middle)

    def _best_seed_slice(self, box: Box, lo: int, hi: int) -> int:
        """The middle slice of ``lo..hi``, or with ``config.seed_search`` the nearby slice
        whose box prediction has the highest predicted IoU (ties: nearest the middle)."""
        middle = lo + (hi - lo) // 2
        k = self.config.seed_search
        if k <= 0:
            return middle
        candidates = sorted(range(max(lo, middle - k), min(hi, middle + k) + 1), key=lambda z: abs(z - middle))
        scores = [float(self._predict(z, box, None, None).scores[0]) for z in candidates]
        return candidates[int(np.argmax(scores))]

    def remove_object(self, obj_id: int) -> None:
        self._known(obj_id)
        self._push_history()
        del self._objects[obj_id]

    def reset(self) -> None:
        """Forget every prompt and result (the embedding cache is kept)."""
        self._push_history()
        self._objects = {}

    def undo(self) -> None:
        """Revert the last add_*/remove_object/reset; earlier results are reused, not recomputed."""
        if not self._history:
            raise InputError("nothing to undo")
        self._objects = self._history.pop()
        for obj_id, state in self._objects.items():  # seeds whose results were pruned
            for t in state.seeds:
                self._seed_result(obj_id, t)

    def clear_slice(self, slice: int, obj_id: int = 1) -> None:
        """Remove the prompts of one object on one slice."""
        state = self._objects.get(self._known(obj_id))
        if slice not in state.seeds:
            raise PromptError(f"object {obj_id} has no prompt on slice {slice}")
        self._push_history()
        state = self._objects[obj_id]
        del state.seeds[slice]
        if not state.seeds:
            del self._objects[obj_id]

    # ---------------------------------------------------------- propagation
    def iter_propagate(self, direction: str = "both") -> Iterator[SliceResult]:
        """Propagate every object from its seed slices; yield each slice result as computed.

        ``direction``: ``"both"`` (each slice from its nearest seed), ``"forward"``
        (increasing slice index) or ``"backward"``. Stopping the iteration cancels
        cleanly: completed slices are kept and a later call resumes. Slices already
        computed by an earlier call are not yielded again.

        A 3D box with ``config.views=3`` and ``direction="both"`` yields the results of its
        three views (``SliceResult.axis`` tells which axis a result's slice is on); its fused
        masks are the box seed's results (:meth:`results`, :meth:`label_map`) once all
        three views are done.
        """
        steps = self._steps(direction)
        self._drop_stale_views()
        for obj_id in self.object_ids:
            state = self._objects[obj_id]
            fused_seed = self._fused_seed(state, direction)
            for seed in sorted(state.seeds):
                yield from self._seed_iter(obj_id, seed)
                if seed == fused_seed:
                    yield from self._fuse_iter(obj_id, seed)
                    continue
                for step in steps:
                    end = self._planned_end(state, seed, step, direction)
                    yield from self._run(obj_id, seed, step, end)

    def planned_slices(self, direction: str = "both") -> int:
        """Upper bound of the slice results ``iter_propagate(direction)`` would compute (for ETA)."""
        steps = self._steps(direction)
        total = 0
        for obj_id in self.object_ids:
            state = self._objects[obj_id]
            fused_seed = self._fused_seed(state, direction)
            for seed in state.seeds:
                version = state.seeds[seed].version
                total += (obj_id, seed, 0, version) not in self._runs
                if seed == fused_seed:
                    total += self._fuse_planned(obj_id, state, seed)
                    continue
                for step in steps:
                    end = self._planned_end(state, seed, step, direction)
                    run = self._runs.get((obj_id, seed, step, version))
                    start = seed if run is None or run.stopped else run.last_slice(seed)
                    if run is not None and run.stopped:
                        continue
                    total += max(0, (end - start) * step)
        return total

    def propagate(self, direction: str = "both", progress: bool = True) -> MedicalImage:
        """Run :meth:`iter_propagate` to the end and return the label map (input geometry)."""
        total = self.planned_slices(direction)
        results = self.iter_propagate(direction)
        if progress and total:
            import sys

            from tqdm.auto import tqdm

            for obj_id in self.object_ids:  # the cost model of each 3D box, before the work
                if self._fused_seed(self._objects[obj_id], direction) is not None:
                    print(f"object {obj_id}: {self.view_plan(obj_id).describe()}", file=sys.stderr)

            with tqdm(total=total, unit="slice", desc="propagate") as bar:
                for _ in results:
                    bar.update(1)
        else:
            for _ in results:
                pass
        return self.label_map()

    def results(self, obj_id: int) -> dict[int, SliceResult]:
        """The current result of one object per slice (only slices with a result)."""
        state = self._objects[self._known(obj_id)]
        out: dict[int, SliceResult] = {}
        seeds = sorted(state.seeds)
        lo, hi = self._range(state)
        for t in range(lo, hi + 1):
            r = self._owner_result(obj_id, state, seeds, t)
            if r is not None:
                out[t] = r
        return out

    def label_map(self) -> MedicalImage:
        """``(Z, Y, X)`` labels (object id per voxel, later ids win overlaps) with the input's geometry."""
        n = max(self._objects, default=0)
        labels = np.zeros(self.image.spatial_shape, dtype=np.uint8 if n < 256 else np.uint16)
        for obj_id in self.object_ids:
            for t, r in self.results(obj_id).items():
                if r.mask.any():
                    self.geometry.put(labels, t, r.mask, obj_id)
        return self.image.as_labels(labels)

    # -------------------------------------------------------------- internals
    def _known(self, obj_id: int) -> int:
        obj_id = check_object_id(obj_id)
        if obj_id not in self._objects:
            raise PromptError(f"no object {obj_id}; objects: {self.object_ids or 'none'}")
        return obj_id

    def _push_history(self) -> None:
        self._history.append(copy.deepcopy(self._objects))
        del self._history[:-100]
        self._prune_runs()

    def _prune_runs(self) -> None:
        """Forget the results of prompts that are neither current nor among the last
        ``KEEP_UNDO_RESULTS`` undo steps, so a long session does not keep every slice's mask
        and logits of every edit (undoing further back recomputes seeds; propagate again)."""
        live = {(obj_id, seed, prompts.version)
                for objects in (self._objects, *self._history[-KEEP_UNDO_RESULTS:])
                for obj_id, state in objects.items() for seed, prompts in state.seeds.items()}
        for key in [k for k in self._runs if (k[0], k[1], k[3]) not in live]:
            del self._runs[key]
        self._fused &= live

    @staticmethod
    def _steps(direction: str) -> tuple[int, ...]:
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        return {"both": (1, -1), "forward": (1,), "backward": (-1,)}[direction]

    def _range(self, state: ObjectState) -> tuple[int, int]:
        return state.slice_range if state.slice_range is not None else (0, self.num_slices - 1)

    def _planned_end(self, state: ObjectState, seed: int, step: int, direction: str) -> int:
        """Last slice a run from ``seed`` covers: the range end, the next seed, or half way to it."""
        lo, hi = self._range(state)
        seeds = sorted(state.seeds)
        i = seeds.index(seed)
        if step > 0:
            if i + 1 == len(seeds):
                return hi
            nxt = seeds[i + 1]
            return min(hi, (seed + nxt) // 2 if direction == "both" else nxt - 1)
        if i == 0:
            return lo
        prev = seeds[i - 1]
        return max(lo, (prev + seed) // 2 + 1 if direction == "both" else prev + 1)

    def _owner_result(self, obj_id: int, state: ObjectState, seeds: list[int], t: int) -> SliceResult | None:
        """Result shown on slice ``t``: the seed's own, else the nearest covering run's."""
        if t in state.seeds:
            run = self._runs.get((obj_id, t, 0, state.seeds[t].version))
            return run.results[0] if run is not None and run.results else None
        candidates = []
        for seed in seeds:
            step = 1 if seed < t else -1
            run = self._runs.get((obj_id, seed, step, state.seeds[seed].version))
            if run is not None and run.covers(t, seed, step):
                candidates.append((abs(t - seed), seed, run))
        if not candidates:
            return None
        _, seed, run = min(candidates, key=lambda c: (c[0], c[1]))
        step = 1 if seed < t else -1
        k = (t - seed) * step - 1
        return run.results[k] if k < len(run.results) else None

    def _set_seed(self, slice: int, obj_id: int, update, refine_current: bool = False,
                  slice_range: tuple[int, int] | None = None) -> SliceResult:
        t = self.geometry.check_slice(slice)
        obj_id = check_object_id(obj_id)
        state = self._objects.get(obj_id)
        if slice_range is not None:
            slice_range = self._check_range(slice_range, state)
        rng = slice_range or (state.slice_range if state is not None else None)
        if rng is not None:
            lo, hi = rng
            if not lo <= t <= hi:
                raise PromptError(f"slice {t} lies outside object {obj_id}'s slice range {lo}..{hi}")
        current = None
        if state is not None and refine_current and t not in state.seeds:
            current = self._owner_result(obj_id, state, sorted(state.seeds), t)
        self._push_history()
        state = self._objects.setdefault(obj_id, ObjectState(obj_id))
        if slice_range is not None:
            state.slice_range = slice_range
        old = state.seeds.get(t, SlicePrompts())
        if current is not None and current.mask.any():
            old = replace(old, box=box_around(current.mask, (0.0, 0.0)), mask_logits=current.low_res_logits)
        self._version += 1
        state.seeds[t] = replace(update(old), version=self._version)
        try:
            return self._seed_result(obj_id, t)
        except Exception:
            self._objects = self._history.pop()
            raise

    def _check_range(self, slices: Sequence[int], state: ObjectState | None) -> tuple[int, int]:
        """A slice range ``(k0, k1)`` inside the volume, for an object without a 3D box."""
        if state is not None and state.box3d is not None:
            raise PromptError(f"object {state.obj_id} has a 3D box: its slice range is the box's")
        if len(slices) != 2:
            raise PromptError(f"slice range takes two slice indices (k0, k1), got {slices!r}")
        lo, hi = (self.geometry.check_slice(int(k)) for k in slices)
        if hi < lo:
            raise PromptError(f"slice range {lo}..{hi} is inverted")
        return lo, hi

    def _seed_result(self, obj_id: int, t: int) -> SliceResult:
        for _ in self._seed_iter(obj_id, t):
            pass
        state = self._objects[obj_id]
        return self._runs[(obj_id, t, 0, state.seeds[t].version)].results[0]

    def _seed_iter(self, obj_id: int, t: int) -> Iterator[SliceResult]:
        prompts = self._objects[obj_id].seeds[t]
        key = (obj_id, t, 0, prompts.version)
        if key in self._runs:
            return
        if prompts.mask is not None and prompts.points is None:
            result = SliceResult(t, obj_id, prompts.mask, 1.0, None, "prompt", axis=self.axis)
        else:
            logits = prompts.mask_logits
            if logits is None and prompts.mask is not None:
                self._encode(t)
                logits = self.predictor._require_image().transform.mask_to_low_res(
                    prompts.mask, self.model.mask_input_size)
            pred = self._predict(t, prompts.box, prompts.points, logits)
            mask = _clip(pred.masks[0], self._objects[obj_id].clip_box)
            result = SliceResult(t, obj_id, mask, float(pred.scores[0]), pred.low_res_logits[0], "prompt",
                                 axis=self.axis)
        self._runs[key] = _Run(t, (result,))
        yield result

    def _run(self, obj_id: int, seed: int, step: int, end: int) -> Iterator[SliceResult]:
        """Extend (or start) the run from ``seed`` in direction ``step`` up to slice ``end``."""
        state = self._objects[obj_id]
        version = state.seeds[seed].version
        key = (obj_id, seed, step, version)
        run = self._runs.get(key) or _Run(end)
        if run.stopped or (run.last_slice(seed) - end) * step >= 0:
            if (run.planned_end - end) * step < 0:
                self._runs[key] = replace(run, planned_end=end)
            return
        run = replace(run, planned_end=end if (run.planned_end - end) * step < 0 else run.planned_end)
        prev = run.results[-1] if run.results else self._runs[(obj_id, seed, 0, version)].results[0]
        cfg = self.config
        px_x, px_y = self.geometry.pixel_mm
        reacquire = cfg.reacquire and state.extent is not None
        margins = [(max(m / px_x, cfg.min_margin_px), max(m / px_y, cfg.min_margin_px))
                   for m in (cfg.margin_mm, *cfg.extra_margins_mm)]
        seed_result = self._runs[(obj_id, seed, 0, version)].results[0]
        stopper = None if state.extent is not None else SeedStopper(  # single-slice prompt: see stop_rules
            seed_result.mask, seed_result.score, state.seeds[seed].box, cfg.stop_rules, [r.mask for r in run.results])
        t = prev.slice + step
        while (end - t) * step >= 0:
            boxes = [b for b in (box_around(prev.mask, m, state.clip_box) for m in margins) if b is not None]
            if not boxes and reacquire:
                boxes = [state.extent]
            if not boxes:
                run = replace(run, stopped=True)
                break
            self._prefetch(t, step, end)
            point = interior_point(prev.mask) if cfg.point_prompt else None
            logits = prev.low_res_logits if cfg.mask_prompt else None
            best = None
            for box in boxes:
                pred = self._predict(t, box, [(*point, 1)] if point else None, logits, cfg.multimask)
                k = self._pick(pred, prev.mask) if cfg.multimask else 0
                if best is None or pred.scores[k] > best[0].scores[best[1]]:
                    best = (pred, k)
            pred, k = best
            mask, score = _clip(self._threshold(pred, k), state.clip_box), float(pred.scores[k])
            reason = stop_reason(mask, score, int(prev.mask.sum()), cfg)
            if reason is None and stopper is not None:
                reason = stopper.reason(mask, score, prev.mask, abs(t - seed))
            if reason is not None and reacquire:
                again = self._predict(t, state.extent, None, None)
                mask2 = _clip(self._threshold(again, 0), state.clip_box)
                if stop_reason(mask2, float(again.scores[0]), 0, cfg) is None:
                    pred, k, mask, score, reason = again, 0, mask2, float(again.scores[0]), None
            if reason is not None:
                mask = np.zeros_like(mask)
            stopping = reason is not None and not reacquire
            result = SliceResult(t, obj_id, mask, score, pred.low_res_logits[k], "propagated", reason, self.axis)
            run = replace(run, results=run.results + (result,), stopped=stopping)
            self._runs[key] = run
            yield result
            if stopping:
                log.info("object %d: propagation from slice %d stopped at slice %d (%s)", obj_id, seed, t, reason)
                break
            if reason is None:
                prev = result
            t += step
        self._runs[key] = run

    # ------------------------------------------------------ tri-planar views
    def _fused_seed(self, state: ObjectState, direction: str) -> int | None:
        """The seed slice of ``state``'s 3D box when it is segmented tri-planarly, else None."""
        if self.config.views <= 1 or direction != "both" or state.box3d is None:
            return None
        return next((t for t, p in state.seeds.items() if p.version == state.box_version), None)

    def _drop_stale_views(self) -> None:
        """Forget unfinished views of 3D boxes that were replaced, removed or undone."""
        live = {(o, s.box_version) for o, s in self._objects.items()}
        for key in [k for k in self._views if k not in live]:
            del self._views[key]

    def view_plan(self, obj_id: int) -> ViewPlan | None:
        """The views (and planes per view) a 3D box of ``obj_id`` is propagated over, within
        ``config.view_budget`` times the single-axis encodings (None: no 3D box)."""
        state = self._objects[self._known(obj_id)]
        if state.box3d is None:
            return None
        cfg = self.config
        return plan_views(self.geometry.shape_zyx, self.geometry.spacing_zyx, self.axis, state.box3d,
                          views=cfg.views, budget=cfg.view_budget, input_size=self.model.spec.input_size,
                          sampling=cfg.view_sampling)

    def _view_sessions(self, obj_id: int, box3d: Box3D, version: int) -> list[tuple[ViewGrid, "VolumeSession"]]:
        """One single-axis session per planned view over the box's slice range (object 1 =
        the box), made on first use; they share this session's predictor and cache."""
        key = (obj_id, version)
        if key not in self._views:
            shape, spacing = self.geometry.shape_zyx, self.geometry.spacing_zyx
            config = replace(self.config, views=1)
            plan = self.view_plan(obj_id)
            log.info("object %d: %s", obj_id, plan.describe())
            views = []
            for grid in plan.grids:
                # the session's own axis is seen as it is (as with views=1), the others with square pixels
                display = grid.crop(self._display)
                spacing_xyz = grid.spacing_zyx(shape, spacing)[::-1]
                image = MedicalImage.from_array(display, spacing=spacing_xyz, is_rgb=False)
                view = VolumeSession(self.model, image, axis=grid.axis, predictor=self.predictor, config=config,
                                     display=display)
                view.add_box3d(grid.box(box3d, shape), obj_id=1)
                self._merge_planes(grid, view)
                views.append((grid, view))
            self._views[key] = views
        return self._views[key]

    def _merge_planes(self, grid: ViewGrid, view: "VolumeSession") -> None:
        """Count a view's encoded/visited slices as this session's planes (and slices on its axis)."""
        for mine, theirs, slices in ((self.visited_planes, view.visited_slices, self.visited_slices),
                                     (self.encoded_planes, view.encoded_slices, self.encoded_slices)):
            mine.update((grid.axis, grid.plane_index(t)) for t in theirs)
            if grid.axis == self.axis:
                slices.update(grid.plane_index(t) for t in theirs)

    def _fuse_planned(self, obj_id: int, state: ObjectState, seed: int) -> int:
        """Results :meth:`_fuse_iter` would still yield for the box seed (upper bound)."""
        version = state.seeds[seed].version
        if (obj_id, seed, version) in self._fused:
            return 0
        views = self._views.get((obj_id, version))
        if views is not None:
            return sum(view.planned_slices("both") for _, view in views)
        return self.view_plan(obj_id).encodings - 1

    def _fuse_iter(self, obj_id: int, seed: int) -> Iterator[SliceResult]:
        """Propagate the 3D box of ``obj_id`` along all three axes (yielding each view's results
        on the original grid), then store the majority-fused masks as the box seed's runs."""
        state = self._objects[obj_id]
        version = state.seeds[seed].version
        if (obj_id, seed, version) in self._fused:
            return
        b = state.box3d
        shape = self.geometry.shape_zyx
        views = self._view_sessions(obj_id, b, version)
        for grid, view in views:
            for r in view.iter_propagate("both"):
                self._merge_planes(grid, view)
                yield replace(r, slice=grid.plane_index(r.slice), obj_id=obj_id,
                              mask=grid.restore_plane(r.mask, shape) >= 0.5)
        crop = (slice(b.z0, b.z1 + 1), slice(b.y0, b.y1 + 1), slice(b.x0, b.x1 + 1))
        votes = []
        for grid, view in views:
            planes = np.zeros(view.image.array.shape, dtype=bool)
            for t, r in view.results(1).items():
                view.geometry.put(planes, t, r.mask, True)
            full: list = list(crop)
            full[grid.axis] = slice(None)  # the view volume already spans the box's range on its axis
            votes.append(grid.restore(planes, shape)[tuple(full)])
        fused = np.zeros(shape, dtype=bool)
        fused[crop] = fuse_views(votes)
        main_grid, main_view = views[0]  # the session axis's own view: scores per (encoded) slice
        scores = {main_grid.plane_index(t): r.score for t, r in main_view.results(1).items()}
        lo, hi = state.slice_range

        def result(t: int, source: str) -> SliceResult:
            return SliceResult(t, obj_id, self.geometry.take(fused, t).copy(), scores.get(t, 0.0),
                               None, source, axis=self.axis)

        self._runs[(obj_id, seed, 0, version)] = _Run(seed, (result(seed, "prompt"),))
        self._runs[(obj_id, seed, 1, version)] = _Run(hi, tuple(result(t, "fused") for t in range(seed + 1, hi + 1)))
        self._runs[(obj_id, seed, -1, version)] = _Run(lo, tuple(result(t, "fused")
                                                                 for t in range(seed - 1, lo - 1, -1)))
        self._fused.add((obj_id, seed, version))
        del self._views[(obj_id, version)]

    # -------------------------------------------------------------- encoder
    def plane_display(self, t: int) -> np.ndarray:
        """The encoder's input for slice ``t``: ``(H, W, 3)`` float32 on the 0-255 scale.

        The one place slices become images; a subclass may override it to show the encoder
        something else on the same plane grid (e.g. colour video frames, see
        :mod:`medisam.predict.video`). Embeddings are cached by these pixels.
        """
        plane = self.geometry.take(self._display, t)
        return np.ascontiguousarray(np.repeat(plane[..., None], 3, axis=-1), dtype=np.float32)

    def _key(self, t: int) -> str:
        """Embedding key of plane ``t``, hashed once per session (planes are revisited often)."""
        key = self._plane_keys.get(t)
        if key is None:
            key = self._plane_keys[t] = embedding_key(self.plane_display(t), self.model.cache_signature)
        return key

    def _encode(self, t: int) -> None:
        self.visited_slices.add(t)
        self.visited_planes.add((self.axis, t))
        before = self.predictor.cache.misses
        self.predictor.set_display_image(self.plane_display(t), key=self._key(t))
        if self.predictor.cache.misses > before:
            self.encoded_slices.add(t)
            self.encoded_planes.add((self.axis, t))

    def _prefetch(self, t: int, step: int, end: int) -> None:
        """Encode up to ``config.encode_batch`` upcoming slices of a run in one batch."""
        n = self.config.encode_batch
        if n <= 1:
            return
        todo = []
        s = t
        while len(todo) < n and (end - s) * step >= 0:
            key = self._key(s)
            if self.predictor.cache.get(key) is None:
                todo.append((s, key))
            s += step
        if len(todo) < 2:
            return
        tensors, transforms = zip(*(self.model.preprocess(self.plane_display(s)) for s, _ in todo))
        embeddings = self.model.encode(torch.cat(tensors))
        for i, (s, key) in enumerate(todo):
            self.predictor.cache.put(key, CachedEmbedding(embeddings[i:i + 1].clone(), transforms[i]))
            self.encoded_slices.add(s)
            self.encoded_planes.add((self.axis, s))

    @staticmethod
    def _pick(pred, previous: np.ndarray) -> int:
        """Index of the candidate mask with the highest IoU with the previous slice's mask."""
        inter = np.logical_and(pred.masks, previous[None]).sum(axis=(1, 2))
        union = np.logical_or(pred.masks, previous[None]).sum(axis=(1, 2))
        return int(np.argmax(inter / np.maximum(union, 1) + 1e-3 * pred.scores))

    def _threshold(self, pred, k: int = 0) -> np.ndarray:
        """Candidate ``k``'s mask at ``config.mask_threshold`` (pred.masks uses 0)."""
        if self.config.mask_threshold == 0.0:
            return pred.masks[k]
        transform = self.predictor._require_image().transform
        return transform.masks_to_original(pred.low_res_logits[k:k + 1], self.config.mask_threshold)[0]

    def _predict(self, t: int, box: Box | None, points, logits: np.ndarray | None, multimask: bool = False):
        self._encode(t)
        mask = MaskPrompt(logits) if logits is not None else None
        return self.predictor.predict(box=box, points=points, mask=mask, multimask=multimask)
