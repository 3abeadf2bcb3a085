"""The single-axis engine: prompts on slices of one axis, propagated slice to slice.

How slices are owned: every seed slice keeps its own prompted result; every other slice
takes the result of the nearest seed whose propagation run reaches it (ties go to the
earlier slice). So a correction on any slice after a propagation re-propagates outward
from that slice only up to half way to the neighbouring seeds, and leaves the rest alone.
Prompts, runs and undo live in a :class:`~medisam.predict.store.PromptStore`; encoding
in a :class:`~medisam.predict.encoder.PlaneEncoder`; the loop in :mod:`~medisam.predict.axis_runs`.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from medisam.errors import InputError, ModelError, PromptError
from medisam.io.intensity import apply_window, ct_box_window, in_hounsfield
from medisam.io.medical_image import MedicalImage, grid_difference
from medisam.models.promptable import PromptableModel
from medisam.models.runtime import resolve_threads
from medisam.models.speed_profile import encoding_time
from medisam.models.upscale_window import exact_logits
from medisam.predict.axis_runs import (owner_result, planned_end, run_iter, run_planned, seed_iter, two_pass,
                                       two_pass_iter, two_pass_planned)
from medisam.predict.cache import EmbeddingCache
from medisam.predict.contract import (MAX_NOTICES, SliceResult, ViewProgress, check_drawn_axis, check_object_id,
                                     paint_order, run_to_end, steps_of, tracks_with_memory)
from medisam.predict.encoder import PlaneEncoder
from medisam.predict.predictor import Predictor
from medisam.predict.propagation import PropagationConfig, box_around
from medisam.predict.click_layer import ClickLayer
from medisam.predict.view_plan import encodings_at_most, stride_words
from medisam.predict.store import MAX_UNDO, ObjectState, PromptStore, SlicePrompts, check_in_range
from medisam.predict.display_volume import DisplayVolume
from medisam.predict.volume import SliceGeometry, as_box3d, parse_axis, volume_of
from medisam.prompts import Box, Box3D, MaskPrompt, Points

if TYPE_CHECKING:
    from medisam.predict.refine3d import ClickOutcome


@dataclass(frozen=True)
class SessionSnapshot:
    """A session's state (:meth:`AxisSession.snapshot`): the volume shape, axis and model it
    belongs to, its prompt store (prompts, results, undo history) and a subclass's extra state."""

    shape: tuple[int, ...]
    axis: int
    model: str
    store: PromptStore
    extra: object = None


def check_guide(guide: MedicalImage | np.ndarray, image: MedicalImage, k: int = 0) -> MedicalImage:
    """Guide ``k`` as a volume, checked to lie on ``image``'s voxel grid (:func:`grid_difference`: its
    shape, and where it has a geometry of its own its spacing, orientation and origin)."""
    g = volume_of(guide)
    differs = grid_difference(g, image, geometry=isinstance(guide, MedicalImage))
    if differs is not None:
        what, mine, theirs = differs
        hint = ": resample the guide onto the image first" if what in ("orientation", "origin") else ""
        raise InputError(f"guide {k} has {what} {mine}; the image has {theirs} "
                         f"(guides must be on the image's voxel grid{hint})")
    return g


