"""Object tracking in videos: :class:`VideoSession` and :func:`track_video` (used by the CLI).

A video is a :class:`MedicalImage` with frames along array axis 0 (``(T, Y, X)`` grey or
``(T, Y, X, 3)`` RGB, see :mod:`medisam.io.video`). SAM 2 / MedSAM2 models track with their
memory (:class:`~medisam.predict.sam2_session.Sam2Session`); LiteMedSAM / SAM / MedSAM models
track all objects together frame by frame from each one's previous mask, with one label per
pixel and explicit rules for objects that meet, divide or leave
(:class:`~medisam.predict.tracking.TrackingSession`). Both expose the same API.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage
from medisam.io.video_output import VideoOutputs, video_inputs
from medisam.models.loaded import LoadedModel
from medisam.predict.predictor import Predictor
from medisam.predict.sam2_session import Sam2Session
from medisam.predict.session import SliceResult
from medisam.predict.tracking import TrackingConfig, TrackingSession
from medisam.prompts import Box, Points

log = logging.getLogger(__name__)


def video_of(video: MedicalImage | np.ndarray) -> MedicalImage:
    """A video MedicalImage from a MedicalImage with frames on axis 0 or an array.

    Arrays: ``(T, Y, X)`` grey or ``(T, Y, X, 3)`` RGB. 2D images are refused.
    """
    if not isinstance(video, MedicalImage):
        array = np.asarray(video)
        if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] != 3):
            raise InputError(f"a video must be (T, Y, X) or (T, Y, X, 3), got shape {array.shape}")
        video = MedicalImage(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(float(v) for v in np.eye(3).ravel()),
                             is_rgb=array.ndim == 4, is_video=True)
    if not video.is_volume:
        raise InputError(f"a video needs frames, got a 2D image of shape {video.array.shape}; "
                         "use `medisam segment` for single images")
    if video.array.size == 0:
        raise InputError(f"video is empty (shape {video.array.shape})")
    return video


class VideoSession:
    """Track objects through video frames from prompts on a few frames.

    Args:
        model: any loaded model: those with ``spec.supports_memory_propagation`` (SAM 2)
            track with their memory (:class:`Sam2Session`), the 2D-promptable ones by
            multi-object frame-to-frame tracking (:class:`TrackingSession`, rules in
            :mod:`medisam.predict.tracking`).
        video: video :class:`MedicalImage` (``read_image("clip.mp4")``) or an array.
        window: intensity window (grey medical videos); default per modality.
        tracking: tracking rules for non-SAM 2 models (:class:`TrackingConfig`).
        predictor: for non-SAM 2 models, a :class:`Predictor` to share (and its embedding cache).

    Methods mirror :class:`VolumeSession` with frames as slices: ``add_box(frame, box,
    obj_id)``, ``add_points``, ``add_mask``, ``clear_frame``, ``remove_object``, ``reset``,
    ``undo``, ``iter_propagate(direction)`` (yields :class:`SliceResult`), ``propagate()`` ->
    label video, ``results(obj_id)``, ``label_map()``.
    """

    def __init__(self, model: LoadedModel, video: MedicalImage | np.ndarray,
                 window: str | tuple[float, float] | None = None, tracking: TrackingConfig | None = None,
                 predictor: Predictor | None = None):
        self.video = video_of(video)
        self.model = model
        from medisam.predict.factory import open_session

        self.session: Sam2Session | TrackingSession = open_session(model, self.video, window=window,
                                                                   tracking=tracking, predictor=predictor)

    @property
    def num_frames(self) -> int:
        return self.video.num_slices

    @property
    def fps(self) -> float | None:
        return self.video.source.get("fps")

    @property
    def object_ids(self) -> list[int]:
        return self.session.object_ids

    def _frame(self, frame: int) -> int:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise InputError(f"frame index must be an integer, got {frame!r}")
        if not 0 <= frame < self.num_frames:
            raise InputError(f"frame {frame} out of range: the video has {self.num_frames} frames "
                             f"(0..{self.num_frames - 1})")
        return int(frame)

    def add_box(self, frame: int, box: Box | Sequence[float], obj_id: int = 1) -> SliceResult:
        """Box (XYXY pixels) around object ``obj_id`` on ``frame``; returns that frame's result."""
        return self.session.add_box(self._frame(frame), box, obj_id)

    def add_points(self, frame: int, points: Points | Sequence[Sequence[float]], obj_id: int = 1) -> SliceResult:
        """Clicks ``(x, y[, label])`` for ``obj_id`` on ``frame``."""
        return self.session.add_points(self._frame(frame), points, obj_id)

    def add_mask(self, frame: int, mask2d: np.ndarray, obj_id: int = 1) -> SliceResult:
        """A binary ``(H, W)`` mask of ``obj_id`` on ``frame`` as the prompt."""
        return self.session.add_mask(self._frame(frame), mask2d, obj_id)

    def clear_frame(self, frame: int, obj_id: int = 1) -> None:
        """Remove the prompts of ``obj_id`` on ``frame``."""
        self.session.clear_slice(self._frame(frame), obj_id)

    def remove_object(self, obj_id: int) -> None:
        self.session.remove_object(obj_id)

    def reset(self) -> None:
        self.session.reset()

    def undo(self) -> None:
        self.session.undo()

    def iter_propagate(self, direction: str = "both") -> Iterator[SliceResult]:
        """Yield one :class:`SliceResult` per object and frame as tracking proceeds."""
        return self.session.iter_propagate(direction)

    def planned_slices(self, direction: str = "both") -> int:
        """Upper bound of the results ``iter_propagate(direction)`` yields (for progress bars)."""
        return self.session.planned_slices(direction)

    def results(self, obj_id: int) -> dict[int, SliceResult]:
        return self.session.results(obj_id)

    def propagate(self, direction: str = "both", progress: bool = True) -> MedicalImage:
        """Track to the end; returns ``(T, Y, X)`` labels (values = object ids, ``is_video``)."""
        return self.session.propagate(direction, progress=progress)

    def label_map(self) -> MedicalImage:
        return self.session.label_map()


