"""What the web UI does, without the UI: open a file, turn clicks into prompts, render, export.

:class:`AppState` wraps an :class:`~medisam.serve.interactive.InteractiveSession` (the
same library path as the REST server and the CLI) and adds what a point-and-click UI
needs: a click mode (positive point, negative point, box corners, RECIST line endpoints),
the pending first corner/endpoint, the overlay picture of the current slice and the mask
file in the input's format. It is plain Python so tests drive it without a browser.

On a volume, once propagated, a positive/negative click on any slice is a 3D correction
(``InteractiveSession.add_click``: the object's 3D mask refined around the click); *Undo*
takes it back. Before propagation a click adds a point on the slice.

A volume's slices are those along the session's axis (``InteractiveSession.axis``: its
acquisition axis unless :meth:`AppState.open` names another, as ``medisam propagate --box3d``
slices it), shown in their true aspect (:attr:`AppState.view_factors`); videos and 2D images
as they are.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medisam.app import video as app_video
from medisam.errors import InputError
from medisam.io import read_image, write_mask
from medisam.io.detached import check_data_files
from medisam.io.overlay import render_overlay
from medisam.io.registry import file_extension
from medisam.models.promptable import PromptableModel
from medisam.serve.interactive import InteractiveSession
from medisam.serve.uploads import extract_zip

log = logging.getLogger(__name__)

MODES = ("box", "positive", "negative", "recist", "scribble+", "scribble-", "lasso")
#: Modes whose clicks collect the vertices of a shape, applied by :meth:`AppState.finish_shape`.
SHAPE_MODES = ("scribble+", "scribble-", "lasso")

#: Slices smaller than this (pixels, longest side) are shown enlarged by an integer factor.
MIN_VIEW_SIDE = 512
#: a Cancel clicked this many seconds before a propagation starts still stops it: the two
#: events may run in either order when the server is busy
CANCEL_GRACE_S = 10.0

#: Input format (MedicalImage.source["format"] or file extension) -> mask extension written back.
MASK_EXTENSION = {
    "png": ".png", "jpeg": ".png", "jpg": ".png", "tiff": ".png", "tif": ".png", "bmp": ".png",
    "nifti": ".nii.gz", ".nii": ".nii.gz", ".nii.gz": ".nii.gz", "nrrd": ".nrrd", ".nrrd": ".nrrd",
    ".nhdr": ".nrrd", "mha": ".mha", ".mha": ".mha", ".mhd": ".mha", "npz": ".npz", ".npz": ".npz",
}


#: Prompt marks are white and black, colours no object has (:data:`~medisam.io.overlay.PALETTE`), so a
#: mark is never read as an object: positive points and shapes light on a dark ring, negative ones dark.
PROMPT_LIGHT = (255, 255, 255)
PROMPT_DARK = (0, 0, 0)


def _outlined(draw: Callable[[tuple[int, int, int], int], object], width: int, negative: bool = False) -> None:
    """Draw a mark twice, a dark outline under a light line (reversed for a negative mark), so it shows on
    bright and dark images alike."""
    under, over = (PROMPT_LIGHT, PROMPT_DARK) if negative else (PROMPT_DARK, PROMPT_LIGHT)
    draw(under, width + 2)
    draw(over, width)


@dataclass(frozen=True)
class _Step:
    """One undo step of the page: what it was, and the prompts drawn before it (restored by undo)."""

    action: str  # "click3d", "click2d", "prompt" or "remove" (an object or all of them erased)
    boxes: dict[int, tuple[tuple[float, ...], int, int]]
    lines: dict[int, tuple[tuple[float, float, float, float], int]]
    points: list[tuple[float, float, int]]
    slice: int  # the slice the clicks were on


def _source_index(v: float, factor: float, n: int) -> int:
    """The slice pixel (row or column, ``0..n-1``) under picture pixel ``v`` of a picture enlarged by ``factor``."""
    if float(factor).is_integer():
        return min(int(v // int(factor)), n - 1)
    return min(int(v / factor), n - 1)


def _enlarge(picture: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """``picture`` enlarged by ``fx`` across and ``fy`` down (nearest neighbour; each shown pixel is the
    slice pixel a click there means, :func:`_source_index`)."""
    h, w = picture.shape[:2]
    if float(fx).is_integer() and float(fy).is_integer():
        return np.repeat(np.repeat(picture, int(fy), axis=0), int(fx), axis=1)
    rows = [_source_index(v, fy, h) for v in range(max(1, round(h * fy)))]
    cols = [_source_index(v, fx, w) for v in range(max(1, round(w * fx)))]
    return picture[np.ix_(rows, cols)]


class AppState:
    """One browser tab's image, session and click state (all coordinates in slice pixels)."""

    def __init__(self, model: PromptableModel, max_voxels: int | None = 1 << 27):
        self.model = model
        self.max_voxels = max_voxels
        self.session: InteractiveSession | None = None
        self.input_name = ""
        self.input_ext = ""
        self.slice = 0
        self.obj_id = 1
        self.mode = "box"
        self.pending_corner: tuple[float, float] | None = None
        self.points: list[tuple[float, float, int]] = []  # clicks shown on the current slice
        self.slice_range: tuple[int, int] | None = None  # set: a box becomes a 3D box on these slices
        self.boxes: dict[int, tuple[tuple[float, ...], int, int]] = {}  # obj -> (box, first, last) drawn
        self.lines: dict[int, tuple[tuple[float, float, float, float], int]] = {}  # obj -> (RECIST line, slice)
        self.propagated = False  # True after a completed propagation: clicks on a volume then correct in 3D
        self.plan: list[str] = []  # the last propagation's cost in words (InteractiveSession.plan_lines)
        self.vertices: list[tuple[float, float]] = []  # the scribble/lasso being drawn on the shown slice
        self._actions: list[_Step] = []  # each undo step of the session, with the prompts drawn before it
        self.cancel_requested = False
        self._cancel_at = -float("inf")  # when cancel() was last called (time.monotonic())
        self.opacity: dict[int, float] = {}  # object -> fill opacity in the picture (legend); default 0.4
        self.direction = "both"  # propagation direction; videos: "forward" (objects start where prompted)
        self._renders = 0  # pictures written by render_file
        self._workdir = Path(tempfile.mkdtemp(prefix="medisam-app-"))
        self._workdir.chmod(0o700)
        self.message = ("open an image, a volume (NIfTI/NRRD/MHA), a video (MP4/AVI, DICOM cine), "
                        "a DICOM file or a zipped DICOM series")

    # ----------------------------------------------------------------- input
    def open(self, path: str | Path, window: str | None = None, axis: int | str | None = None) -> None:
        """Open a file (zip = DICOM series); resets prompts and shows the middle slice. A volume's
        slices lie along ``axis`` (default: its acquisition axis, :func:`~medisam.serve.interactive.session_axis`)."""
        path = Path(path)
        ext = ".zip" if path.name.lower().endswith(".zip") else file_extension(path)
        if ext == ".zip":
            dest = Path(tempfile.mkdtemp(prefix="zip-", dir=self._workdir)) / "series"
            extract_zip(path, dest, max_members=5000, max_bytes=2 << 30, max_ratio=200.0)
            image = read_image(dest, max_voxels=self.max_voxels)
        else:
            check_data_files(path, root=path.parent)  # an uploaded header may not name a server file
            image = read_image(path, max_voxels=self.max_voxels)
        self.session = InteractiveSession(self.model, image, window=window or None, axis=axis)
        self.input_name = path.name
        self.input_ext = ext
        self.slice = self.session.num_slices // 2 if image.is_volume else 0
        self.pending_corner = None
        self.points = []
        self.boxes = {}
        self.lines = {}
        self.propagated = False
        self.vertices = []
        self._actions = []
        self.slice_range = None
        self.direction = "forward" if image.is_video else "both"
        if image.is_video:
            self.slice = 0  # objects are boxed where they first appear, from the first frame on
            self.message = f"opened video {path.name}: {app_video.describe(image)}, {image.array.shape[1:3]} pixels"
        else:
            kind = "volume" if image.is_volume else "image"
            self.message = f"opened {kind} {path.name}: shape {image.array.shape}, modality {image.modality}"
            if image.is_volume:  # what the slider moves along
                a = self.session.axis
                self.message += f", {self.session.num_slices} slices along axis {a} ({'kji'[a]})"
        if self.session.window_warning:  # a CT window on an image not in HU, as the CLI and the server say
            self.message += f"; warning: {self.session.window_warning}"

    def add_guide(self, path: str | Path) -> None:
        """Another channel of the open volume (e.g. T1c beside FLAIR, same grid) for the 3D
        clicks' walker (the model keeps seeing the opened image)."""
        path = Path(path)
        check_data_files(path, root=path.parent)
        n = self.require().add_guide(read_image(path, max_voxels=self.max_voxels))
        self.message = f"guide {path.name} added: 3D clicks see {n + 1} channels"

    @property
    def is_video(self) -> bool:
        return self.session is not None and self.session.image.is_video

    def set_direction(self, direction: str) -> None:
        """Video tracking direction: ``"forward"`` (objects start where prompted) or ``"both"``."""
        self.require()
        if not self.is_video:
            raise InputError("the tracking direction is for videos; volumes propagate both ways")
        self.direction = app_video.check_direction(direction)

    def require(self) -> InteractiveSession:
        if self.session is None:
            raise InputError("open an image first")
        return self.session

    def set_slice(self, k: int) -> None:
        s = self.require()
        self.slice = s.check_slice(int(k)) if s.image.is_volume else 0
        self.pending_corner = None
        self.points = []
        self.vertices = []

    def set_slice_range(self, text: str | None) -> None:
        """``"first,last"`` (or ``"first-last"``) makes the next box a 3D box; empty = 2D boxes."""
        text = (text or "").strip().replace("-", ",").replace(" ", "")
        if not text:
            self.slice_range = None
            return
        s = self.require()
        try:
            lo, hi = sorted(int(v) for v in text.split(","))
        except ValueError:
            raise InputError(f"slice range {text!r} must be two slice numbers: first,last") from None
        self.slice_range = (s.check_slice(lo), s.check_slice(hi))

    def set_window(self, window: str | None) -> bool:
        """Use ``window`` (a preset name; "auto" or empty: the modality's default) for later predictions;
        False, with nothing changed, when it is the window in use. The message names it, and says what it
        warns of (a CT window on an image not in HU). Refused (InputError) once something is segmented."""
        s = self.require()
        new = None if window in (None, "", "auto") else window
        if new == s.window:
            return False
        s.set_window(new)
        self.message = f"window: {window}" + (f"; warning: {s.window_warning}" if s.window_warning else "")
        return True

    @property
    def window_choice(self) -> str:
        """The window in use as the page's window dropdown names it ("auto": the modality's default)."""
        w = self.require().window
        return "auto" if w is None else w if isinstance(w, str) else f"{w[0]:g},{w[1]:g}"

    @property
    def dicom_input(self) -> bool:
        """True for an input a DICOM-SEG (``.dcm``) download can refer to: a DICOM series or a single
        DICOM slice (:func:`medisam.io.write_seg.seg_reference_problem`, the writer's own rule)."""
        from medisam.io.write_seg import seg_reference_problem

        return seg_reference_problem(self.require().image) is None

    # ---------------------------------------------------------------- clicks
    @property
    def view_scale(self) -> int:
        """Integer enlargement of the shown picture (nearest neighbour) so small slices stay clickable:
        of its finer direction where a volume's slice has oblong pixels (:attr:`view_factors`)."""
        if self.session is None:
            return 1
        h, w = self.session.slice_shape
        ax, ay = self._aspect()
        return max(1, -(-MIN_VIEW_SIDE // max(1, round(max(h * ay, w * ax)))))

    @property
    def view_factors(self) -> tuple[float, float]:
        """Enlargement ``(x, y)`` of the shown picture: :attr:`view_scale` times each direction's pixel size
        over the finer one's, so a slice with oblong pixels (a volume sliced across its thick axis) is
        drawn in its true aspect, not squashed; equal (an integer) for square pixels."""
        ax, ay = self._aspect()
        f = self.view_scale
        return f * ax, f * ay

    def _aspect(self) -> tuple[float, float]:
        """The slice's pixel size ``(x, y)`` over its finer direction's (``(1, 1)``: square pixels)."""
        if self.session is None:
            return 1.0, 1.0
        px, py = self.session.pixel_mm
        if not (px > 0 and py > 0) or abs(px - py) <= 1e-3 * max(px, py):
            return 1.0, 1.0
        return px / min(px, py), py / min(px, py)

    def click_view(self, xv: float, yv: float) -> None:
        """A click at pixel (xv, yv) of the rendered (possibly enlarged) picture."""
        h, w = self.require().slice_shape
        fx, fy = self.view_factors
        self.click(float(_source_index(xv, fx, w)), float(_source_index(yv, fy, h)))

    def click(self, x: float, y: float) -> None:
        """A click at pixel (x, y) of the shown slice, interpreted by ``mode``."""
        s = self.require()
        k = self.slice if s.image.is_volume else None
        note = ""  # how the prompt was taken, where the status line should say it
        before = self._drawn()
        if self.mode in SHAPE_MODES:
            self.vertices.append((float(x) + 0.5, float(y) + 0.5))  # pixel centres
            self.message = f"{self.mode}: {len(self.vertices)} vertices; click Finish shape to apply it"
            return
        if self.mode in ("box", "recist"):
            if self.pending_corner is None:
                self.pending_corner = (float(x), float(y))
                what = "box corner" if self.mode == "box" else "RECIST line end"
                rest = "the opposite corner" if self.mode == "box" else "the other end of the lesion's long axis"
                self.message = f"{what} at ({x:.0f}, {y:.0f}); click {rest}"
                return
            (x0, y0), self.pending_corner = self.pending_corner, None
            if self.mode == "box":
                res, note = self._box(s, k, x0, y0, x, y)
            else:
                res = self._recist(s, k, (x0, y0, x, y))
            self.points = []
            self.propagated = False
            self._record("prompt", before)
        elif self.propagated and s.image.is_volume and s.click3d_available:
            self._click3d(s, int(x), int(y), self.mode == "positive")
            return
        elif not s.image.is_volume and s.correctable2d(self.obj_id):
            self._click2d(s, int(x), int(y), self.mode == "positive")
            return
        else:
            label = 1 if self.mode == "positive" else 0
            res = s.add_points(k, self.obj_id, points=[(x, y, label)])
            self.points.append((float(x), float(y), label))
            self._record("prompt", before)
            found = s.found_box(k, self.obj_id)
            if found is not None:  # points alone on a box-trained model: show the box they were answered with
                self.boxes[self.obj_id] = (found, res.slice, res.slice)
                note = f"; answered with the box {','.join(f'{v:.0f}' for v in found)} found around the click"
        where = "frame" if s.image.is_video else "slice"
        self.message = (f"object {res.obj_id} on {where} {res.slice}: {int(res.mask.sum())} pixels "
                        f"(score {res.score:.2f}){note}")

    def _box(self, s: InteractiveSession, k: int | None, x0: float, y0: float, x: float, y: float):  # noqa: ANN202
        """The drawn box, with the slice range a 3D box; ``(result, note)``: the note says how a box
        drawn outside its slice range is taken (a 3D box that bounds every slice of the range)."""
        box = (min(x0, x), min(y0, y), max(x0, x) + 1, max(y0, y) + 1)
        note = ""
        if self.slice_range is not None and s.image.is_volume:
            lo, hi = sorted(self.slice_range)
            drawn = k if k is not None and lo <= k <= hi else None  # the box bounds the object on its own slice
            if drawn is None:
                note = (f"; drawn on slice {k}, outside the slice range {lo}..{hi}: "
                        f"a 3D box bounding every slice of the range")
            res = s.add_box3d(None, self.obj_id, box=box, slice_range=self.slice_range, slice=drawn)
        else:
            res = s.segment(k, self.obj_id, box=box)
            lo = hi = res.slice
        self.boxes[self.obj_id] = (box, lo, hi)  # stays drawn on its slices
        self.lines.pop(self.obj_id, None)
        return res, note

    def _recist(self, s: InteractiveSession, k: int | None, line: tuple[float, float, float, float]):  # noqa: ANN202
        """The two endpoints of a lesion's long axis: the lesion's 3D box (a volume) or its box (2D)."""
        line = tuple(v + 0.5 for v in line)  # pixel centres
        res = s.add_recist(k, line, self.obj_id)
        self.lines[self.obj_id] = (line, self.slice if s.image.is_volume else 0)
        self.boxes.pop(self.obj_id, None)
        return res

    def _click3d(self, s: InteractiveSession, x: int, y: int, positive: bool) -> None:
        """A corrective click on the propagated volume (the object's 3D mask refined around it)."""
        before = self._drawn()
        out = s.add_click(s.voxel_of(self.slice, x, y), positive, self.obj_id)
        sign = "positive" if positive else "negative"
        if out.rejected:
            self.message = (f"click rejected: the model did not honour the {sign} click at ({x}, {y}) on slice "
                            f"{self.slice}; nothing changed")
            return
        self.points.append((float(x), float(y), int(positive)))
        self._record("click3d", before)
        self.message = (f"3D {sign} click on slice {self.slice}: object {self.obj_id} changed on "
                        f"{len(out.changed)} slices ({out.decoded} slices decoded, {out.encoded} encoded)")

    def _click2d(self, s: InteractiveSession, x: int, y: int, positive: bool) -> None:
        """A corrective click on a 2D image's object (its mask refined around it by the random
        walker: LiteMedSAM's point prompts do not correct a box's mask)."""
        before = self._drawn()
        out = s.add_click((0, y, x), positive, self.obj_id)
        sign = "positive" if positive else "negative"
        if out.rejected:
            self.message = (f"click rejected: the refinement did not honour the {sign} click at ({x}, {y}); "
                            "nothing changed")
            return
        self.points.append((float(x), float(y), int(positive)))
        self._record("click2d", before)
        pixels = int((s.labels == self.obj_id).sum())
        self.message = f"{sign} click: object {self.obj_id} refined around ({x}, {y}): {pixels} pixels"

    def finish_shape(self) -> None:
        """Apply the drawn scribble (clicks along it) or lasso (its filled inside as the slice's mask prompt)."""
        s = self.require()
        if self.mode not in SHAPE_MODES or not self.vertices:
            raise InputError("choose scribble+, scribble- or lasso and click the shape's vertices first")
        k = self.slice if s.image.is_volume else None
        before = self._drawn()
        # a scribble on an object with a mask corrects it (the walker); a lasso prompts the model
        corrects = self.mode != "lasso" and s.corrects(self.obj_id)
        if self.mode == "lasso":
            res = s.add_lasso(k, self.vertices, self.obj_id)
        else:
            res = s.add_scribble(k, self.vertices, self.mode == "scribble+", self.obj_id)
        self.vertices = []  # only once applied: a refused shape stays drawn, to extend or redraw
        if corrects:  # on a volume its 3D clicks ran the pending propagation first: undone as a 3D click
            self._record("click3d" if s.image.is_volume else "click2d", before)
            self.propagated = self.propagated or s.image.is_volume
            self.message = (f"{self.mode} on slice {res.slice}: object {res.obj_id} corrected around it "
                            f"({int(res.mask.sum())} pixels on this slice)")
            return
        self.propagated = False
        self._record("prompt", before)
        self.message = (f"{self.mode} on slice {res.slice}: object {res.obj_id} has {int(res.mask.sum())} pixels "
                        f"(score {res.score:.2f})")

    def _record(self, action: str, before: tuple[dict, dict, list, int]) -> None:
        """Keep one undo step (as many as the session keeps: memory stays flat in a long session)."""
        self._actions.append(_Step(action, *before))
        del self._actions[: -self.require().max_undo]

    def _drawn(self) -> tuple[dict, dict, list, int]:
        """Copies of the prompts drawn on the page (boxes, RECIST lines, the shown slice's clicks), kept
        with an undo step."""
        return dict(self.boxes), dict(self.lines), list(self.points), self.slice

    def remove_object(self, obj_id: int) -> None:
        """Erase object ``obj_id`` everywhere, with the box, line and clicks drawn for it (the REST
        ``DELETE /objects/{id}``, which the page had not); one undo step brings it back."""
        s = self.require()
        obj_id = int(obj_id)
        before = self._drawn()
        s.remove_object(obj_id)
        self._record("remove", before)
        self.boxes.pop(obj_id, None)
        self.lines.pop(obj_id, None)
        self.pending_corner, self.vertices = None, []
        if obj_id == self.obj_id:
            self.points = []
        self.message = f"object {obj_id} removed (Undo brings it back)"

    def reset(self) -> None:
        """Erase every object and what was drawn (the REST ``/reset``); one undo step brings them back."""
        s = self.require()
        before = self._drawn()
        s.reset()
        self._record("remove", before)
        self.boxes, self.lines, self.points, self.vertices = {}, {}, [], []
        self.pending_corner = None
        self.message = "every object removed (Undo brings them back)"

    def undo(self) -> None:
        """Take back the session's last step, and the boxes, lines and clicks drawn with it."""
        s = self.require()
        s.take_notices()  # the message says what this undo said (a SAM 2 session drops its propagated slices)
        done = s.undo()
        self.pending_corner = None
        step = self._actions.pop() if done and self._actions else None
        if step is not None:  # the boxes, lines and clicks drawn before the step come back with its masks
            self.boxes, self.lines = step.boxes, step.lines
            self.points = step.points if step.slice == self.slice else []
        action = "prompt" if step is None else step.action
        if action == "click3d" and s.planned_slices() > 0:  # bring slices the click had replaced up to date
            s.propagate()
        elif done and action == "prompt":
            self.propagated = False  # a prompt taken back: the next clicks add points until propagated again
        said = {"click3d": "3D click undone", "click2d": "click undone"}.get(action, "undone")
        self.message = "; ".join([said, *s.take_notices()]) if done else "nothing to undo"

    def propagate(self, progress=None) -> None:  # noqa: ANN001 - callable(done, total)
        """Propagate slice by slice (``progress(done, total)``); :meth:`cancel` stops after the current slice."""
        s = self.require()
        if time.monotonic() - self._cancel_at > CANCEL_GRACE_S:  # a stale click; a recent one was meant
            self.cancel_requested = False                      # for this run, queued behind the click
        unit = "frames" if self.is_video else "slices"
        steps = "frames" if self.is_video else "planes"  # what the plan and the progress bar count
        total = s.planned_slices(self.direction)
        self.plan = s.propagation_plan(self.direction)  # the cost in words, shown with the progress bar
        slices = s.iter_propagate(self.direction)
        try:
            for done, _ in enumerate(slices, start=1):
                if progress is not None:
                    progress(done, total)
                if self.cancel_requested:
                    self.message = f"propagation cancelled after {done} of {total} {steps} (they are kept)"
                    return
        finally:
            slices.close()
            self.cancel_requested = False
        labels = s.label_image().array
        n = int(s.labelled_slices().sum())  # slices along the session's axis
        if n == 0:
            raise InputError("propagation produced an empty mask")
        self.propagated = True
        objs = ", ".join(f"{o}: {int(s.labelled_slices(o).sum())}" for o in s.object_ids)
        self.message = "; ".join([f"propagated: {n} of {s.num_slices} {unit} labelled, {int((labels > 0).sum())} "
                                  f"{'pixels' if self.is_video else 'voxels'} ({unit} per object {objs})",
                                  *s.take_notices(), *self.plan])

    def cancel(self) -> None:
        """Ask a running :meth:`propagate` to stop after its current slice (one that starts within
        :data:`CANCEL_GRACE_S`, e.g. queued behind the click on a busy server, is stopped too)."""
        self.cancel_requested = True
        self._cancel_at = time.monotonic()

    # ---------------------------------------------------------------- output
    def render(self) -> np.ndarray | None:
        """The current slice with its labels, the clicks and the pending box corner (uint8 RGB)."""
        if self.session is None:
            return None
        s = self.session
        k = self.slice if s.image.is_volume else None
        out = np.ascontiguousarray(_enlarge(render_overlay(s.display_slice(k), s.labels_slice(k),
                                                           opacity=self.opacity), *self.view_factors))
        r = max(2, round(max(out.shape[:2]) / 150))
        fx, fy = self.view_factors

        def at(x: float, y: float) -> tuple[int, int]:
            return int((x + 0.5) * fx), int((y + 0.5) * fy)

        width = max(1, r // 2)
        for x, y, label in self.points:  # positive: white with a black ring; negative: black with a white ring
            fill, ring = (PROMPT_LIGHT, PROMPT_DARK) if label else (PROMPT_DARK, PROMPT_LIGHT)
            cv2.circle(out, at(x, y), r + 1, ring, -1)
            cv2.circle(out, at(x, y), r, fill, -1)
        here = self.slice if s.image.is_volume else 0
        for box, lo, hi in self.boxes.values():
            if lo <= here <= hi:
                p0, p1 = at(box[0] - 0.5, box[1] - 0.5), at(box[2] - 0.5, box[3] - 0.5)
                _outlined(lambda colour, w: cv2.rectangle(out, p0, p1, colour, w), width)
        for (x0, y0, x1, y1), k in self.lines.values():
            if k == here:
                q0, q1 = at(x0 - 0.5, y0 - 0.5), at(x1 - 0.5, y1 - 0.5)
                _outlined(lambda colour, w: cv2.line(out, q0, q1, colour, w), width)
        if self.vertices:
            pts = np.array([at(x - 0.5, y - 0.5) for x, y in self.vertices], np.int32).reshape(-1, 1, 2)
            _outlined(lambda colour, w: cv2.polylines(out, [pts], self.mode == "lasso", colour, w), width,
                      negative=self.mode == "scribble-")
        if self.pending_corner is not None:
            corner = at(*self.pending_corner)
            _outlined(lambda colour, w: cv2.drawMarker(out, corner, colour, cv2.MARKER_CROSS, 4 * r, w), width)
        return out

    def render_file(self) -> str | None:
        """:meth:`render` as a PNG file of its own (the picture the web UI shows).

        Each render gets a new name, written under a temporary name and renamed into place:
        Gradio copies a file into its cache atomically, whereas for an array it rewrites one
        content-named file in place, which a browser still loading that same picture (a quick
        wheel scroll back and forth) receives truncated. Only the last two renders are kept.
        """
        out = self.render()
        if out is None:
            return None
        self._renders += 1
        path = self._workdir / f"view-{self._renders}.png"
        tmp = path.with_name(f".{path.name}.tmp.png")
        if not cv2.imwrite(str(tmp), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
            raise InputError("could not write the picture for the viewer")
        os.replace(tmp, path)
        (self._workdir / f"view-{self._renders - 2}.png").unlink(missing_ok=True)
        return str(path)

    def mask_extension(self) -> str:
        """The mask format matching the input: PNG for pictures, DICOM-SEG for DICOM series, ..."""
        s = self.require()
        if s.image.is_video:
            return ".zip"  # PNG label frames, zipped
        fmt = str(s.image.source.get("format", "")).lower()
        if self.dicom_input:
            return ".dcm"
        return MASK_EXTENSION.get(self.input_ext) or MASK_EXTENSION.get(fmt) or (
            ".nii.gz" if s.image.is_volume else ".png")

    def export(self, extension: str | None = None) -> Path:
        """Write the label map next to nothing the user owns: a fresh file in the app's temp folder."""
        s = self.require()
        ext = extension or self.mask_extension()
        if s.image.is_video:
            app_video.check_mask_format(ext)
        elif ext == ".zip":
            raise InputError(".zip (PNG label frames) is for videos; pick another format")
        if not s.object_ids:
            raise InputError("nothing segmented yet: draw a box or click an object first")
        stem = self._stem()
        if s.image.is_video:
            return app_video.export_masks(s.image, s.label_image(), stem, ext, self._workdir)
        out_dir = Path(tempfile.mkdtemp(dir=self._workdir))
        path = out_dir / f"{stem}_mask{ext}"
        write_mask(s.label_image(), path, reference=s.image)
        return path

    def export_overlay(self) -> Path:
        """The overlay video (objects in their colours, the input's frame rate) as a fresh MP4."""
        s = self.require()
        if not s.image.is_video:
            raise InputError("the overlay video is for videos; download the mask instead")
        return app_video.export_overlay(s.image, s.label_image(), self._stem(), self._workdir)

    def _stem(self) -> str:
        return Path(self.input_name).name.split(".")[0] or "image"

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)
