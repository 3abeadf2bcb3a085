"""Interactive segmentation state shared by the REST server and the web UI.

An :class:`InteractiveSession` holds one image and its own embedding cache. A 2D image
goes through the model's 2D predictor (:func:`~medisam.predict.factory.open_predictor`: a
:class:`~medisam.predict.Predictor`, sam2's image predictor for SAM 2 models; the same calls as
:func:`~medisam.predict.segment.segment_image`, so ``medisam segment``, the server and the
web UI give identical masks); a volume or a video is delegated to the session
:func:`~medisam.predict.open_session` picks (:mod:`medisam.predict.contract`), which owns
the prompts, corrections, undo (one step per user action: several calls are grouped with
``session.step()``) and propagation. This class only adds the 2D state, the click limit
and display helpers. It holds no lock: callers serialise access (the server has one lock
per session).

Coordinates: prompts are in pixels of the 2D slice (x = column, y = row); ``slice`` is
the index along the session's :attr:`~InteractiveSession.axis`: a volume's acquisition axis
(:func:`~medisam.predict.volume.acquisition_axis`, as ``medisam propagate --box3d`` and the
benchmark slice it; axis 2 for a sagittal scan stored with its slices last) unless the caller
names another, the frame of a video, and ``None``/0 for a 2D image. The slice's rows and
columns are the two other array axes in order (:class:`~medisam.predict.volume.SliceGeometry`).
Label maps, 3D boxes (``x0, y0, z0, ...`` = i, j, k) and 3D clicks (``z, y, x``) stay in the
volume's own ``(Z, Y, X)`` array order whatever the axis.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from medisam.errors import InputError, PromptError
from medisam.io.intensity import to_display
from medisam.io.medical_image import MedicalImage
from medisam.io.window import hu_window_warning
from medisam.models.promptable import PromptableModel
from medisam.predict import EmbeddingCache, Predictor, Session, VolumeSession, open_session
from medisam.predict.factory import open_predictor
from medisam.predict.contract import SliceResult, paint_order, tracks_with_memory
from medisam.predict.refine2d import Click2D, correct_2d
from medisam.predict.refine3d import ClickOutcome
from medisam.predict.segment import predict_with_mask
from medisam.predict.display_volume import DisplayVolume
from medisam.predict.volume import SliceGeometry, acquisition_axis, as_box3d, parse_axis
from medisam.prompts import Box, Box3D, Points

log = logging.getLogger(__name__)

#: Largest object id (label value) accepted; label maps are uint16.
MAX_OBJECT_ID = 65535
#: Default cap on the clicks kept for one object on one slice (decoder memory grows ~quadratically).
MAX_POINTS = 256
#: Guide channels a session takes (each holds its pixels and a float32 copy).
MAX_GUIDES = 4


@dataclass
class ObjectPrompt:
    """The prompts that produced one object's mask on one slice (pixel coordinates)."""

    box: tuple[float, float, float, float] | None = None
    points: list[tuple[float, float, int]] = field(default_factory=list)
    mask: np.ndarray | None = None  # (H, W) bool mask prompt
    #: 2D images: the model's mask for these prompts, and the corrective clicks since
    #: (:meth:`InteractiveSession.add_click`, refined by the random walker)
    model_mask: np.ndarray | None = None
    clicks: tuple[Click2D, ...] = ()
    #: XYXY pixels: the box points alone were answered with (:mod:`medisam.predict.point_box`)
    found_box: tuple[float, float, float, float] | None = None


@dataclass
class _Edit:
    """One 2D user action, for undo: the labels and prompts before it."""

    labels: np.ndarray
    prompts: dict[int, ObjectPrompt]