def track_labels(tracks: Sequence[tuple[int, Box | Sequence[float], int | None]], obj_id: int = 1) -> list[int]:
    """The object id of each of ``tracks`` (``(frame, box, label)``): its label, or where None the next
    id after ``obj_id`` and the tracks before it; InputError when an id is prompted twice."""
    taken = [obj_id]
    for _, _, label in tracks:
        label = label if label is not None else max(taken) + 1
        if label in taken:
            raise InputError(f"object {label} is prompted twice; give each tracked object its own label")
        taken.append(label)
    return taken[1:]


def track_video(video: MedicalImage | np.ndarray, model: LoadedModel, frame: int,
                box: Box | Sequence[float] | None, points: Points | Sequence[Sequence[float]] | None,
                obj_id: int = 1, tracks: Sequence[tuple[int, Box | Sequence[float], int | None]] = (),
                progress: bool = False, mask: np.ndarray | None = None,
                on_plan: Callable[[str], None] | None = None,
                on_notice: Callable[[str], None] | None = None) -> MedicalImage:
    """Track objects through a video; returns the ``(T, Y, X)`` label video (nothing is written).

    Object ``obj_id`` from a box or a mask (a lasso's), and/or clicks, on ``frame``; each further
    object from a box on the frame where it appears (``tracks``: ``(frame, box, label)``, label
    None = the next free id), tracked forward from there only. ``on_plan`` takes the plan's lines (the
    cost) before the work where no progress bar shows them (the CLI's ``--no-progress``); ``on_notice``
    takes, after the work, where tracks ended (``object 2 lost (no longer seen) at frame 37, ...``).
    """
    if box is None and points is None and mask is None:
        raise InputError("give a box, a mask and/or points on the prompt frame")
    if box is not None and mask is not None:
        raise InputError("give a box or a mask (a lasso) on the prompt frame, not both: the mask is the object there")
    start = time.perf_counter()
    session = VideoSession(model, video)
    if box is not None:
        session.add_box(frame, box, obj_id)
    if mask is not None:  # as the server's lasso: the mask, then the clicks with it
        session.add_mask(frame, mask, obj_id)
    if points is not None:
        session.add_points(frame, points, obj_id)
    begins = []
    for (f, b, _), label in zip(tracks, track_labels(tracks, obj_id)):
        session.add_box(f, b, label)
        begins.append((f, label))
        if isinstance(session.session, TrackingSession):
            session.session.begins.add(label)  # it appears on frame f: no backward tracking
    if on_plan is not None and not progress:  # with a bar, run_to_end prints them
        for line in session.session.plan_lines("both"):
            on_plan(line)
    labels = session.propagate("both", progress=progress)
    for f, label in begins:  # SAM 2 tracks every object both ways: an object exists from its frame on
        labels.array[:f][labels.array[:f] == label] = 0
    if on_notice is not None:
        tracker = isinstance(session.session, TrackingSession)
        for line in session.session.notices if tracker else track_ends(labels.array, session.object_ids):
            on_notice(line)
    log.info("tracked %d object(s) through %d frames in %.1f s", len(session.object_ids), session.num_frames,
             time.perf_counter() - start)
    return labels


def track_ends(labels: np.ndarray, obj_ids: Sequence[int]) -> list[str]:
    """Where objects of a ``(T, Y, X)`` label video end before its last frame (SAM 2: its object
    score said the object is absent), in words; the 2D-model tracker says it itself (``notices``)."""
    out = []
    for obj_id in obj_ids:
        seen = np.flatnonzero((labels == obj_id).reshape(len(labels), -1).any(axis=1))
        if len(seen) and seen[-1] < len(labels) - 1:
            out.append(f"object {obj_id} not seen after frame {seen[-1]} (absent on frames {seen[-1] + 1}-"
                       f"{len(labels) - 1})")
    return out


def propagate_video(image: MedicalImage, model: LoadedModel, frame: int,
                    box: Box | Sequence[float] | None, points: Points | Sequence[Sequence[float]] | None,
                    obj_id: int, output: Path, overlay: Path | None, force: bool,
                    tracks: Sequence[tuple[int, Box | Sequence[float], int | None]] = ()) -> Path:
    """:func:`track_video`, then the masks to ``output`` (and an overlay video) through
    :class:`medisam.io.video_output.VideoOutputs`, which checks both before any work and
    owns every file written (this module writes none). Returns ``output``.
    """
    video = video_of(image)
    outputs = VideoOutputs.check(output, overlay, force=force, inputs=video_inputs(video))
    labels = track_video(video, model, frame, box, points, obj_id, tracks)
    return outputs.write(video, labels)
