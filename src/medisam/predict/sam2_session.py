"""Memory-based propagation through volumes and videos with SAM 2 / MedSAM2.

:class:`Sam2Session` drives the official ``sam2`` video predictor (the model's ``net`` is a
``SAM2VideoPredictor``) on frames held in memory: the inference state is built here from
:class:`~medisam.predict.sam2_frames.NormalisedFrames` instead of sam2's JPEG-folder
``init_state``. Its API is the one of :class:`medisam.predict.session.VolumeSession`:
prompts on a slice/frame for an object id, ``iter_propagate`` yielding per frame, and
``propagate`` returning a label map whose values are the object ids.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from medisam.errors import InputError, ModelError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.models.promptable import PromptableModel
from medisam.predict.sam2_frames import NormalisedFrames, as_frames, display_frames
from medisam.predict.session import DIRECTIONS, SliceResult, check_object_id
from medisam.predict.volume import as_box3d
from medisam.prompts import Box, Box3D, Points

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Op:
    """One user action, kept so ``undo`` can replay the others."""

    kind: str  # "box", "box3d", "points", "mask", "clear", "remove", "reset"
    obj_id: int = 0
    frame: int = -1
    args: dict[str, Any] = field(default_factory=dict)


class Sam2Session:
    """Promptable tracking of objects through a volume ``(Z, Y, X)``, a video or a 2D image.

    The API is :class:`~medisam.predict.session.VolumeSession`'s: ``add_box`` /
    ``add_points`` / ``add_mask`` return the prompted frame's :class:`SliceResult`,
    ``iter_propagate`` yields one :class:`SliceResult` per object and frame, ``propagate``
    returns the label map, and ``remove_object`` / ``reset`` / ``undo`` edit the prompts.

    Args:
        model: a loaded model of family ``"sam2"`` (``load_model("medsam2", ...)``).
        image: :class:`MedicalImage` (2D, volume or video) or an array ``(Z, Y, X)`` /
            ``(T, Y, X, 3)`` / 2D image. Slices/frames are array axis 0.
        window: CT window preset or ``(width, level)``; default per modality, one mapping
            for a whole grey volume, per frame for videos (see :mod:`~medisam.predict.sam2_frames`).

    Prompts are in pixel coordinates of one slice/frame (x = column, y = row). Frames with
    a prompt are SAM 2 "conditioning" frames; the others are predicted from the memory of
    the frames already tracked. ``SliceResult.score`` is SAM 2's object-presence
    probability (sigmoid of its object score), ``low_res_logits`` its ``(S/4, S/4)`` logits.
    """

    def __init__(self, model: PromptableModel, image: MedicalImage | np.ndarray,
                 window: str | tuple[float, float] | None = None):
        if model.spec.family != "sam2":
            raise ModelError(f"Sam2Session needs a SAM 2 model, got {model.name!r} (family "
                             f"{model.spec.family}); use VolumeSession")
        self.model = model
        self.image, frames = as_frames(image)
        self.num_frames = frames.shape[0]
        self.height, self.width = frames.shape[1:3]
        self.frames = NormalisedFrames(display_frames(self.image, frames, window), int(model.net.image_size))
        self._results: dict[int, dict[int, SliceResult]] = {}
        self._limits: dict[int, tuple[int, int, Box]] = {}  # obj -> 3D-box slice range and x/y extent
        self._history: list[_Op] = []
        self._state = self._new_state()

    # ------------------------------------------------------------------ state
    @property
    def predictor(self):
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
    def object_ids(self) -> list[int]:
        """Object ids with prompts, sorted."""
        return sorted(int(i) for i in self._state["obj_ids"])

    def _new_state(self) -> dict[str, Any]:
        """sam2's inference state (the fields of ``SAM2VideoPredictor.init_state``), frames in memory."""
        device = self.model.device
        return {
            "images": self.frames, "num_frames": self.num_frames,
            "offload_video_to_cpu": True, "offload_state_to_cpu": False,
            "video_height": self.height, "video_width": self.width,
            "device": device, "storage_device": device,
            "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {},
            "constants": {}, "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(),
            "obj_ids": [], "output_dict_per_obj": {}, "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }

    def _autocast(self):
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

        As in SAM 2, a box replaces the object's earlier clicks on that slice.
        """
        frame = self._check_frame(slice)
        b = Box.of(box).check_inside(self.height, self.width)
        p = Points.of(points).check_inside(self.height, self.width) if points is not None else None
        return self._apply(_Op("box", check_object_id(obj_id), frame,
                               {"box": b.as_array(), "points": None if p is None else (p.coords, p.labels)}))

    def add_points(self, slice: int, points: Points | Sequence[Sequence[float]],
                   obj_id: int = 1) -> SliceResult:
        """Add clicks ``(x, y[, label])`` (1 positive, 0 negative) for ``obj_id`` on ``slice``.

        Clicks accumulate with the object's earlier box/clicks on that slice; on a tracked
        frame they correct the tracked mask (SAM 2 feeds its logits back).
        """
        frame = self._check_frame(slice)
        p = Points.of(points).check_inside(self.height, self.width)
        return self._apply(_Op("points", check_object_id(obj_id), frame, {"points": (p.coords, p.labels)}))

    def add_mask(self, slice: int, mask2d: np.ndarray, obj_id: int = 1) -> SliceResult:
        """Use a binary ``(H, W)`` mask of ``obj_id`` on ``slice`` as the prompt."""
        frame = self._check_frame(slice)
        m = np.asarray(mask2d)
        if m.shape != (self.height, self.width):
            raise PromptError(f"mask of shape {m.shape} does not match the slice plane {(self.height, self.width)}")
        if not m.astype(bool).any():
            raise PromptError(f"mask for slice {frame} is empty")
        return self._apply(_Op("mask", check_object_id(obj_id), frame, {"mask": m.astype(bool)}))

    def add_box3d(self, box3d: Box3D | Sequence[float], obj_id: int = 1) -> SliceResult:
        """CVPR24 / MedSAM2 3D-box protocol: the box's x/y extent prompts the middle slice of its
        slice range, and the object's results stay inside that range and x/y extent.

        ``box3d`` is a :class:`Box3D` or ``(x0, y0, z0, x1, y1, z1)`` voxel indices of the
        ``(Z, Y, X)`` array, inclusive.
        """
        b3 = as_box3d(box3d).check_inside((self.num_frames, self.height, self.width))
        box = b3.box2d().as_array()
        return self._apply(_Op("box3d", check_object_id(obj_id), b3.z0 + (b3.z1 - b3.z0) // 2,
                               {"box": box, "points": None, "range": (b3.z0, b3.z1)}))

    def clear_slice(self, slice: int, obj_id: int = 1) -> None:
        """Remove one object's prompts on one slice (the object goes when none are left)."""
        frame = self._check_frame(slice)
        obj_id = self._known(obj_id)
        prompted = self._prompted_frames(obj_id)
        if frame not in prompted:
            raise PromptError(f"object {obj_id} has no prompt on slice {frame}")
        self._apply(_Op("remove", obj_id) if prompted == {frame} else _Op("clear", obj_id, frame))

    def _prompted_frames(self, obj_id: int) -> set[int]:
        idx = self._state["obj_id_to_idx"][obj_id]
        return set(self._state["point_inputs_per_obj"][idx]) | set(self._state["mask_inputs_per_obj"][idx])

    def _known(self, obj_id: int) -> int:
        obj_id = check_object_id(obj_id)
        if obj_id not in self.object_ids:
            raise PromptError(f"no object {obj_id}; objects: {self.object_ids or 'none'}")
        return obj_id

    def remove_object(self, obj_id: int) -> None:
        """Forget one object's prompts and results."""
        self._apply(_Op("remove", self._known(obj_id)))

    def reset(self) -> None:
        """Forget every prompt and result (undoable)."""
        self._apply(_Op("reset"))

    def undo(self) -> None:
        """Revert the last add_*/clear_slice/remove_object/reset.

        SAM 2's state cannot be rolled back, so the remaining actions are replayed on a
        fresh state; propagated results are dropped (run ``propagate`` again).
        """
        if not self._history:
            raise InputError("nothing to undo")
        ops = self._history[:-1]
        self._history = []
        self._clear()
        for op in ops:
            self._apply(op)

    def _clear(self) -> None:
        self._state = self._new_state()
        self._results = {}
        self._limits = {}

    def _apply(self, op: _Op) -> SliceResult | None:
        predictor, state = self.predictor, self._state
        if op.kind == "reset":
            self._clear()
            self._history.append(op)
            return None
        if op.kind == "remove":
            with self._autocast():
                predictor.remove_object(state, op.obj_id, strict=True, need_output=False)
            self._results.pop(op.obj_id, None)
            self._limits.pop(op.obj_id, None)
            self._history.append(op)
            return None
        if op.kind == "clear":
            with self._autocast():
                predictor.clear_all_prompts_in_frame(state, op.frame, op.obj_id, need_output=False)
            self._results.get(op.obj_id, {}).pop(op.frame, None)
            self._history.append(op)
            return None
        if op.kind == "box3d":
            self._limits[op.obj_id] = (*op.args["range"], Box(*op.args["box"].tolist()))
        with self._autocast():
            if op.kind == "mask":
                _, obj_ids, logits = predictor.add_new_mask(state, op.frame, op.obj_id,
                                                            torch.from_numpy(op.args["mask"]))
            else:
                coords = labels = None
                if op.args.get("points") is not None:
                    coords = torch.from_numpy(np.asarray(op.args["points"][0], dtype=np.float32))
                    labels = torch.from_numpy(np.asarray(op.args["points"][1], dtype=np.int32))
                with_box = op.kind in ("box", "box3d")
                box = torch.from_numpy(op.args["box"]) if with_box else None
                _, obj_ids, logits = predictor.add_new_points_or_box(
                    state, op.frame, op.obj_id, points=coords, labels=labels,
                    clear_old_points=with_box, box=box)
        self._history.append(op)
        self._store(op.frame, obj_ids, logits, "prompt", only=op.obj_id)
        return self._results[op.obj_id][op.frame]

    def _frame_output(self, obj_id: int, frame: int) -> dict[str, Any] | None:
        """sam2's latest per-object output on a frame (prompt outputs first)."""
        idx = self._state["obj_id_to_idx"][obj_id]
        for store in (self._state["temp_output_dict_per_obj"][idx], self._state["output_dict_per_obj"][idx]):
            for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
                if frame in store[key]:
                    return store[key][frame]
        return None

    def _store(self, frame: int, obj_ids: Sequence[int], logits: torch.Tensor, source: str,
               only: int | None = None) -> list[SliceResult]:
        """Keep the ``(N, 1, H, W)`` video-resolution logits of N objects as per-object results."""
        masks = (logits[:, 0] > 0).cpu().numpy()
        out = []
        for i, obj_id in enumerate(int(o) for o in obj_ids):
            if only is not None and obj_id != only:
                continue
            raw = self._frame_output(obj_id, frame)
            score, low_res = float("nan"), None
            if raw is not None:
                score = float(torch.sigmoid(raw["object_score_logits"].float()).flatten()[0])
                low_res = raw["pred_masks"][0, 0].float().cpu().numpy()
            idx = self._state["obj_id_to_idx"][obj_id]
            is_seed = frame in self._state["output_dict_per_obj"][idx]["cond_frame_outputs"]
            mask, stop = self._limit(obj_id, frame, masks[i])
            result = SliceResult(frame, obj_id, mask, score, low_res,
                                 "prompt" if source == "prompt" or is_seed else "propagated", stop)
            self._results.setdefault(obj_id, {})[frame] = result
            out.append(result)
        return out

    def _limit(self, obj_id: int, frame: int, mask: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Apply an object's 3D-box limits: empty outside its slice range, clipped to its x/y extent."""
        if obj_id not in self._limits:
            return mask, None
        lo, hi, box = self._limits[obj_id]
        if not lo <= frame <= hi:
            return np.zeros_like(mask), "outside box"
        clipped = np.zeros_like(mask)
        y0, y1 = int(np.floor(box.y0)), int(np.ceil(box.y1))
        x0, x1 = int(np.floor(box.x0)), int(np.ceil(box.x1))
        clipped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
        return clipped, None

    def _passes(self, direction: str) -> list[tuple[int, bool, int]]:
        """``(start frame, reverse, frames to track)`` of sam2 runs for a direction.

        Runs start at the first prompted frame ("both", "forward") or the last one
        ("backward") and stop at the farthest slice any object may reach (3D-box ranges).
        """
        if direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if not self.object_ids:
            raise PromptError("no prompts: add a box, points or a mask first")
        state = self._state
        cond = {t for key in ("output_dict_per_obj", "temp_output_dict_per_obj")
                for out in state[key].values() for t in out["cond_frame_outputs"]}
        high = max(self._limits[o][1] if o in self._limits else self.num_frames - 1 for o in self.object_ids)
        low = min(self._limits[o][0] if o in self._limits else 0 for o in self.object_ids)
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

    def propagate(self, direction: str = "both", progress: bool = True) -> MedicalImage:
        """Run :meth:`iter_propagate` to the end and return the label map (input geometry)."""
        results = self.iter_propagate(direction)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=self.planned_slices(direction), unit="frame", desc="propagate (SAM 2)")
        for _ in results:
            pass
        return self.label_map()

    def results(self, obj_id: int) -> dict[int, SliceResult]:
        """The current result of one object per frame (only frames with a result)."""
        obj_id = check_object_id(obj_id)
        if obj_id not in self.object_ids:
            raise PromptError(f"no object {obj_id}; objects: {self.object_ids or 'none'}")
        return dict(sorted(self._results.get(obj_id, {}).items()))

    def label_map(self) -> MedicalImage:
        """Labels (object id per pixel, later ids win overlaps) on the input grid.

        ``(Z, Y, X)`` / ``(T, Y, X)`` for volumes and videos, ``(Y, X)`` for a 2D image.
        """
        n = max(self.object_ids, default=0)
        labels = np.zeros((self.num_frames, self.height, self.width), dtype=np.uint8 if n < 256 else np.uint16)
        for obj_id in self.object_ids:
            for t, r in self._results.get(obj_id, {}).items():
                labels[t][r.mask] = obj_id
        return self.image.as_labels(labels if self.image.is_volume else labels[0])