class InteractiveSession:
    """Prompts -> label map for one image, with corrections, undo and 3D propagation."""

    def __init__(self, model: PromptableModel, image: MedicalImage, *, cache: EmbeddingCache | None = None,
                 window: str | tuple[float, float] | None = None, max_undo: int = 64,
                 max_points: int | None = MAX_POINTS, axis: int | str | None = None):
        self.model = model
        self.max_points = max_points
        self.image = image
        #: the array axis ``slice`` indexes (:func:`session_axis`)
        self.axis = session_axis(image, axis)
        self.window = window
        #: what the window in use warns of (a CT window on an image not in HU); None: nothing
        self.window_warning = hu_window_warning(window, image)
        self.max_undo = max_undo
        self._undo: list[_Edit] = []
        self._display: DisplayVolume | None = None  # the volume's pictures, mapped slice by slice
        self.volume: Session | None = None
        self.predictor: Predictor | None = None
        memory = tracks_with_memory(model)  # SAM 2: its own session for volumes and videos
        if image.is_volume:
            if image.is_rgb and not image.is_video:
                raise InputError(f"colour volumes {image.array.shape} are not supported; upload one channel")
            if cache is not None and not image.is_video and not memory:
                self.predictor = Predictor(model, cache)
            self._open_volume(window)
        else:  # a 2D image: the model's 2D predictor, sam2's image predictor for SAM 2 (as `medisam segment`)
            self.predictor = open_predictor(model, cache if cache is not None else EmbeddingCache(), max_pixels=None)
        self._labels2d = np.zeros(image.spatial_shape[:2], dtype=np.uint16) if not image.is_volume else None
        self._prompts2d: dict[int, ObjectPrompt] = {}

    def _open_volume(self, window: str | tuple[float, float] | None) -> None:
        """The volume/video session for ``window`` (sharing this session's predictor and cache)."""
        old, had_guides = self.volume, self.guides
        axis = {} if self.image.is_video else {"axis": self.axis}  # a video's frames: axis 0 only
        self.volume = open_session(self.model, self.image, window=window, predictor=self.predictor,
                                   max_undo=self.max_undo, **axis)
        if had_guides:  # the guides' walker channels do not depend on the window
            self.volume.adopt_guides(old)
        if isinstance(getattr(self.volume, "predictor", None), Predictor):
            self.predictor = self.volume.predictor

    # ------------------------------------------------------------ geometry
    @property
    def num_slices(self) -> int:
        """Slices along :attr:`axis` (frames of a video, 1 for a 2D image)."""
        return int(self.image.spatial_shape[self.axis]) if self.image.is_volume else self.image.num_slices

    @property
    def geometry(self) -> SliceGeometry | None:
        """How a volume's slices along :attr:`axis` map to its ``(Z, Y, X)`` array; None for a 2D image."""
        if not self.image.is_volume:
            return None
        return SliceGeometry(tuple(int(v) for v in self.image.spatial_shape[:3]), self.axis,
                             tuple(float(v) for v in self.image.spacing_zyx))

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(H, W)`` of a slice along :attr:`axis` (of the 2D image; of a video's frames)."""
        return self._plane_hw()

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """A slice's pixel size ``(x = column, y = row)`` in mm on a volume; ``(1, 1)`` for a 2D image
        and a video (their pictures are shown as they are)."""
        if not self.image.is_volume or self.image.is_video:
            return 1.0, 1.0
        return self.geometry.pixel_mm

    def voxel_of(self, slice: int | None, x: float, y: float) -> tuple[int, int, int]:
        """The ``(z, y, x)`` voxel of pixel ``(x, y)`` (column, row) of ``slice`` (``(0, y, x)`` on a 2D image)."""
        k = self.check_slice(slice)
        return self.geometry.voxel(k, x, y) if self.image.is_volume else (0, int(y), int(x))

    def labelled_slices(self, value: int | None = None) -> np.ndarray:
        """Per slice along :attr:`axis`: whether the label map holds ``value`` there (any label: None)."""
        labels = self.labels
        return self.geometry.labelled_slices(labels, value) if self.image.is_volume else \
            np.array([(labels > 0 if value is None else labels == value).any()])

    def check_slice(self, slice: int | None) -> int:
        """Validate ``slice`` for this image and return the index along :attr:`axis` (0 for 2D)."""
        if not self.image.is_volume:
            if slice not in (None, 0):
                raise InputError(f"slice {slice} requested from a 2D image")
            return 0
        along = "" if self.image.is_video else f" along axis {self.axis}"
        if slice is None:
            raise InputError(f"this volume has {self.num_slices} slices{along}: give slice (0..{self.num_slices - 1})")
        if not 0 <= int(slice) < self.num_slices:
            raise InputError(f"slice {slice} out of range 0..{self.num_slices - 1}{along}")
        return int(slice)

    @property
    def labels(self) -> np.ndarray:
        """The current label map on the image grid: ``(H, W)`` or ``(Z, Y, X)`` uint8/uint16."""
        if self.volume is not None:
            return self.volume.label_map().array
        return self._labels2d

    def labels_slice(self, slice: int | None = None) -> np.ndarray:
        """The current ``(H, W)`` label map of a slice (copy)."""
        k = self.check_slice(slice)
        return np.take(self.labels, k, axis=self.axis) if self.volume is not None else self._labels2d.copy()

    def label_image(self) -> MedicalImage:
        """The whole label map with the image's geometry (ready for ``write_mask``)."""
        return self.image.as_labels(self.labels)

    @property
    def object_ids(self) -> list[int]:
        if self.volume is not None:
            return self.volume.object_ids
        return sorted(int(v) for v in np.unique(self._labels2d) if v)

    def display_slice(self, slice: int | None = None) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 picture of a slice as the model sees it (current window)."""
        k = self.check_slice(slice)
        if self.volume is None:
            return np.clip(to_display(self.image.array, self.image.modality, self.window), 0, 255).astype(np.uint8)
        if self.image.is_rgb:  # colour video frames: as VideoSession shows them to the encoder
            return np.clip(to_display(self.image.array[k], self.image.modality, self.window), 0, 255).astype(np.uint8)
        if self._display is None:  # one window for the whole volume: the volume session's own where it has one
            shown = getattr(self.volume, "display", None)
            self._display = shown if isinstance(shown, DisplayVolume) else DisplayVolume.of(
                self.image.array, self.image.modality, self.window)
        plane = self.geometry.take(self._display, k)  # the slice along the session's axis
        return np.repeat(np.clip(np.rint(plane), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)

    # ------------------------------------------------------------- prompts
    def set_window(self, window: str | tuple[float, float] | None) -> None:
        """Change the intensity window of later predictions. The image must have no objects yet (a
        2D image too: its masks so far would keep the old window while the picture showed the new one);
        :attr:`window_warning` then says whether the new window suits the image."""
        if window == self.window:
            return
        if self.object_ids:
            raise InputError(f"change the window before prompting {'a volume' if self.volume else 'an image'} "
                             "(or undo/reset first)")
        if self.volume is not None:
            self._open_volume(window)
            self._display = None
        self.window = window
        self.window_warning = hu_window_warning(window, self.image)

    def segment(self, slice: int | None = None, obj_id: int = 1, *, box: Sequence[float] | None = None,
                points: Sequence[Sequence[float]] | None = None, mask: np.ndarray | None = None) -> SliceResult:
        """Segment object ``obj_id`` on a slice from a new prompt set (replaces its prompts there).

        ``box`` XYXY pixels, ``points`` ``(x, y[, label])`` with label 1 positive / 0 negative,
        ``mask`` an ``(H, W)`` bool mask prompt on the slice grid (on a volume it becomes the
        slice's result and a propagation seed, as ``VolumeSession.add_mask``; with points it is their
        mask prompt; a box with it is refused there, as ``medisam propagate --lasso --box``: it replaced
        the mask silently).
        """
        k = self.check_slice(slice)
        obj_id = self._obj(obj_id)
        if mask is not None and not np.isfinite(np.asarray(mask, dtype=float)).all():
            raise PromptError("the mask prompt holds NaN or infinite values")  # NaN read as True: the whole image
        prompt = ObjectPrompt(
            # inside the plane before the float32 cast: a box of 1e300 overflowed it (a RuntimeWarning logged)
            box=(tuple(float(v) for v in Box.of(box).check_inside(*self._plane_hw()).as_array())
                 if box is not None else None),
            points=[self._point(p) for p in points] if points is not None else [],
            mask=None if mask is None else np.asarray(mask, dtype=bool),
        )
        if prompt.box is None and not prompt.points and prompt.mask is None:
            raise PromptError("give at least one prompt: box, points or mask")
        if self.volume is not None and prompt.mask is not None and prompt.box is not None:
            raise PromptError("on a volume's slice give a box or a mask (a lasso), not both: the mask is the "
                              "object's mask there and a box would replace it")
        self._count_points(k, obj_id, len(prompt.points), keep=False)
        if self.volume is None:
            return self._apply2d(obj_id, prompt)
        vs = self.volume
        with vs.step():  # one undo step, all or nothing
            if vs.slice_prompts(k, obj_id) is not None:
                vs.clear_slice(k, obj_id)
            if prompt.mask is not None:
                res = vs.add_mask(k, prompt.mask, obj_id)
            if prompt.box is not None:
                res = vs.add_box(k, prompt.box, obj_id)
            if prompt.points:
                res = vs.add_points(k, prompt.points, obj_id)
        return res

    def add_points(self, slice: int | None = None, obj_id: int = 1, *,
                   points: Sequence[Sequence[float]]) -> SliceResult:
        """Correct object ``obj_id`` on a slice with more clicks (kept with its earlier prompts)."""
        k = self.check_slice(slice)
        obj_id = self._obj(obj_id)
        if not len(points):
            raise PromptError("give at least one point")
        self._count_points(k, obj_id, len(points), keep=True)
        pts = [self._point(p) for p in points]
        if self.volume is None:
            old = self._prompts2d.get(obj_id, ObjectPrompt())
            return self._apply2d(obj_id, ObjectPrompt(old.box, [*old.points, *pts], old.mask))
        return self.volume.add_points(k, pts, obj_id)

    def found_box(self, slice: int | None = None, obj_id: int = 1) -> tuple[float, float, float, float] | None:
        """XYXY pixels: the box the points alone of ``obj_id`` on ``slice`` were answered with
        (box-trained models, :mod:`medisam.predict.point_box`); None for any other prompt."""
        if self.volume is None:
            prompt = self._prompts2d.get(obj_id)
            return None if prompt is None else prompt.found_box
        box = self.volume.found_box(self.check_slice(slice), obj_id)
        return None if box is None else (box.x0, box.y0, box.x1, box.y1)

    def add_box3d(self, box3d: Sequence[float] | None = None, obj_id: int = 1, *,
                  box: Sequence[float] | None = None, slice_range: Sequence[int] | None = None,
                  slice: int | None = None) -> SliceResult:
        """Prompt object ``obj_id`` with a 3D box (replaces its earlier prompts), as ``medisam propagate --box3d``.

        Either ``box3d`` = ``(x0, y0, z0, x1, y1, z1)`` voxel indices of the ``(Z, Y, X)`` array
        (i, j, k, inclusive, whatever the axis), or a 2D ``box`` (XYXY pixel edges of a slice) with
        ``slice_range`` = ``(first, last)`` slice along :attr:`axis`, and ``slice``, the slice it was
        drawn on, if known: the box then bounds the object on that slice only, so a corrective click may
        reach past it on the others. Returns the seed slice's result;
        :meth:`propagate` then stays inside the box's slice range.
        """
        if self.volume is None:
            raise InputError("a 3D box needs a volume (or a video); this is a 2D image")
        if slice is not None and box is None:
            raise PromptError("slice (where the box was drawn) goes with a 2D box and its slice range")
        drawn_on = None if slice is None else self.check_slice(slice)
        b3 = box3d_of(box3d, box, slice_range)
        if box is not None:  # the box's x/y are a slice's pixels, its z the slices along the axis
            lo, hi = sorted(self.check_slice(int(v)) for v in slice_range)
            b3 = self.geometry.plane_box3d(b3.x0, b3.y0, b3.z0, b3.x1, b3.y1, b3.z1)
            if drawn_on is not None and not lo <= drawn_on <= hi:
                raise PromptError(f"the box was drawn on slice {drawn_on}, outside its slice range {lo}..{hi}")
        b3 = b3.check_inside(self.image.array.shape[:3])
        return self.volume.add_box3d(b3, self._obj(obj_id), drawn_on=drawn_on, drawn_axis=self.axis)

    def add_recist(self, slice: int | None, line: Sequence[float], obj_id: int = 1) -> SliceResult:
        """Prompt object ``obj_id`` with a RECIST line ``(x0, y0, x1, y1)`` (a lesion's long axis, pixels)
        on a slice: on a volume the lesion's 3D box (``prompting.shapes.recist_to_box3d``, then
        :meth:`add_box3d`; propagate next), on a 2D image the box around the line."""
        from medisam.prompting.shapes import recist_ends, recist_prompt, recist_to_box3d

        k = self.check_slice(slice)
        if self.image.is_video:
            raise InputError("a RECIST line is drawn on a volume's slice or a 2D image, not on a video frame")
        if self.volume is None:
            return self.segment(None, obj_id, box=recist_prompt(*recist_ends(line), self._plane_hw()).box.as_array())
        g = self.geometry
        (rows, cols), n = g.plane_axes, g.num_slices
        spacing = g.spacing_zyx
        b = recist_to_box3d(line, k, (n, *g.plane_hw), (spacing[self.axis], spacing[rows], spacing[cols]))
        b3 = g.plane_box3d(b.x0, b.y0, b.z0, b.x1, b.y1, b.z1)  # the slice's pixels and axis -> (Z, Y, X)
        # the line's box bounds the lesion on its own slice only
        return self.volume.add_box3d(b3, self._obj(obj_id), drawn_on=k, drawn_axis=self.axis)

    def add_scribble(self, slice: int | None, polyline: Sequence[Sequence[float]], positive: bool = True,
                     obj_id: int = 1) -> SliceResult:
        """A scribble (polyline of ``(x, y)`` pixels) on a slice -> clicks along it (``scribble_points``).

        On an object with a mask to correct (:meth:`corrects`) they are corrective clicks, as
        :meth:`add_click` (the random walker; on a 2D image a positive scribble only adds and a
        negative one only removes), solved together (one walker solve) as ONE undo step; on a new
        object they prompt the model on that slice, as :meth:`add_points`. Why: LiteMedSAM is
        box-trained, and the same clicks as point prompts undo good masks (three correction
        scribbles after the tight box, mean of the eleven 2D sets: 0.812 -> 0.526 as point prompts,
        0.812 -> 0.841 as walker clicks; docs/clients.md, "Scribbles that correct"). A 2D scribble
        whose clicks the walker honours none of is a :class:`PromptError`, with nothing changed."""
        from medisam.prompting.shapes import scribble_points

        k = self.check_slice(slice)
        obj = self._obj(obj_id)
        pixels = scribble_points(polyline, self._plane_hw(), positive).coords.astype(int).tolist()  # (x, y)
        if not self.corrects(obj):
            return self.add_points(slice, obj, points=[(x, y, int(positive)) for x, y in pixels])
        if self.volume is None:
            if self._correct2d([(y, x) for x, y in pixels], positive, obj).rejected:
                sign = "positive" if positive else "negative"
                raise PromptError(f"the {sign} scribble changed nothing: the refinement honoured none of its "
                                  f"{len(pixels)} clicks (draw it over the part to {'add' if positive else 'remove'})")
        else:
            self.volume.add_clicks([self.voxel_of(k, x, y) for x, y in pixels], positive, obj)
        source = "click3d" if self.volume is not None else "click2d"  # a correction: no box to name
        return SliceResult(k, obj, self.labels_slice(slice) == obj, 1.0, source=source)

    def corrects(self, obj_id: int) -> bool:
        """Whether clicks on object ``obj_id`` correct its mask (:meth:`add_click`) rather than
        prompt the model: a prompted object of a 2D image (:meth:`correctable2d`), or an object of
        a volume session with 3D clicks (:attr:`click3d_available`)."""
        if self.volume is None:
            return self.correctable2d(obj_id)
        return self.click3d_available and obj_id in self.volume.object_ids

    def add_lasso(self, slice: int | None, polygon: Sequence[Sequence[float]], obj_id: int = 1) -> SliceResult:
        """A lasso (closed polygon of ``(x, y)`` pixels) on a slice -> its filled mask as object
        ``obj_id``'s mask prompt there (``lasso_mask``, then :meth:`segment`)."""
        from medisam.prompting.shapes import lasso_mask

        self.check_slice(slice)
        return self.segment(slice, obj_id, mask=lasso_mask(polygon, self._plane_hw()))

    @property
    def click3d_available(self) -> bool:
        """Whether :meth:`add_click` works here (a 2D image, or a volume or video session of a
        non-SAM 2 model)."""
        return self.volume is None or isinstance(self.volume, VolumeSession)

    def add_click(self, zyx: Sequence[int], positive: bool = True, obj_id: int = 1):  # noqa: ANN201 - ClickOutcome
        """Correct object ``obj_id`` with one click at voxel ``(z, y, x)``: on a volume its 3D
        mask is refined around the click (``predict.refine3d.refine_with_click``), on a 2D image
        (``z`` = 0) its mask (``predict.refine2d``); both with the random walker, no model run."""
        if self.volume is None:
            return self._click2d(zyx, positive, self._obj(obj_id))
        if not self.click3d_available:  # Sam2Session: no 3D click refinement yet
            raise InputError(f"3D clicks are not available for {self.model.spec.name} sessions yet")
        return self.volume.add_click([int(v) for v in zyx], positive, self._obj(obj_id))

    def add_guide(self, guide: MedicalImage) -> int:
        """Give the 3D click walker another image of this volume (e.g. T1c beside FLAIR, same
        grid; the model keeps seeing the session's image); returns how many guides there are."""
        if self.volume is None or not self.click3d_available:
            raise InputError("guides help 3D clicks, which need a volume session of a non-SAM 2 model")
        if self.guides >= MAX_GUIDES:
            raise InputError(f"a session takes at most {MAX_GUIDES} guides")
        self.volume.add_guide(guide)  # checks the grid first; keeps only the walker's channel
        return self.guides

    @property
    def guides(self) -> int:
        """How many guide channels the 3D clicks see (:meth:`add_guide`)."""
        return getattr(self.volume, "guides", 0) if self.volume is not None else 0

    def remove_object(self, obj_id: int) -> None:
        """Erase an object everywhere."""
        obj_id = self._obj(obj_id)
        if self.volume is not None:
            if obj_id not in self.volume.object_ids:
                raise PromptError(f"no object {obj_id}; objects: {self.volume.object_ids or 'none'}")
            self.volume.remove_object(obj_id)
        else:
            if obj_id not in self.object_ids and obj_id not in self._prompts2d:  # was an undo step of nothing
                raise PromptError(f"no object {obj_id}; objects: {self.object_ids or 'none'}")
            self._push2d()
            self._labels2d[self._labels2d == obj_id] = 0
            self._prompts2d.pop(obj_id, None)

    def undo(self) -> bool:
        """Revert the last user action (prediction, correction, removal, propagation); False if none."""
        if not self.can_undo:
            return False
        if self.volume is not None:
            self.volume.undo()
        else:
            edit = self._undo.pop()
            self._labels2d, self._prompts2d = edit.labels, edit.prompts
        return True

    @property
    def can_undo(self) -> int:
        """Undo steps available."""
        return self.volume.can_undo if self.volume is not None else len(self._undo)

    def reset(self) -> None:
        """Clear all labels and prompts (keeps the image and its cached embeddings); undoable."""
        if self.volume is not None:
            self.volume.reset()
        else:
            self._push2d()
            self._labels2d = np.zeros_like(self._labels2d)
            self._prompts2d = {}

    # --------------------------------------------------------- propagation
    def iter_propagate(self, direction: str = "both"):  # noqa: ANN201 - Iterator[predict.SliceResult]
        """Propagate every object from its prompted slices; yields per computed slice (cancellable).

        Propagation adds results without changing prompts, so undo does not remove it;
        a later prompt re-propagates only the slices it affects (see VolumeSession). Items
        are :class:`SliceResult` (and ``ViewProgress`` for a tri-planar 3D box's other views).
        """
        if self.volume is None:
            raise InputError("propagation needs a volume or a video; this is a 2D image")
        if not self.volume.object_ids:
            raise PromptError("nothing to propagate: segment an object on at least one slice first")
        yield from self.volume.iter_propagate(direction)

    def planned_slices(self, direction: str = "both") -> int:
        return self.volume.planned_slices(direction) if self.volume is not None else 0

    def plan_lines(self, direction: str = "both") -> list[str]:
        """The cost of the coming propagation in words (a 3D box's views and encodings); none for 2D."""
        return self.volume.plan_lines(direction) if self.volume is not None and self.volume.object_ids else []

    def propagation_plan(self, direction: str = "both") -> list[str]:
        """:meth:`plan_lines` of a propagation about to run, forgetting the notices said before it,
        so that :meth:`take_notices` after it gives that propagation's own (server, web UI)."""
        self.take_notices()
        return self.plan_lines(direction)

    def take_notices(self) -> list[str]:
        """What the volume's propagations said beyond their results since the last call, oldest
        first (see the session contract's ``notices``); they are removed from the session."""
        if self.volume is None:
            return []
        taken = list(self.volume.notices)
        self.volume.notices.clear()
        return taken

    def propagate(self, direction: str = "both",
                  progress: Callable[[int, int], None] | None = None) -> MedicalImage:
        """Run :meth:`iter_propagate` to the end (``progress(done, total)`` per slice); return the labels."""
        total = self.planned_slices(direction)
        for done, _ in enumerate(self.iter_propagate(direction), start=1):
            if progress is not None:
                progress(done, total)
        return self.label_image()

    # ------------------------------------------------------------ helpers
    def _plane_hw(self) -> tuple[int, int]:
        """``(H, W)`` of a slice along :attr:`axis` (or of the 2D image)."""
        if self.volume is not None:
            return self.geometry.plane_hw
        shape = self.image.spatial_shape
        return int(shape[0]), int(shape[1])

    @staticmethod
    def _obj(obj_id: int) -> int:
        if isinstance(obj_id, bool) or int(obj_id) != obj_id or not 1 <= int(obj_id) <= MAX_OBJECT_ID:
            raise PromptError(f"object id must be an integer 1..{MAX_OBJECT_ID}, got {obj_id!r}")
        return int(obj_id)

    @staticmethod
    def _point(p: Sequence[float]) -> tuple[float, float, int]:
        pts = Points.of([p])  # validates finiteness and the 0/1 label
        return float(pts.coords[0, 0]), float(pts.coords[0, 1]), int(pts.labels[0])

    def _count_points(self, k: int, obj_id: int, new: int, keep: bool) -> int:
        """Clicks object ``obj_id`` would have on slice ``k`` after adding ``new`` (PromptError above the cap)."""
        total = new
        if keep and self.volume is not None:
            prompts = self.volume.slice_prompts(k, obj_id)
            total += 0 if prompts is None or prompts.points is None else len(prompts.points.coords)
        elif keep:
            total += len(self._prompts2d.get(obj_id, ObjectPrompt()).points)
        if self.max_points is not None and total > self.max_points:
            raise PromptError(f"object {obj_id} would have {total} points on this slice, more than the limit "
                              f"of {self.max_points}; use a box or mask prompt, or undo some clicks")
        return total

    def _push2d(self) -> None:
        self._undo.append(_Edit(self._labels2d.copy(), dict(self._prompts2d)))
        del self._undo[: -self.max_undo]

    def correctable2d(self, obj_id: int) -> bool:
        """Whether object ``obj_id`` of a 2D image has a model mask for clicks to correct
        (:meth:`add_click`): it was prompted (a box, points, a mask) since the session began."""
        prompt = self._prompts2d.get(obj_id) if self.volume is None else None
        return prompt is not None and prompt.model_mask is not None

    def _click2d(self, zyx: Sequence[int], positive: bool, obj_id: int) -> ClickOutcome:
        """A corrective click on a 2D image (:meth:`_correct2d`) at ``(0, y, x)``."""
        if len(zyx) != 3 or int(zyx[0]) != 0:
            raise PromptError(f"a click on a 2D image is (0, y, x), got {tuple(zyx)!r}")
        h, w = self._labels2d.shape
        y, x = int(zyx[1]), int(zyx[2])
        if not (0 <= y < h and 0 <= x < w):
            raise PromptError(f"click (y={y}, x={x}) lies outside the {w}x{h} image")
        return self._correct2d([(y, x)], positive, obj_id)

    def _correct2d(self, pixels: Sequence[tuple[int, int]], positive: bool, obj_id: int) -> ClickOutcome:
        """Corrective clicks of one sign at ``(y, x)`` pixels of a 2D image, solved together
        (:func:`~medisam.predict.refine2d.correct_2d`): the object's mask refined by the random walker
        around the model's mask of its prompts and its clicks so far; one undo step; rejected, with
        nothing changed, when the refined mask honours none of them."""
        if not self.correctable2d(obj_id):
            raise PromptError(f"object {obj_id} has no mask to correct: prompt it with a box first")
        prompt = self._prompts2d[obj_id]
        self.predictor.set_image(self.image, window=self.window)  # the cached embedding; its display
        current = self._labels2d == obj_id
        done = correct_2d(self.predictor.display_image, prompt.model_mask, current, prompt.box, prompt.clicks,
                          pixels, bool(positive))
        y, x = pixels[-1]
        if done is None:
            return ClickOutcome(0, (x, y, int(positive)), 0, 0, rejected=True, undo_steps=0)
        new, clicks, _ = done
        self._push2d()
        self._labels2d = self._labels2d.copy()
        self._labels2d[current & ~new] = 0
        self._labels2d[new] = obj_id
        self._prompts2d[obj_id] = replace(prompt, clicks=clicks)
        return ClickOutcome(0, (x, y, int(positive)), 0, 0, changed=(0,) if (new != current).any() else ())

    def _beneath2d(self, obj_id: int, area: int) -> list[int]:
        """The other objects of a 2D image that stay on top of ``obj_id`` with a model mask of ``area``
        pixels: the smaller ones (equal sizes: the later id), as every label map paints them
        (:func:`~medisam.predict.contract.paint_order`). A later, larger object took their pixels: a
        click answered with the whole thorax covered the lung boxed before it."""
        sizes = {o: int(p.model_mask.sum()) for o, p in self._prompts2d.items()
                 if o != obj_id and p.model_mask is not None}
        sizes[obj_id] = area
        order = paint_order(sizes)
        return order[order.index(obj_id) + 1:]

    def _apply2d(self, obj_id: int, prompt: ObjectPrompt) -> SliceResult:
        self.predictor.set_image(self.image, window=self.window)
        box, points = prompt.box, prompt.points or None
        if prompt.mask is not None:  # the same call as segment_image / the CLI's --lasso
            pred = predict_with_mask(self.predictor, prompt.mask, box, points)
        elif box is not None and points is None:
            pred = self.predictor.predict_batch([box])  # the same call as segment_image / the CLI
        else:
            pred = self.predictor.predict(box=box, points=points)
        mask = pred.masks[0]
        self._push2d()
        self._labels2d = self._labels2d.copy()
        self._labels2d[self._labels2d == obj_id] = 0
        self._labels2d[mask & ~np.isin(self._labels2d, self._beneath2d(obj_id, int(mask.sum())))] = obj_id
        self._prompts2d[obj_id] = replace(prompt, model_mask=mask, clicks=(), found_box=pred.box)
        log.debug("object %d: %d pixels, score %.3f", obj_id, int(mask.sum()), float(pred.scores[0]))
        return SliceResult(0, obj_id, mask, float(pred.scores[0]), source="prompt")


def session_axis(image: MedicalImage, axis: int | str | None = None) -> int:
    """The array axis a session over ``image`` slices: ``axis`` (``0/1/2`` or ``k/j/i``) when given,
    else a volume's acquisition axis (:func:`~medisam.predict.volume.acquisition_axis`: the thick axis,
    whose planes have the square pixels the model was trained on, as ``medisam propagate --box3d``
    and the benchmark use); a video's frames and a 2D image: axis 0 only."""
    chosen = None if axis is None or (isinstance(axis, str) and not axis.strip()) else parse_axis(axis)
    if image.is_video or not image.is_volume:
        if chosen not in (None, 0):
            what = "a video's frames lie" if image.is_video else "a 2D image has one slice,"
            raise InputError(f"axis {axis!r} applies to volumes; {what} on axis 0")
        return 0
    return acquisition_axis(image.spacing_zyx) if chosen is None else chosen


def box3d_of(box3d: Sequence[float] | None, box: Sequence[float] | None = None,
             slice_range: Sequence[int] | None = None) -> Box3D:
    """A :class:`Box3D` from 6 voxel indices, or from a 2D pixel-edge box and an inclusive slice range."""
    if (box3d is None) == (box is None):
        raise PromptError("give either a 3D box (x0,y0,z0,x1,y1,z1) or a 2D box with a slice range")
    if box3d is not None:
        return as_box3d(box3d)
    if slice_range is None or len(slice_range) != 2:
        raise PromptError("a 2D box needs a slice range (first, last) to make a 3D box")
    b = Box.of(box)  # its float fields, not float32 (1e300 would be inf)
    x0, y0 = math.floor(b.x0), math.floor(b.y0)
    x1, y1 = max(x0, math.ceil(b.x1) - 1), max(y0, math.ceil(b.y1) - 1)
    lo, hi = sorted(int(v) for v in slice_range)
    return as_box3d((x0, y0, lo, x1, y1, hi))