class AxisSession(ClickLayer):
    """Segment objects through a 3D volume along one axis from prompts on a few slices.

    Args:
        model: a SAM-family :class:`PromptableModel` (LiteMedSAM, SAM, MedSAM).
        image: :class:`MedicalImage` volume or a ``(Z, Y, X)`` array.
        axis: slicing axis of the ``(Z, Y, X)`` array, ``0/1/2`` or ``"k"/"j"/"i"``.
        window: CT window preset or ``(width, level)``; default: one window for the whole
            volume from the modality (see :func:`medisam.predict.volume.volume_to_display`).
        predictor: reuse a predictor (and its cache); by default one is made with a cache
            sized from the model to hold every plane the session may encode.
        config: propagation rules (:class:`PropagationConfig`).
        display: the volume already mapped to float32 [0, 255] (same shape), instead of
            mapping ``image`` with ``window``; lets sessions over one volume share it.
        max_undo: undo steps kept.
        guides: other images of the same volume (e.g. T1c beside a FLAIR ``image``), same
            ``(Z, Y, X)`` grid: the model sees ``image`` only, 3D corrective clicks
            (:mod:`~medisam.predict.refine3d`) see every channel, so tissues that look alike in
            one contrast and differ in another are told apart.
        box_windows: give each 3D box its own window, from its voxels
            (:func:`~medisam.io.intensity.ct_box_window`): the object is then encoded, propagated and
            clicked in that window (its slice prompts too). Default (None): on for a CT in HU given
            neither ``window`` nor ``display``, as ``medisam propagate`` does; objects without a 3D box
            see the session's display.
    """

    def __init__(self, model: PromptableModel, image: MedicalImage | np.ndarray, axis: int | str = 0,
                 window: str | tuple[float, float] | None = None, predictor: Predictor | None = None,
                 config: PropagationConfig | None = None, display: np.ndarray | None = None,
                 max_undo: int = MAX_UNDO, guides: Sequence[MedicalImage | np.ndarray] = (),
                 box_windows: bool | None = None):
        if tracks_with_memory(model):
            raise ModelError(f"{model.name} is a SAM 2 model: use Sam2Session (memory-based tracking) "
                             "instead of VolumeSession")
        self.image = volume_of(image)
        self.model = model
        self.geometry = SliceGeometry(tuple(self.image.spatial_shape), parse_axis(axis),
                                      tuple(float(s) for s in self.image.spacing_zyx))
        self.config = config or PropagationConfig()
        if box_windows is None:
            box_windows = window is None and display is None and in_hounsfield(self.image.array, self.image.modality)
        #: whether each 3D box gets its own window (:meth:`box_window`)
        self.box_windows = bool(box_windows)
        if display is None:  # mapped where it is read: a float32 copy of a long CT took GiBs
            display = DisplayVolume.of(self.image.array, self.image.modality, window)
        elif display.shape != self.image.array.shape:
            raise InputError(f"display volume {display.shape} does not match the image {self.image.array.shape}")
        self._display = display
        self._guides = tuple(self._guide_display(g, k) for k, g in enumerate(guides))
        own_cache = predictor is None
        if predictor is None:
            predictor = Predictor(model, cache=EmbeddingCache())
        elif predictor.model is not model:
            raise InputError("the predictor was built for another model")
        self.predictor = predictor
        stride = self._encode_stride()
        self.encoder = PlaneEncoder(predictor, self.axis, self.plane_display, self._planes_needed(), own_cache,
                                    self.config.encode_batch, self.num_slices, stride,
                                    self.config.coarse_stride(stride))
        #: the encoders of the 3D boxes' own windows on this axis (:meth:`encoder_of`), by window
        self._window_encoders: dict[tuple[float, float], PlaneEncoder] = {}
        self.store = PromptStore(max_undo)
        #: what propagations said to the user beyond their results (e.g. a view left out of a 3D
        #: box's vote), oldest first; bounded, so a long session's memory stays flat
        self.notices: deque[str] = deque(maxlen=MAX_NOTICES)

    @property
    def guides(self) -> int:
        """How many guide channels the 3D click walker sees besides the display volume."""
        return len(self._guides)

    def add_guide(self, guide: MedicalImage | np.ndarray) -> None:
        """Add a guide (see the class arguments): another image of the same volume, on its grid."""
        self._guides = (*self._guides, self._guide_display(guide, len(self._guides)))

    def adopt_guides(self, other: "AxisSession") -> None:
        """Take ``other``'s guide channels as they are (a session on the same image, e.g. one
        reopened with another window: the channels are mapped on their own, not with the window)."""
        if other.image.spatial_shape != self.image.spatial_shape:
            raise InputError(f"guides of a {other.image.spatial_shape} session do not fit {self.image.spatial_shape}")
        self._guides = tuple(other._guides)

    def _guide_display(self, guide: MedicalImage | np.ndarray, k: int) -> DisplayVolume:
        """Guide ``k`` mapped to float32 [0, 255] as the display is (one window for the volume)."""
        g = check_guide(guide, self.image, k)
        return DisplayVolume.of(g.array, g.modality)

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

    @property
    def _objects(self) -> dict[int, ObjectState]:
        return self.store.objects

    @property
    def _runs(self) -> dict:
        return self.store.runs

    @property
    def encoded_slices(self) -> set[int]:
        """Slices of the session's axis the encoder ran on."""
        return self.encoder.encoded

    @property
    def visited_slices(self) -> set[int]:
        """Slices of the session's axis whose embedding a prompt or run used."""
        return self.encoder.visited

    @property
    def encoded_planes(self) -> set[tuple[int, int]]:
        """Encoded planes as ``(axis, index)`` over every view."""
        return self.encoder.encoded_planes

    @property
    def visited_planes(self) -> set[tuple[int, int]]:
        return self.encoder.visited_planes

    def _planes_needed(self) -> int:
        return self.geometry.num_slices

    def object_state(self, obj_id: int) -> ObjectState:
        """A copy of one object's prompt state."""
        return copy.deepcopy(self._objects[self._known(obj_id)])

    def slice_prompts(self, slice: int, obj_id: int) -> SlicePrompts | None:
        """The prompts of ``obj_id`` on ``slice`` (None: none there)."""
        state = self._objects.get(check_object_id(obj_id))
        return None if state is None else state.seeds.get(slice)

    def found_box(self, slice: int, obj_id: int = 1) -> Box | None:
        """The box the points alone of ``obj_id`` on seed ``slice`` were answered with
        (:mod:`medisam.predict.point_box`; its runs use it as a drawn box). None for a drawn box,
        a mask, or a slice whose seed result is not computed."""
        prompts = self.slice_prompts(slice, obj_id)
        if prompts is None or prompts.box is not None:
            return None
        own = self._runs.get((obj_id, slice, 0, prompts.version))
        return None if own is None else own.found_box

    # -------------------------------------------------------------- prompts
    def add_box(self, slice: int, box: Box | Sequence[float], obj_id: int = 1,
                slices: tuple[int, int] | None = None) -> SliceResult:
        """Prompt a box (XYXY pixels of the plane) on ``slice``; returns that slice's mask.

        A box replaces an earlier box (or mask) on the same slice and keeps its points.
        Propagation from it ends where the object does (``config.stop_rules``) and, when
        ``slices=(k0, k1)`` is given (inclusive), within that slice range.
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
                return replace(old, points=Points(np.concatenate([old.points.coords, p.coords]),
                                                  np.concatenate([old.points.labels, p.labels])))
            return replace(old, points=p)

        return self._set_seed(slice, obj_id, update, refine_current=True)

    def add_mask(self, slice: int, mask2d: np.ndarray, obj_id: int = 1) -> SliceResult:
        """Use a given ``(H, W)`` binary mask on ``slice`` as that slice's result and a seed."""
        m = np.asarray(mask2d)
        if m.shape != self.plane_hw:
            raise PromptError(f"mask of shape {m.shape} does not match the slice plane {self.plane_hw}")
        if not m.astype(bool).any():
            raise PromptError(f"mask for slice {slice} is empty")
        return self._set_seed(slice, obj_id, lambda old: SlicePrompts(mask=m.astype(bool)))

    def add_box3d(self, box3d: Box3D | Sequence[float], obj_id: int = 1, drawn_on: int | None = None,
                  drawn_axis: int = 0) -> SliceResult:
        """CVPR24 3D-box protocol: the box's x/y extent prompts the middle slice of its range,
        and the object's propagation stays inside that slice range (and x/y extent when
        ``config.clip_to_box``). ``box3d`` is a :class:`Box3D` or ``(x0, y0, z0, x1, y1, z1)``
        voxel indices of the ``(Z, Y, X)`` array (i, j, k), inclusive. Replaces the
        object's earlier prompts; all or nothing (on an error nothing changes).

        ``drawn_on``: the slice along array axis ``drawn_axis`` (0: a k slice) the box's extent in
        that slice's plane was drawn on, when only that slice is known to lie inside it: a 2D box with
        the object's slice range, the CVPR25 protocol's start, or a box drawn in the server's or web
        UI's slices along the session's axis. The box then bounds the object only along ``drawn_axis``
        (a corrective click may reach past its in-plane extent on the other slices) and, when the
        session slices along ``drawn_axis``, prompts that slice.
        """
        b3 = as_box3d(box3d)
        drawn_axis = check_drawn_axis(drawn_axis)
        drawn_on = b3.check_drawn_on(drawn_on, drawn_axis)
        box, lo, hi = self.geometry.box3d_to_plane(b3)
        obj_id = check_object_id(obj_id)
        with self.step():
            self.store.push()
            state = ObjectState(obj_id, {}, (lo, hi), box if self.config.clip_to_box else None, box, b3,
                                window=self.box_window(b3), drawn_on=drawn_on, drawn_axis=drawn_axis)
            self._objects[obj_id] = state
            on_axis = drawn_on is not None and self.axis == drawn_axis
            seed = drawn_on if on_axis else self._best_seed_slice(box, lo, hi, obj_id)
            version = self.store.next_version()
            state.seeds[seed] = SlicePrompts(box=box, version=version)
            state.box_version = version
            return self._seed_result(obj_id, seed)

    def box_window(self, box3d: Box3D) -> tuple[float, float] | None:
        """The window ``(width, level)`` a 3D box's object is encoded, propagated and clicked in with
        :attr:`box_windows`: the 0.5-99.5 percentiles of its voxels, at least 400 HU wide (None: the
        session's display).

        Why per box: one window does not serve every object of a CT (the soft-tissue window blanks
        a lung nodule's surroundings, air to bone flattens an abdominal organ); stop 51 measured it
        through the protocol (docs/interactive3d.md, "A window per 3D box")."""
        if not self.box_windows:
            return None
        return ct_box_window(self.image.array, self.image.modality, box3d.slices)

    def _best_seed_slice(self, box: Box, lo: int, hi: int, obj_id: int | None = None) -> int:
        """The middle slice of ``lo..hi``, or with ``config.seed_search`` the nearby slice
        whose box prediction has the highest predicted IoU (ties: nearest the middle)."""
        middle = lo + (hi - lo) // 2
        k = self.config.seed_search
        if k <= 0:
            return middle
        candidates = sorted(range(max(lo, middle - k), min(hi, middle + k) + 1), key=lambda z: abs(z - middle))
        scores = [float(self._predict(z, box, None, None, obj_id=obj_id).scores[0]) for z in candidates]
        return candidates[int(np.argmax(scores))]

    def remove_object(self, obj_id: int) -> None:
        """Forget one object's prompts and free its results (undoable)."""
        self.store.remove(self._known(obj_id))

    def reset(self) -> None:
        """Forget every prompt and free every result (undoable; the embedding cache is kept)."""
        self.store.clear()

    def snapshot(self) -> "SessionSnapshot":
        """The session's prompts, results and undo history now, as a deep copy (:meth:`restore`
        brings them back, here or in a new session over the same volume and model: e.g. one
        LiteMedSAM start scored with several click settings, ``benchmarks/walker_params.py``)."""
        return SessionSnapshot(tuple(self.image.spatial_shape), self.axis, self.model.name,
                               copy.deepcopy(self.store), copy.deepcopy(self._extra_state()))

    def restore(self, snap: "SessionSnapshot") -> None:
        """Make the session what it was at :meth:`snapshot` (a copy: ``snap`` can be restored again).

        Raises InputError when ``snap`` was taken over another volume shape, axis or model.
        """
        here = (tuple(self.image.spatial_shape), self.axis, self.model.name)
        if (snap.shape, snap.axis, snap.model) != here:
            raise InputError(f"snapshot of a session over shape {snap.shape}, axis {snap.axis}, model "
                             f"{snap.model!r} cannot be restored into one over {here[0]}, axis {here[1]}, "
                             f"model {here[2]!r}")
        self.store = copy.deepcopy(snap.store)
        self._set_extra_state(copy.deepcopy(snap.extra))

    def add_click(self, zyx: Sequence[int], positive: bool = True, obj_id: int = 1) -> "ClickOutcome":
        """Correct the 3D result with one click at voxel ``(z, y, x)`` (see :mod:`~medisam.predict.refine3d`):
        the random walker refines the object's 3D mask around the click (no model call; a click that
        starts a new object re-decodes its slice and propagates); ``outcome.undo_steps`` calls of
        :meth:`undo` take it back."""
        from medisam.predict.refine3d import refine_with_click

        return refine_with_click(self, zyx, positive, obj_id)

    def add_clicks(self, voxels: Sequence[Sequence[int]], positive: bool = True, obj_id: int = 1) -> "ClickOutcome":
        """Correct object ``obj_id``'s 3D result with several clicks of one sign (a scribble's) solved
        together (:func:`~medisam.predict.refine3d.refine_with_clicks`): one walker solve, one undo step."""
        from medisam.predict.refine3d import refine_with_clicks

        return refine_with_clicks(self, voxels, positive, obj_id)

    def step(self):  # noqa: ANN201 - context manager
        """``with session.step(): ...``: the calls inside are ONE undo step, all or nothing."""
        return self.store.step()

    @property
    def can_undo(self) -> int:
        """Undo steps available."""
        return len(self.store.history)

    @property
    def max_undo(self) -> int:
        """Undo steps the session keeps at most (older ones are dropped: memory stays flat)."""
        return self.store.max_undo

    def undo(self) -> None:
        """Revert the last add_*/clear_slice/remove_object/reset (or :meth:`step` block);
        kept results are reused, seeds whose results were freed are recomputed."""
        self.store.undo()
        for obj_id, state in self._objects.items():
            for t in state.seeds:
                self._seed_result(obj_id, t)

    def clear_slice(self, slice: int, obj_id: int = 1) -> None:
        """Remove the prompts of one object on one slice (the object goes when none are left)."""
        state = self._objects[self._known(obj_id)]
        if slice not in state.seeds:
            raise PromptError(f"object {obj_id} has no prompt on slice {slice}")
        self.store.push()
        state = self._objects[obj_id]
        del state.seeds[slice]
        if not state.seeds:
            del self._objects[obj_id]

    # ---------------------------------------------------------- propagation
    def iter_propagate(self, direction: str = "both") -> Iterator[SliceResult | ViewProgress]:
        """Propagate every object from its seed slices; yield each slice result as computed.

        A box on one slice (no 3D box) is propagated in two passes (:mod:`~medisam.predict.slice_box`):
        the first pass's slices come as :class:`ViewProgress` items, the second's as results.

        ``direction``: ``"both"`` (each slice from its nearest seed), ``"forward"``
        (increasing slice index) or ``"backward"``. Stopping the iteration cancels
        cleanly: completed slices are kept and a later call resumes. Slices already
        computed by an earlier call are not yielded again.
        """
        steps = steps_of(direction)
        self._before_propagate()
        for obj_id in self.object_ids:
            state = self._objects[obj_id]
            fused_seed = self._fused_seed(state, direction)
            for seed in sorted(state.seeds):
                yield from seed_iter(self, obj_id, seed)
                if seed == fused_seed:
                    yield from self._fuse_iter(obj_id, seed)
                    continue
                if two_pass(self, obj_id, seed):
                    yield from two_pass_iter(self, obj_id, seed, direction, steps)
                    continue
                for step in steps:
                    end = planned_end(state, seed, step, direction, self._range(state))
                    yield from run_iter(self, obj_id, seed, step, end)

    def planned_slices(self, direction: str = "both") -> int:
        """Upper bound of the slice results ``iter_propagate(direction)`` would compute (for ETA)."""
        return sum(self._planned_object(obj_id, direction) for obj_id in self.object_ids)

    def _planned_object(self, obj_id: int, direction: str) -> int:
        """:meth:`planned_slices` of one object."""
        steps = steps_of(direction)
        state = self._objects[obj_id]
        fused_seed = self._fused_seed(state, direction)
        total = 0
        for seed in state.seeds:
            version = state.seeds[seed].version
            total += (obj_id, seed, 0, version) not in self._runs
            if seed == fused_seed:
                total += self._fuse_planned(obj_id, state, seed)
                continue
            if two_pass(self, obj_id, seed):
                total += two_pass_planned(self, obj_id, seed, direction, steps)
                continue
            for step in steps:
                total += run_planned(self._runs.get((obj_id, seed, step, version)), seed, step,
                                     planned_end(state, seed, step, direction, self._range(state)))
        return total

    def _axis_plan(self, obj_id: int, direction: str) -> tuple[str, int] | None:
        """The cost of ``obj_id``'s coming runs along the session axis in words, and its encodings at
        most (None: no work): planes at most, encodings at most at the encoder's strides."""
        slices = self._planned_object(obj_id, direction)
        if not slices:
            return None
        enc = self.encoder
        most = encodings_at_most(slices, enc.stride)
        return (f"object {obj_id}: along {'kji'[self.axis]}, up to {slices} planes "
                f"({stride_words(enc.stride, enc.coarse)}), at most {most} encodings", most)

    def _encoding_time(self, encodings: int) -> str | None:
        """``encodings`` of this session's model in words (:func:`~medisam.models.speed_profile.encoding_time`):
        from this session's warm encodings, else the machine's profile, else its first (cold) encoding,
        which took 4.5x the next ones in a hunt; None when unknown."""
        said = (encodings, self.model.name, getattr(self.model, "backend", "torch"),
                getattr(self.model, "precision", "fp32"))
        threads = getattr(self.model, "threads", None) or resolve_threads()  # the profile's figure scaled to them
        # a warm timing of this session, else the machine's profile, else the one cold (first) encoding
        return next(filter(None, (encoding_time(*said, ms, threads) for ms in
                                  (self.encoder.warm_ms, None, self.encoder.timed_ms))), None)

    #: What one step of the progress bar is (one result of :meth:`iter_propagate`): a plane, as
    #: the plan lines count them (a tri-planar 3D box's views yield planes across the session axis).
    progress_unit = "plane"

    def propagate(self, direction: str = "both", progress: bool = True) -> MedicalImage:
        """Run :meth:`iter_propagate` to the end and return the label map (input geometry)."""
        run_to_end(self, self.iter_propagate(direction), direction, progress, self.progress_unit, "propagate")
        return self.label_map()

    def model_results(self, obj_id: int, within: tuple[int, int] | None = None) -> dict[int, SliceResult]:
        """Like :meth:`results`, without the 3D clicks' voxels: the model's propagated result
        (``within``: only slices ``lo..hi``, inclusive, of it)."""
        state = self._objects[self._known(obj_id)]
        out: dict[int, SliceResult] = {}
        seeds = sorted(state.seeds)
        lo, hi = self._range(state)
        if within is not None:
            lo, hi = max(lo, within[0]), min(hi, within[1])
        for t in range(lo, hi + 1):
            r = self._owner_result(obj_id, state, seeds, t)
            if r is not None:
                out[t] = r
        return out

    def label_map(self) -> MedicalImage:
        """``(Z, Y, X)`` labels (object id per voxel, the smaller object on top where objects
        overlap: :func:`~medisam.predict.contract.paint_order`) with the input's geometry."""
        n = max(self._objects, default=0)
        labels = np.zeros(self.image.spatial_shape, dtype=np.uint8 if n < 256 else np.uint16)
        model = {obj_id: self.model_results(obj_id) for obj_id in self.object_ids}
        for obj_id in self._paint_order(model):
            for t, r in self.with_clicks(obj_id, model[obj_id]).items():
                r.paint(self.geometry.take(labels, t), obj_id)
        return self.image.as_labels(labels, copy=False)

    def paint_order(self) -> list[int]:
        """Object ids in the order :meth:`label_map` paints them (the last one on top)."""
        return self._paint_order({obj_id: self.model_results(obj_id) for obj_id in self.object_ids})

    @staticmethod
    def _paint_order(model: dict[int, dict[int, SliceResult]]) -> list[int]:
        return paint_order({obj_id: sum(r.area for r in res.values()) for obj_id, res in model.items()})

    # ------------------------------------------- hooks of the tri-planar orchestrator
    def _before_propagate(self) -> None:
        """Called before each propagation (a subclass drops stale work here)."""

    def _fused_seed(self, state: ObjectState, direction: str) -> int | None:
        """The seed slice propagated by :meth:`_fuse_iter` instead of along this axis (none here)."""
        return None

    def _fuse_iter(self, obj_id: int, seed: int) -> Iterator[SliceResult | ViewProgress]:
        return iter(())

    def _fuse_planned(self, obj_id: int, state: ObjectState, seed: int) -> int:
        return 0

    def _extra_state(self) -> object:
        """What a subclass keeps besides the prompt store (in :meth:`snapshot`; none here)."""
        return None

    def _set_extra_state(self, extra: object) -> None:
        """Restore :meth:`_extra_state` (see :meth:`restore`)."""

    def plan_lines(self, direction: str = "both") -> list[str]:
        """The cost of the coming propagation, one line per costly piece (a subclass's tri-planar
        boxes); shown before the work by :meth:`propagate`, the server and the web UI."""
        return []

    # -------------------------------------------------------------- internals
    def _known(self, obj_id: int) -> int:
        obj_id = check_object_id(obj_id)
        if obj_id not in self._objects:
            raise PromptError(f"no object {obj_id}; objects: {self.object_ids or 'none'}")
        return obj_id

    def _range(self, state: ObjectState) -> tuple[int, int]:
        return state.slice_range if state.slice_range is not None else (0, self.num_slices - 1)

    def _owner_result(self, obj_id: int, state: ObjectState, seeds: list[int], t: int) -> SliceResult | None:
        """Result shown on slice ``t``: the seed's own, else the nearest covering run's."""
        return owner_result(self._runs, obj_id, state, seeds, t)

    def _set_seed(self, slice: int, obj_id: int, update, refine_current: bool = False,  # noqa: ANN001
                  slice_range: tuple[int, int] | None = None) -> SliceResult:
        t = self.geometry.check_slice(slice)
        obj_id = check_object_id(obj_id)
        state = self._objects.get(obj_id)
        if slice_range is not None:
            if state is not None and state.box3d is not None:
                raise PromptError(f"object {obj_id} has a 3D box: its slice range is the box's")
            slice_range = self.geometry.check_range(slice_range)
        check_in_range(t, obj_id, slice_range or (state.slice_range if state is not None else None))
        current = None
        if state is not None and refine_current and t not in state.seeds:
            current = self._owner_result(obj_id, state, sorted(state.seeds), t)
        with self.step():
            self.store.push()
            state = self._objects.setdefault(obj_id, ObjectState(obj_id))
            state.edit, state.clicks3d = None, ()  # a slice prompt re-segments: the 3D clicks' layer goes
            if slice_range is not None:
                state.slice_range = slice_range
            old = state.seeds.get(t, SlicePrompts())
            if current is not None and current.mask.any():
                old = replace(old, box=box_around(current.mask, (0.0, 0.0)), mask_logits=current.low_res_logits)
            state.seeds[t] = replace(update(old), version=self.store.next_version())
            return self._seed_result(obj_id, t)

    def _seed_result(self, obj_id: int, t: int) -> SliceResult:
        for _ in seed_iter(self, obj_id, t):
            pass
        return self._runs[(obj_id, t, 0, self._objects[obj_id].seeds[t].version)].results[0]

    # -------------------------------------------------------------- encoder
    def plane_display(self, t: int) -> np.ndarray:
        """The encoder's input for slice ``t``: ``(H, W, 3)`` float32 on the 0-255 scale.

        The one place slices become images; a subclass may override it to show the encoder
        something else on the same plane grid (e.g. colour video frames, see
        :mod:`medisam.predict.tracking`). Embeddings are cached by these pixels.
        """
        plane = self.geometry.take(self._display, t)
        return np.ascontiguousarray(np.repeat(plane[..., None], 3, axis=-1), dtype=np.float32)

    def _encode_stride(self) -> int:
        """Planes between encoded ones in propagation (``config.encode_stride``; auto from the plane distance)."""
        return self.config.stride_for(self.geometry.spacing_zyx[self.axis])

    def encoder_of(self, obj_id: int | None) -> PlaneEncoder:
        """The encoder of ``obj_id``'s planes on this axis: the session's, or where the object's 3D box
        has its own window (:meth:`box_window`), one for that window. It counts its planes in the
        session's sets (``encoded_slices``...) and shares the predictor's cache, keyed by pixels."""
        window = None if obj_id is None or obj_id not in self._objects else self._objects[obj_id].window
        if window is None:
            return self.encoder
        encoder = self._window_encoders.get(window)
        if encoder is None:
            live = {state.window for state in self._objects.values()}  # a long session's encoders stay few
            self._window_encoders = {w: e for w, e in self._window_encoders.items() if w in live}
            main = self.encoder
            encoder = PlaneEncoder(self.predictor, self.axis, lambda t: self._windowed_plane(t, window), main.planes,
                                   False, main.batch, main.count, main.stride, main.coarse)
            for name in ("encoded", "visited", "interpolated", "own", "encoded_planes", "visited_planes"):
                setattr(encoder, name, getattr(main, name))  # one count of the session's planes
            self._window_encoders[window] = encoder
        return encoder

    def _windowed_plane(self, t: int, window: tuple[float, float]) -> np.ndarray:
        """Plane ``t`` of the image in ``window``, as :meth:`plane_display` gives the session's."""
        plane = apply_window(self.geometry.take(self.image.array, t), window)
        return np.ascontiguousarray(np.repeat(plane[..., None], 3, axis=-1), dtype=np.float32)

    def _encode(self, t: int, interpolate: bool = False, fine: bool = False, obj_id: int | None = None) -> None:
        self.encoder_of(obj_id).encode(t, interpolate, fine)

    def _threshold(self, pred, k: int = 0) -> np.ndarray:  # noqa: ANN001 - Prediction
        """Candidate ``k``'s mask at ``config.mask_threshold`` (pred.masks uses 0)."""
        if self.config.mask_threshold == 0.0:
            return pred.masks[k]
        return self.predictor.transform.masks_to_original(pred.low_res_logits[k:k + 1], self.config.mask_threshold)[0]

    def _predict(self, t: int, box: Box | None, points, logits: np.ndarray | None,  # noqa: ANN001
                 multimask: bool = False, interpolate: bool = False, fine: bool = False,
                 obj_id: int | None = None):  # noqa: ANN202
        self._encode(t, interpolate, fine, obj_id)
        mask = MaskPrompt(logits) if logits is not None else None
        if self.config.mask_prompt:  # the logits go on as the next plane's mask prompt: the whole grid's
            with exact_logits():
                return self.predictor.predict(box=box, points=points, mask=mask, multimask=multimask)
        return self.predictor.predict(box=box, points=points, mask=mask, multimask=multimask)


__all__ = ["AxisSession"]
