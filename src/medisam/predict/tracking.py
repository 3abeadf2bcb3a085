"""Multi-object video tracking with a 2D SAM-family model (LiteMedSAM, SAM, MedSAM).

:class:`TrackingSession` tracks every prompted object frame by frame, all objects together:
each frame is encoded once and every object active on it is decoded from that one
embedding, prompted from its own result on the previous frame (:class:`TrackingConfig`).
Then the objects' masks on the frame are made consistent (:func:`resolve_frame`):

1. **Prompts win.** An object prompted on this frame keeps its pixels against objects
   propagated onto it (the user's word beats a prediction).
2. **One object, one track.** When two objects' predictions cover mostly the same pixels
   (IoU >= ``same_object_iou``), they have run into the same object: the one prompted on
   this frame, else the one whose prediction overlaps its own previous mask more, keeps
   it; the other stops (``stop="merged"``). So a track never jumps onto a neighbour's
   object, and no two ids share one.
3. **One label per pixel.** Remaining overlaps go pixel by pixel to the object with the
   highest logit (SAM 2's non-overlap constraint); ties to the lower id.
4. **Divisions and fragments.** A mask in several pieces continues as its largest
   connected part, before and after rules 2-3 (prompted masks are kept whole; a dividing object is followed as the larger
   daughter; prompt the other daughter as a new object on the frame where it appears; a
   fragment of a neighbour caught in a box is dropped instead of taken).
5. **Leaving.** An object whose mask is empty after these steps has left the field of
   view (or was taken over by another object) and stops for the rest of the pass
   (``stop="left"``); prompt it again to resume.

Frames after an object's first prompt are tracked forward from its latest prompt before
them; with ``direction="both"`` frames before the first prompt are tracked backward from
it (objects tracked backward never take pixels of objects tracked forward on that frame),
except for objects in ``TrackingSession.begins``, which appear on their first prompt.
Results are kept per pass and reused: after a new prompt on frame ``f`` only frames from
``f`` on (in the pass's direction) are recomputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from medisam.errors import InputError
from medisam.io.intensity import to_display
from medisam.io.medical_image import MedicalImage
from medisam.models.transform import InputTransform
from medisam.predict.cache import EmbeddingCache
from medisam.predict.predictor import Predictor
from medisam.predict.propagation import box_around
from medisam.predict.session import DIRECTIONS, ObjectState, SliceResult, VolumeSession
from medisam.prompts import Box, MaskPrompt

log = logging.getLogger(__name__)


#: Decoder passes a :class:`TrackingConfig` can pool per object and frame.
CANDIDATES = ("box", "multimask", "mask-prompt")


@dataclass(frozen=True)
class TrackingConfig:
    """How each object is prompted from its previous frame (defaults chosen by
    ``benchmarks/video_tracking.py``).

    Attributes:
        margin: growth of the previous mask's box on each side, in pixels of the model's
            input grid (3 = the LiteMedSAM box-chain reference: 3 px at 256).
        candidates: the decoder passes whose masks compete on every frame: ``"box"`` (the
            box alone, SAM's single output), ``"multimask"`` (SAM's 3 ambiguity candidates
            for the box), ``"mask-prompt"`` (the box plus the previous frame's low-res logits
            as the mask prompt). The candidate overlapping the previous mask most (IoU;
            ties: SAM's predicted IoU) wins: temporal consistency rather than SAM's own
            choice, which drifts between a part and the whole of an object.
        motion: extend the box by the object's last displacement (centroid velocity) in
            the direction it moves: it covers where the object was and where it is heading,
            so a jump of the centroid (a division) cannot push the box off the object.
        same_object_iou: IoU of two objects' predictions above which they are the same
            object (rule 2 of the module docstring).
        keep_largest: keep only the largest connected part of a mask (rule 4).
    """

    margin: float = 3.0
    candidates: tuple[str, ...] = ("multimask",)
    motion: bool = True
    same_object_iou: float = 0.5
    keep_largest: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.candidates) - set(CANDIDATES)
        if not self.candidates or unknown:
            raise InputError(f"candidates must be some of {', '.join(CANDIDATES)}, got {self.candidates!r}")


@dataclass
class Candidate:
    """One object's prediction on a frame, before the frame's masks are made consistent."""

    mask: np.ndarray  # (H, W) bool
    low_res_logits: np.ndarray | None  # (L, L) model-grid logits (None for a user-given mask)
    score: float
    prompted: bool  # prompted on this frame (rule 1)
    previous: np.ndarray | None = None  # the object's mask on the previous frame of the pass
    fixed: bool = False  # pixels of an object from another pass: never taken (see "both")


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a 2D bool mask (the mask itself when in one piece)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def full_logits(transform: InputTransform, low_res: np.ndarray) -> np.ndarray:
    """``(L, L)`` low-res logits -> ``(H, W)`` float32 logits on the original grid (the
    resampling :meth:`InputTransform.masks_to_original` thresholds)."""
    logits = np.asarray(low_res, dtype=np.float32)
    if logits.shape[-1] != transform.input_size:
        logits = cv2.resize(logits, (transform.input_size,) * 2, interpolation=cv2.INTER_LINEAR)
    h, w = transform.resized_hw
    cropped = logits[:h, :w]
    if cropped.shape != transform.original_hw:
        cropped = cv2.resize(cropped, transform.original_hw[::-1], interpolation=cv2.INTER_LINEAR)
    return cropped


def _keeper(a: int, b: int, cands: dict[int, Candidate]) -> int:
    """Which of two objects with the same prediction keeps it (rule 2)."""
    ca, cb = cands[a], cands[b]
    for key in (lambda c: c.fixed, lambda c: c.prompted,
                lambda c: iou(c.mask, c.previous) if c.previous is not None else 0.0):
        ka, kb = key(ca), key(cb)
        if ka != kb:
            return a if ka > kb else b
    return min(a, b)


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Slices of a mask's bounding box (None when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _union(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice] | None:
    """The bounding box of two boxes, or None when they do not intersect."""
    if a[0].start >= b[0].stop or b[0].start >= a[0].stop or a[1].start >= b[1].stop or b[1].start >= a[1].stop:
        return None
    return (slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
            slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)))


def resolve_frame(cands: dict[int, Candidate], transform: InputTransform | None,
                  config: TrackingConfig) -> dict[int, tuple[np.ndarray, str | None]]:
    """Make one frame's masks consistent (rules 1-5): ``{obj: (mask, stop reason or None)}``.

    ``transform`` maps low-res logits to the frame (needed only when masks overlap).
    """
    def tidy(mask: np.ndarray, fixed: bool) -> np.ndarray:
        box = _bbox(mask)
        if box is not None and config.keep_largest and not fixed:
            mask[box] = largest_part(mask[box])
        return mask

    # fragments never compete; a prompted frame keeps the mask its prompt gave
    masks = {o: tidy(c.mask.copy(), c.fixed or c.prompted) for o, c in cands.items()}
    boxes = {o: _bbox(m) for o, m in masks.items()}
    stops: dict[int, str | None] = {o: None for o in cands}
    ids = sorted(cands)
    contested = None
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if stops[a] or stops[b] or boxes[a] is None or boxes[b] is None:
                continue
            sl = _union(boxes[a], boxes[b])
            if sl is None:
                continue
            if iou(masks[a][sl], masks[b][sl]) >= config.same_object_iou:  # rule 2: one object, one track
                loser = b if _keeper(a, b, cands) == a else a
                stops[loser] = "merged"
                masks[loser][:] = False
                boxes[loser] = None
            elif np.logical_and(masks[a][sl], masks[b][sl]).any():
                if contested is None:
                    contested = np.zeros(masks[a].shape, dtype=bool)
                contested[sl] |= masks[a][sl] & masks[b][sl]
    if contested is not None and contested.any():
        _split_pixels(contested, masks, cands, [o for o in ids if boxes[o] is not None], transform)
    for o in ids:
        if stops[o] is None and not tidy(masks[o], cands[o].fixed or cands[o].prompted).any():
            stops[o] = "left"
    return {o: (masks[o], stops[o]) for o in ids}


def _split_pixels(contested: np.ndarray, masks: dict[int, np.ndarray], cands: dict[int, Candidate],
                  live: list[int], transform: InputTransform | None) -> None:
    """Give each contested pixel to one object: prompted (and fixed) objects first (rule 1),
    then the highest logit (rule 3), ties to the lower id; ``masks`` are edited in place."""
    sl = _bbox(contested)
    region = contested[sl]
    best = np.full(region.shape, -np.inf, dtype=np.float32)
    owner = np.zeros(region.shape, dtype=np.int64)
    for o in live:
        c, inside = cands[o], masks[o][sl] & region
        if not inside.any():
            continue
        if c.low_res_logits is not None and transform is not None:
            value = full_logits(transform, c.low_res_logits)[sl]
        else:
            value = np.full(region.shape, 1e3, dtype=np.float32)
        rank = 2 if c.fixed else 1 if c.prompted else 0
        if c.previous is not None:  # temporal ownership: a pixel stays with the object it was on
            value = value + 1e3 * c.previous[sl]
        value = np.where(inside, value + 1e4 * rank, -np.inf)
        better = value > best
        best[better], owner[better] = value[better], o
    for o in live:
        masks[o][sl][region & (owner != o)] = False


@dataclass
class _Pass:
    """Results of one tracking pass (``step`` +1 forward, -1 backward) for one prompt signature."""

    step: int
    signature: frozenset = frozenset()
    frames: dict[int, dict[int, SliceResult]] = field(default_factory=dict)


class TrackingSession(VolumeSession):
    """Track many objects through video frames with a SAM-family 2D model (rules: module docstring).

    Prompting (``add_box``, ``add_points``, ``add_mask``, ``clear_slice``, ``remove_object``,
    ``undo``, ``reset``) is that of :class:`VolumeSession` with frames as slices (axis 0);
    ``iter_propagate``, ``results`` and ``label_map`` track all objects together.

    Args:
        model / window / predictor: as :class:`VolumeSession`.
        video: ``(T, Y, X)`` grey or ``(T, Y, X, 3)`` colour video :class:`MedicalImage`
            (colour frames are shown to the encoder in colour).
        tracking: the per-frame prompting rules (:class:`TrackingConfig`).
    """

    def __init__(self, model, video: MedicalImage, window=None, predictor=None,
                 tracking: TrackingConfig | None = None):
        self._colour = video if video.is_rgb else None
        if video.is_rgb:
            video = video.with_array(video.array.mean(axis=-1).astype(np.float32), is_rgb=False)
        if predictor is None:  # frames are tracked in order: a small cache suffices for any length
            predictor = Predictor(model, cache=EmbeddingCache())
        super().__init__(model, video, axis=0, window=window, predictor=predictor)
        self.tracking = tracking or TrackingConfig()
        self._passes: dict[str, _Pass] = {}
        self._direction = "forward"
        self.begins: set[int] = set()  # objects that appear on their first prompt: never tracked before it

    def plane_display(self, t: int) -> np.ndarray:
        """Frame ``t`` as the encoder sees it; colour videos in colour (``(H, W, 3)`` 0-255)."""
        if self._colour is None:
            return super().plane_display(t)
        return to_display(self._colour.array[t], self._colour.modality)

    # ------------------------------------------------------------ passes
    def _signature(self) -> frozenset:
        return frozenset((o, t, p.version) for o, s in self._objects.items() for t, p in s.seeds.items())

    @staticmethod
    def _pass_specs(direction: str) -> list[tuple[str, int]]:
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        return {"forward": [("forward", 1)], "backward": [("backward", -1)],
                "both": [("forward", 1), ("before", -1)]}[direction]

    def _span(self, name: str, state: ObjectState) -> tuple[int, int]:
        """Frames ``(lo, hi)`` an object has results for in pass ``name`` (none when lo > hi)."""
        first, last = min(state.seeds), max(state.seeds)
        if name == "before" and state.obj_id in self.begins:
            return first, first - 1
        return {"forward": (first, self.num_slices - 1), "backward": (0, last), "before": (0, first - 1)}[name]

    def _frames(self, name: str, step: int) -> list[int]:
        """Frames pass ``name`` visits, in its order."""
        spans = [self._span(name, s) for s in self._objects.values()]
        spans = [(lo, hi) for lo, hi in spans if lo <= hi]
        if not spans:
            return []
        lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
        return list(range(lo, hi + 1)) if step > 0 else list(range(hi, lo - 1, -1))

    def _valid_pass(self, name: str, step: int) -> _Pass:
        """The stored pass, cut back to the frames before the first prompt changed since it ran."""
        sig = self._signature()
        p = self._passes.get(name)
        if p is None:
            p = self._passes[name] = _Pass(step, sig)
        elif p.signature != sig:
            changed = [t for _, t, _ in p.signature ^ sig]
            cut = min(changed) if step > 0 else max(changed)
            if name == "before":  # a pass before first prompts: any change can move them
                cut = self.num_slices if step < 0 else -1
            p.frames = {t: r for t, r in p.frames.items() if (t - cut) * step < 0}
            p.signature = sig
        return p

    def iter_propagate(self, direction: str = "both") -> Iterator[SliceResult]:
        """Track every object; yield each object's result per frame, frame after frame.

        Stopping the iteration keeps the completed frames; a later call resumes, and
        frames already computed for the same prompts are not yielded again.
        """
        specs = self._pass_specs(direction)
        self._direction = direction
        for name, step in specs:
            p = self._valid_pass(name, step)
            for t in self._frames(name, step):
                if t not in p.frames:
                    p.frames[t] = frame = self._track_frame(name, p, t)
                    yield from (frame[o] for o in sorted(frame))

    def planned_slices(self, direction: str = "both") -> int:
        """Upper bound of the results ``iter_propagate(direction)`` would yield (for ETA)."""
        total = 0
        for name, step in self._pass_specs(direction):
            done = set(self._valid_pass(name, step).frames)
            for state in self._objects.values():
                lo, hi = self._span(name, state)
                total += sum(1 for t in range(lo, hi + 1) if t not in done)
        return total

    def _track_frame(self, name: str, p: _Pass, t: int) -> dict[int, SliceResult]:
        """Every object's result on frame ``t`` of pass ``p`` (rules 1-5)."""
        prev_frame, before = p.frames.get(t - p.step, {}), p.frames.get(t - 2 * p.step, {})
        forward = self._passes["forward"].frames.get(t, {}) if name == "before" else {}
        cands: dict[int, Candidate] = {}
        for obj_id, state in self._objects.items():
            lo, hi = self._span(name, state)
            if not lo <= t <= hi:
                continue
            if t in state.seeds:
                r = self._seed_result(obj_id, t)
                cands[obj_id] = Candidate(r.mask, r.low_res_logits, r.score, True)
                continue
            prev = prev_frame.get(obj_id)
            if name == "before" and t == hi:  # start from the first prompt's (resolved) result
                prev = self._passes["forward"].frames.get(t + 1, {}).get(obj_id) or self._seed_result(obj_id, t + 1)
            if prev is not None and prev.stop is None and prev.mask.any():
                cands[obj_id] = self._propagate_one(t, prev, before.get(obj_id))
        for obj_id, r in forward.items():  # objects tracked forward on this frame keep their pixels
            if obj_id not in cands and r.mask.any():
                cands[obj_id] = Candidate(r.mask, None, r.score, False, fixed=True)
        if not cands:
            return {}
        transform = None
        if any(c.low_res_logits is not None for c in cands.values()):
            self._encode(t)
            transform = self.predictor._require_image().transform
        out = {}
        for obj_id, (mask, stop) in resolve_frame(cands, transform, self.tracking).items():
            c = cands[obj_id]
            if not c.fixed:
                source = "prompt" if c.prompted else "propagated"
                out[obj_id] = SliceResult(t, obj_id, mask, c.score, c.low_res_logits, source, stop, self.axis)
                if stop is not None:
                    log.info("object %d stops on frame %d (%s)", obj_id, t, stop)
        return out

    def _propagate_one(self, t: int, prev: SliceResult, before: SliceResult | None) -> Candidate:
        """One object's prediction on frame ``t`` from its result on the previous frame."""
        cfg = self.tracking
        self._encode(t)
        sx, sy = self.predictor._require_image().transform.scale_xy
        h, w = prev.mask.shape
        box = box_around(prev.mask, (cfg.margin / sx, cfg.margin / sy))
        if cfg.motion and before is not None and before.mask.any():
            dx, dy = _centroid(prev.mask) - _centroid(before.mask)
            box = Box(float(np.clip(box.x0 + min(dx, 0), 0, w - 1)), float(np.clip(box.y0 + min(dy, 0), 0, h - 1)),
                      float(np.clip(box.x1 + max(dx, 0), 1, w)), float(np.clip(box.y1 + max(dy, 0), 1, h)))
        pool = []  # (mask, low-res logits, predicted IoU) of every decoder pass
        for kind in cfg.candidates:
            logits = prev.low_res_logits if kind == "mask-prompt" else None
            if kind == "mask-prompt" and logits is None:
                continue
            pred = self.predictor.predict(box=box, mask=MaskPrompt(logits) if logits is not None else None,
                                          multimask=kind == "multimask")
            pool += zip(pred.masks, pred.low_res_logits, pred.scores)
        k = 0
        if len(pool) > 1:
            sl = _bbox(np.logical_or(np.any([m for m, _, _ in pool], axis=0), prev.mask))
            overlaps = [iou(m[sl], prev.mask[sl]) + 1e-3 * float(score) for m, _, score in pool]
            k = int(np.argmax(overlaps))
        mask, logits, score = pool[k]
        return Candidate(mask, logits, float(score), False, prev.mask)

    # ------------------------------------------------------------ results
    def _tracked(self, obj_id: int, t: int) -> SliceResult | None:
        """``obj_id``'s result on frame ``t`` from the passes of the last direction tracked."""
        for name, step in self._pass_specs(self._direction):
            if name in self._passes:
                r = self._valid_pass(name, step).frames.get(t, {}).get(obj_id)
                if r is not None:
                    return r
        return None

    def _owner_result(self, obj_id: int, state: ObjectState, seeds: list[int], t: int) -> SliceResult | None:
        """The tracked result of ``obj_id`` on frame ``t``, else its prompt's own result."""
        tracked = self._tracked(obj_id, t)
        if tracked is not None or t not in state.seeds:
            return tracked
        return super()._owner_result(obj_id, state, seeds, t)

    def results(self, obj_id: int) -> dict[int, SliceResult]:
        """The current result of one object per frame (frames with a result only)."""
        state = self._objects[self._known(obj_id)]
        seeds = sorted(state.seeds)
        out = {t: self._owner_result(obj_id, state, seeds, t) for t in range(self.num_slices)}
        return {t: r for t, r in out.items() if r is not None}

    def label_map(self) -> MedicalImage:
        """``(T, Y, X)`` labels, one object id per pixel (overlaps resolved by the tracking rules)."""
        n = max(self._objects, default=0)
        labels = np.zeros(self.image.spatial_shape, dtype=np.uint8 if n < 256 else np.uint16)
        for obj_id in self.object_ids:
            for t, r in self.results(obj_id).items():
                labels[t][r.mask & (labels[t] == 0)] = obj_id
        return self.image.as_labels(labels)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])
