"""Multi-object video tracking with a 2D SAM-family model (LiteMedSAM, SAM, MedSAM).

:class:`TrackingSession` tracks every prompted object frame by frame, all objects together:
each frame is encoded once and every object active on it is decoded from that one
embedding, prompted from its own result on the previous frame (:class:`TrackingConfig`:
by default the previous mask's box grown by 3 px at the model's scale, whose mask is the
whole object, and a box of the size the user drew (scaled by the whole object's growth),
centred halfway between the previous mask and that whole-object mask and extended towards
its last motion; each mask is cut to its box, the box's mask is the decoder candidate that
fills the box best, and the candidate mask that overlaps the previous mask most wins). Then
the objects' masks on the frame are made consistent: prompts win, one object per track, one
label per pixel, divisions, leaving, and objects lost (vanished, or gone out of the frame: the
mask's contrast with its surroundings or its area collapsed against the track's recent look)
(:func:`~medisam.predict.tracking_rules.resolve_frame`, rules 1-6 in :mod:`medisam.predict.tracking_rules`).
Where a track ends is said in ``notices`` (the CLI's summary, the server, the web UI).

Frames after an object's first prompt are tracked forward from its latest prompt before
them; with ``direction="both"`` frames before the first prompt are tracked backward from
it (objects tracked backward never take pixels of objects tracked forward on that frame),
except for objects in ``TrackingSession.begins``, which appear on their first prompt.
Results are kept per pass and reused: after a new prompt on frame ``f`` only frames from
``f`` on (in the pass's direction) are recomputed.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from medisam.errors import InputError
from medisam.io.intensity import to_display
from medisam.io.medical_image import MedicalImage
from medisam.models.upscale_window import exact_logits
from medisam.predict.cache import EmbeddingCache
from medisam.predict.predictor import Predictor
from medisam.predict.propagation import box_around, box_in_plane, clip_to, grown_box
from medisam.predict.session import DIRECTIONS, ObjectState, SliceResult, VolumeSession
from medisam.predict.tracking_motion import displacement, shift_mask
from medisam.predict.tracking_rules import (CENTRES, CHAIN_MARGIN, Candidate, Look, TrackingConfig, box_fill, iou,
                                            is_lost, largest_part, look_of, mask_bbox, resolve_frame)
from medisam.prompts import Box, MaskPrompt

log = logging.getLogger(__name__)

__all__ = ["Candidate", "TrackingConfig", "TrackingSession", "largest_part", "resolve_frame"]


@dataclass
class _Pass:
    """Results of one tracking pass (``step`` +1 forward, -1 backward) for one prompt signature."""

    step: int
    signature: frozenset = frozenset()
    frames: dict[int, dict[int, SliceResult]] = field(default_factory=dict)


class TrackingSession(VolumeSession):
    """Track many objects through video frames with a SAM-family 2D model (rules: :mod:`~.tracking_rules`).

    Prompting (``add_box``, ``add_points``, ``add_mask``, ``clear_slice``, ``remove_object``,
    ``undo``, ``reset``) is that of :class:`VolumeSession` with frames as slices (axis 0);
    ``iter_propagate``, ``results`` and ``label_map`` track all objects together.

    Args:
        model / window / predictor: as :class:`VolumeSession`.
        video: ``(T, Y, X)`` grey or ``(T, Y, X, 3)`` colour video :class:`MedicalImage`
            (colour frames are shown to the encoder in colour).
        tracking: the per-frame prompting rules (:class:`TrackingConfig`).
    """

    progress_unit = "object-frame"

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
        self._seen: dict[int, np.ndarray] = {}  # frames as the encoder sees them (_frame), for motion and rule 6
        self.begins: set[int] = set()  # objects that appear on their first prompt: never tracked before it
        #: (object, frame, pass direction) -> (box of the chain's whole-object mask, that mask's
        #: area on the first frame tracked from the object's prompt, the object's growth since):
        #: the whole object, which the cut masks no longer show; kept per frame like the
        #: results, so a re-run from a new prompt's frame gives what a fresh run gives
        self._wholes: dict[tuple[int, int, int], tuple[Box, float, float]] = {}
        #: (object, frame, pass direction) -> the track's recent look (area, contrast) after that
        #: frame, for the lost rule (rule 6); kept per frame like ``_wholes``
        self._looks: dict[tuple[int, int, int], Look | None] = {}
        #: (object, frame, prompt version) -> the prompt frame's result fitted to the drawn box
        self._fitted: dict[tuple[int, int, int], SliceResult] = {}

    def _encode_stride(self) -> int:
        """Every frame is encoded: objects move between frames, so embeddings are not interpolated."""
        return 1

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
        lo, hi = self._range(state)  # a 3D box (or --slices) keeps the object inside its frames
        return {"forward": (first, hi), "backward": (lo, last), "before": (lo, first - 1)}[name]

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
        self._wholes = {k: v for k, v in self._wholes.items() if k[0] in self._objects}  # removed objects
        self._looks = {k: v for k, v in self._looks.items() if k[0] in self._objects}
        for name, step in specs:
            p = self._valid_pass(name, step)
            for t in self._frames(name, step):
                if t not in p.frames:
                    # with mask prompts a frame's logits go on as the next frame's: the whole grid's
                    with exact_logits() if "mask-prompt" in self.tracking.candidates else nullcontext():
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

    def plan_lines(self, direction: str = "both") -> list[str]:
        """The cost of the coming tracking: frames, encodings, decoder passes."""
        frames = {t for name, step in self._pass_specs(direction)
                  for t in self._frames(name, step) if t not in self._valid_pass(name, step).frames}
        if not frames:
            return []
        object_frames = self.planned_slices(direction)
        per = self.tracking.decoder_passes
        return [f"tracking {len(self._objects)} object(s) over {len(frames)} frame(s) ({min(frames)}-{max(frames)}): "
                f"up to {len(frames - self.encoded_slices)} encodings and {object_frames * per} decoder passes "
                f"({object_frames} object-frames x {per})"]

    def _track_frame(self, name: str, p: _Pass, t: int) -> dict[int, SliceResult]:
        """Every object's result on frame ``t`` of pass ``p`` (rules 1-6)."""
        prev_frame, before = p.frames.get(t - p.step, {}), p.frames.get(t - 2 * p.step, {})
        forward = self._passes["forward"].frames.get(t, {}) if name == "before" else {}
        cands: dict[int, Candidate] = {}
        prevs: dict[int, SliceResult] = {}
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
                c = self._propagate_one(t, prev, before.get(obj_id), self._extent(obj_id, t, p.step))
                c.lost = is_lost(look_of(self._frame(t), c.mask), self._recent_look(prev, p.step), self.tracking)
                cands[obj_id], prevs[obj_id] = c, prev
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
        keep_logits = "mask-prompt" in self.tracking.candidates  # the next frame's mask prompt
        for obj_id, (mask, stop) in resolve_frame(cands, transform, self.tracking).items():
            c = cands[obj_id]
            if not c.fixed:
                source = "prompt" if c.prompted else "propagated"
                # a tracked frame's logits are kept only where the next frame is prompted with them, and then
                # as their own array: a view held its decoder batch (3 x 256 KiB), 0.73 MB per object-frame
                # that grew with the video (600 frames x 3 objects: 3 GB)
                logits = np.array(c.low_res_logits) if keep_logits and c.low_res_logits is not None else None
                out[obj_id] = SliceResult(t, obj_id, mask, c.score, logits, source, stop, self.axis)
                if obj_id in prevs:
                    self._note_look(obj_id, t, p.step, prevs[obj_id], mask)
                if stop is not None:
                    self._say_stop(obj_id, t, stop, prevs.get(obj_id))
        return out

    def _lost_rule(self) -> bool:
        """Whether rule 6 (lost objects) is on: either of its tests is set."""
        return self.tracking.lost_area is not None or self.tracking.lost_contrast is not None

    def _recent_look(self, prev: SliceResult, step: int) -> Look | None:
        """The track's recent look up to ``prev`` (its result on the previous frame of the pass):
        kept from tracking that frame, else (a prompt frame) ``prev``'s own. None without rule 6."""
        if not self._lost_rule():
            return None
        key = (prev.obj_id, prev.slice, step)
        if prev.source != "prompt" and key in self._looks:
            return self._looks[key]
        return look_of(self._frame(prev.slice), prev.mask)

    def _note_look(self, obj_id: int, t: int, step: int, prev: SliceResult, mask: np.ndarray) -> None:
        """Keep the track's recent look after frame ``t`` (its resolved ``mask`` there) for rule 6."""
        if not self._lost_rule():
            return
        recent, look = self._recent_look(prev, step), look_of(self._frame(t), mask) if mask.any() else None
        self._looks[(obj_id, t, step)] = look if recent is None else recent if look is None else recent.recent(look)

    def _say_stop(self, obj_id: int, t: int, stop: str, prev: SliceResult | None) -> None:
        """Log a track's end and keep it as a notice (CLI summary, server, web UI), with where it was last seen."""
        where = ""
        if prev is not None and prev.mask.any():
            ys, xs = np.nonzero(prev.mask)
            where = f", last seen around x={xs.mean():.0f}, y={ys.mean():.0f} on frame {prev.slice}"
        notice = f"object {obj_id} {STOP_WORDS.get(stop, stop)} at frame {t}{where}"
        log.info(notice)
        self.notices.append(notice)

    def _extent(self, obj_id: int, t: int, step: int) -> tuple[float, float] | None:
        """``(width, height)`` of the object's mask on the prompt frame it is tracked from."""
        if self.tracking.extent == "previous":
            return None
        seeds = [s for s in self._objects[obj_id].seeds if (t - s) * step > 0]
        if not seeds:
            return None
        seed = min(seeds, key=lambda s: abs(t - s))
        drawn = self._objects[obj_id].seeds[seed].box
        if self.tracking.extent == "prompt" and drawn is not None:
            return drawn.x1 - drawn.x0, drawn.y1 - drawn.y0
        box = mask_bbox(self._seed_result(obj_id, seed).mask)
        return None if box is None else (box[1].stop - box[1].start, box[0].stop - box[0].start)

    def _propagate_one(self, t: int, prev: SliceResult, before: SliceResult | None,
                       extent: tuple[float, float] | None = None) -> Candidate:
        """One object's prediction on frame ``t`` from its result on the previous frame
        (``extent``: the box's size before the margin, else the previous mask's box)."""
        cfg = self.tracking
        self._encode(t)
        moved, d = self._moved(prev, t)
        box = box_around(moved, self._grid_px(cfg.margin))
        sign = 1 if t > prev.slice else -1
        whole = None if prev.source == "prompt" else self._wholes.get((prev.obj_id, prev.slice, sign))
        chain_box = box_around(moved, self._grid_px(CHAIN_MARGIN))
        if cfg.clip is not None and whole is not None:  # the chain follows the whole object, not the cut mask
            chain_box = grown_box(whole[0], self._grid_px(CHAIN_MARGIN), moved.shape, d)
        pool = []  # (mask, low-res logits, predicted IoU) of every decoder pass
        chained = noted = None
        if extent is not None and CENTRES[cfg.centre] > 0:  # the whole object as SAM sees it in the chain's box
            chained = self.predictor.predict(box=chain_box)
            if "chain" in cfg.candidates:
                pool += zip(self._clipped(chained.masks, chain_box), chained.low_res_logits, chained.scores)
            noted = self._note_whole((prev.obj_id, t, sign), chained.masks[0], chain_box, whole)
        if extent is not None:
            box = self._sized_box(box, extent, noted, moved.shape)
        if cfg.motion and before is not None and before.mask.any():
            box = _extended_by_motion(box, prev.mask, before.mask)
        for kind in cfg.candidates:
            if kind == "chain" and chained is not None or kind == "mask-prompt" and prev.low_res_logits is None:
                continue  # the chain's mask is already in the pool; no previous logits
            if kind == "box":  # a box of the prompt's size: the candidate that fills it
                pool.append(self._fitted_to(t, box))
                continue
            prompt_box = chain_box if kind == "chain" else box
            mask = MaskPrompt(prev.low_res_logits) if kind == "mask-prompt" else None
            pred = self.predictor.predict(box=prompt_box, mask=mask, multimask=kind == "multimask")
            pool += zip(self._clipped(pred.masks, prompt_box), pred.low_res_logits, pred.scores)
        mask, logits, score = _closest(pool, moved)
        return Candidate(mask, logits, float(score), False, moved)

    def _moved(self, prev: SliceResult, t: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The previous mask moved to where the object went on frame ``t`` (``flow``), and the move."""
        if not self.tracking.flow:
            return prev.mask, (0, 0)
        d = displacement(self._frame(prev.slice), self._frame(t), prev.mask)
        moved = shift_mask(prev.mask, d)
        return (moved if moved.any() else prev.mask), d

    def _grid_px(self, pixels: float) -> tuple[float, float]:
        """``pixels`` of the model's input grid as ``(x, y)`` pixels of the frame."""
        sx, sy = self.predictor._require_image().transform.scale_xy
        return pixels / sx, pixels / sy

    def _sized_box(self, box: Box, extent: tuple[float, float], whole: tuple[Box, float, float] | None,
                   plane_hw: tuple[int, int]) -> Box:
        """A box of the prompt's ``extent`` (plus the margin) centred on ``box``, pulled towards
        the whole object's centre (``centre``) and scaled by its growth (``size``)."""
        cfg = self.tracking
        cx, cy = _centre(box)
        if whole is not None:
            pull, (wx, wy), scale = CENTRES[cfg.centre], _centre(whole[0]), whole[2]
            cx, cy = cx + pull * (wx - cx), cy + pull * (wy - cy)
            if cfg.size == "follow":
                extent = extent[0] * scale, extent[1] * scale
        mx, my = self._grid_px(cfg.margin)
        hw, hh = extent[0] / 2 + mx, extent[1] / 2 + my
        return box_in_plane(cx - hw, cy - hh, cx + hw, cy + hh, plane_hw)

    def _note_whole(self, key: tuple[int, int, int], mask: np.ndarray, chain_box: Box,
                    before: tuple[Box, float, float] | None) -> tuple[Box, float, float] | None:
        """Keep the object's whole-object state on this frame (``key``: object, frame,
        direction) from the chain's mask: its box, the area on the first frame tracked from the
        prompt, and the growth since (unchanged while the mask fills its box). None, and
        nothing kept, for an empty mask."""
        self._wholes.pop(key, None)  # a result of an earlier run of this frame
        if not mask.any():
            return None
        whole_box, area = box_around(mask, (0.0, 0.0)), float(mask.sum())
        ref, scale = (area, 1.0) if before is None else before[1:]
        if not _fills(whole_box, chain_box, mask.shape):  # else the box, not the object, set its size
            scale = float(np.sqrt(area / ref))
        self._wholes[key] = (whole_box, ref, scale)
        return self._wholes[key]

    def _seed_result(self, obj_id: int, t: int) -> SliceResult:
        """The prompt frame's result; a box prompt's mask cut to the box (``TrackingConfig.clip``),
        so the mask a prompt returns is the one the label map shows."""
        result = super()._seed_result(obj_id, t)
        seed = self._objects[obj_id].seeds[t]
        if seed.box is None or seed.points is not None or seed.mask is not None or seed.mask_logits is not None:
            return result  # corrected with clicks or a mask: the user's word, uncut
        key = (obj_id, t, seed.version)
        if key not in self._fitted:  # kept for the current prompts only: memory stays flat in long sessions
            self._fitted = {k: r for k, r in self._fitted.items() if self._is_current_prompt(*k)}
            if self.tracking.fit:
                mask, logits, score = self._fitted_to(t, seed.box)
                mask = clip_to(mask, self._objects[obj_id].clip_box)  # as the seed's own result is
            else:
                mask, logits, score = self._clipped(result.mask[None], seed.box)[0], result.low_res_logits, result.score
            self._fitted[key] = result.replace(mask=mask, low_res_logits=logits, score=score)
        return self._fitted[key]

    def _is_current_prompt(self, obj_id: int, t: int, version: int) -> bool:
        state = self._objects.get(obj_id)
        return state is not None and t in state.seeds and state.seeds[t].version == version

    def _fitted_to(self, t: int, box: Box) -> tuple[np.ndarray, np.ndarray, float]:
        """``(mask, low-res logits, score)`` of box ``box`` on frame ``t``, cut to the box
        (``TrackingConfig.clip``): the decoder's single output, or with ``TrackingConfig.fit``
        the one of its four outputs (one decoder pass) that fills the box best."""
        pred = self._predict(t, box, None, None, multimask="all" if self.tracking.fit else False)
        masks = self._clipped(pred.masks, box)
        k = int(np.argmax([box_fill(m, box) for m in masks]))  # ties: SAM's single output
        return masks[k], pred.low_res_logits[k], float(pred.scores[k])

    def _clipped(self, masks: np.ndarray, box: Box) -> np.ndarray:
        """``masks`` cut to ``box`` (grown by ``TrackingConfig.clip`` px of the model grid; None: uncut)."""
        if self.tracking.clip is None:
            return masks
        return clip_to(masks, grown_box(box, self._grid_px(self.tracking.clip), masks.shape[-2:]))

    def _frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as the encoder sees it, in colour for a colour video (grey otherwise), for the motion
        estimate (:func:`displacement` matches all channels) and rule 6's looks (:func:`look_of`): an object
        that differs from its surroundings only in hue is texture and contrast there, noise on the grey frame."""
        if t not in self._seen:  # once per frame, not per object
            self._seen = {k: v for k, v in self._seen.items() if abs(k - t) <= 1}  # the frames around t
            colour = self._colour is not None
            self._seen[t] = self.plane_display(t) if colour else self.geometry.take(self._display, t)
        return self._seen[t]

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
                r.paint(labels[t], obj_id, where=labels[t] == 0)
        return self.image.as_labels(labels, copy=False)


#: How a notice names a track's end (``SliceResult.stop``).
STOP_WORDS = {"lost": "lost (no longer seen)", "left": "left the view", "merged": "merged into another object",
              "divided": "divided"}


def _fills(inner: Box, outer: Box, plane_hw: tuple[int, int]) -> bool:
    """True when ``inner`` reaches a side of ``outer`` (within a pixel) that is not the image's
    edge: a mask cut by its prompt box, whose size says nothing about the object's."""
    h, w = plane_hw
    return any(abs(a - b) <= 1 and 0 < b < lim for a, b, lim in
               ((inner.x0, outer.x0, w), (inner.y0, outer.y0, h), (inner.x1, outer.x1, w), (inner.y1, outer.y1, h)))


def _closest(pool: list[tuple[np.ndarray, np.ndarray, float]], moved: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """The candidate overlapping the moved previous mask most (IoU; ties: SAM's predicted IoU)."""
    if len(pool) == 1:
        return pool[0]
    sl = mask_bbox(np.logical_or(np.any([m for m, _, _ in pool], axis=0), moved))
    return pool[int(np.argmax([iou(m[sl], moved[sl]) + 1e-3 * float(score) for m, _, score in pool]))]


def _extended_by_motion(box: Box, prev: np.ndarray, before: np.ndarray) -> Box:
    """``box`` extended by the object's last displacement (the centroid's move from the mask
    ``before`` to ``prev``) on the side it moves to."""
    h, w = prev.shape
    dx, dy = _centroid(prev) - _centroid(before)
    return Box(float(np.clip(box.x0 + min(dx, 0), 0, w - 1)), float(np.clip(box.y0 + min(dy, 0), 0, h - 1)),
               float(np.clip(box.x1 + max(dx, 0), 1, w)), float(np.clip(box.y1 + max(dy, 0), 1, h)))


def _centre(box: Box) -> tuple[float, float]:
    return (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])
