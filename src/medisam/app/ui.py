"""The Gradio layout of ``medisam app``; every handler calls :class:`~medisam.app.state.AppState`."""

# no `from __future__ import annotations`: gradio reads the gr.SelectData hint at runtime

import logging
import tempfile
from typing import Any, Callable

from medisam.app.state import MODES, AppState
from medisam.app.video import VIDEO_DIRECTIONS, VIDEO_MASK_FORMATS
from medisam.app.viewer import DEFAULT_OPACITY, VIEW_HTML, VIEW_JS, legend_html
from medisam.errors import MedisamError, first_line, require
from medisam.io import WINDOW_PRESETS
from medisam.models.promptable import PromptableModel
from medisam.serve.app import scrub_paths

log = logging.getLogger(__name__)

HELP = ("Box mode: click two opposite corners. Positive/negative: click to add or remove. "
        "Volumes: move the slider (slices along the volume's acquisition axis, drawn in their true aspect), "
        "prompt a slice, then Propagate. A slice range (first,last) makes the "
        "next box a 3D box on those slices (as `medisam propagate --box3d`). RECIST: click both ends of a "
        "lesion's long axis (its 3D box follows), then Propagate. After propagation a positive/negative click "
        "on any slice corrects the 3D result; Undo takes it back. Scribble+/-: click along a line, lasso: "
        "click around a region, then Finish shape. Videos: box each object on the frame where it appears "
        "(a new object id each), Propagate, then download the masks and the overlay video.")
#: Progress display of quick events that output the picture: Gradio's default overlay covers the
#: picture while such an event is pending and swallows a click made then (seen after a mode switch).
QUICK = "hidden"
#: Download choices: "auto" = the format matching the input (DICOM-SEG for a DICOM series).
DOWNLOAD_CHOICES = ("auto", ".nii.gz", ".nrrd", ".mha", ".png", ".npz", ".dcm", ".zip")


def download_choices(st: AppState) -> list[str]:
    """The download formats the open input can be written as, so none offered fails on choice:
    a video's masks as :data:`~medisam.app.video.VIDEO_MASK_FORMATS` (``.zip`` = PNG label frames,
    for videos only), ``.png`` for a 2D image only, ``.dcm`` (DICOM-SEG) for a DICOM input only."""
    if st is not None and st.is_video:
        return ["auto", *VIDEO_MASK_FORMATS]
    is_volume = st is not None and st.session is not None and st.session.image.is_volume
    dicom = st is not None and st.dicom_input
    refused = {".zip", *((".png",) if is_volume else ()), *(() if dicom else (".dcm",))}
    return [c for c in DOWNLOAD_CHOICES if c not in refused]


def error_line(exc: BaseException) -> str:
    """One line for the status box; unexpected errors are logged, without their internals shown."""
    if isinstance(exc, MedisamError):
        return f"error: {scrub_paths(first_line(exc), tempfile.gettempdir())}"
    log.exception("unexpected error in the app")
    return f"error: unexpected {type(exc).__name__} (the server log has the details)"


def build_ui(model: PromptableModel, max_voxels: int | None = 1 << 27):  # noqa: ANN201 - gr.Blocks
    """Build the Blocks app (not launched) on top of ``model``."""
    gr = require("gradio", "app")

    def guarded(fn: Callable[..., Any], redraw: bool = True) -> Callable[..., Any]:
        """Show MedisamErrors in the status box instead of a red popup, keep the view.

        ``redraw=False`` for handlers that do not change the picture: the shown image is left
        as it is (no reload the user could click into half-way).
        """
        def run(st: AppState | None, *args: Any):  # noqa: ANN202
            try:
                st = fn(st, *args) or st
            except Exception as exc:  # every failure becomes one line in the status box
                if st is not None:
                    st.message = error_line(exc)
                else:
                    return st, None, error_line(exc)
            view_out = (st.render_file() if st else None) if redraw else gr.update()
            return st, view_out, (st.message if st else "")
        return run

    def on_open(st: AppState | None, path: str | None, window: str, chosen: str = "auto") -> tuple:
        if not path:
            return st, gr.update(), gr.update(), gr.update(), gr.update(), "no file", gr.update()
        st = st or AppState(model, max_voxels)
        try:
            st.open(path, None if window == "auto" else window)
        except Exception as exc:  # noqa: BLE001 - shown as one line
            return st, None, gr.update(), gr.update(), gr.update(), error_line(exc), gr.update()
        s = st.session
        n = s.num_slices
        along = f"slice along axis {s.axis} ({'kji'[s.axis]})"  # the session's axis: the acquisition axis
        slider = gr.update(minimum=0, maximum=max(n - 1, 1), value=st.slice, visible=s.image.is_volume,
                           interactive=s.image.is_volume, label="frame" if st.is_video else along)
        video_only = gr.update(visible=st.is_video)
        offered = download_choices(st)
        formats = gr.update(choices=offered, value=chosen if chosen in offered else "auto")
        return st, st.render_file(), slider, gr.update(visible=st.is_video, value=st.direction), video_only, \
            st.message, formats

    def show_slice(st: AppState, k: int) -> None:
        st.set_slice(k)
        st.message = f"{'frame' if st.is_video else 'slice'} {st.slice} of {st.session.num_slices}"

    guarded_slice = guarded(show_slice)

    def on_slice(st: AppState | None, k: float | None) -> tuple:
        """Show slice ``k``. Opening a volume moves the slider to the slice already shown: that echo
        keeps the "opened ..." line (shape, modality, a window's warning) and the picture as they are
        (a redraw was a second render, a picture swapped under the user's first click, and a legend event)."""
        if st is None or st.session is None or k is None or int(k) == st.slice:
            return st, gr.update(), (st.message if st is not None else "")
        return guarded_slice(st, int(k))

    def on_direction(st: AppState, direction: str) -> None:
        if st is not None and st.is_video:
            st.set_direction(direction)
            st.message = f"video tracking: {direction}"

    def on_guide(st: AppState, path: str | None) -> None:
        if path:
            st.add_guide(path)

    def on_window(st: AppState | None, window: str) -> tuple:
        """A refused change (something is segmented) puts the dropdown back on the window in use,
        which the picture and the model keep; the status line says why, or what a new window warns of."""
        if st is None or st.session is None:
            return st, gr.update(), gr.update(), gr.update()
        try:
            changed = st.set_window(window)
        except Exception as exc:  # noqa: BLE001 - shown as one line
            st.message = error_line(exc)
            return st, gr.update(), st.message, gr.update(value=st.window_choice)
        return st, st.render_file() if changed else gr.update(), st.message, gr.update()

    def on_mode(st: AppState | None, mode: str, obj: float) -> tuple:
        # the picture is redrawn only to take away a half-drawn box corner or line: a reload
        # right after a mode switch would swallow the next click on the picture
        if st is None:
            return st, gr.update(), gr.update()
        st.obj_id = int(obj or 1)
        # a click queued before this event may have switched the mode already: its corner stays
        pending = st.mode != mode and (st.pending_corner is not None or bool(st.vertices))
        if st.mode != mode:
            st.mode, st.pending_corner, st.vertices = mode, None, []
        return st, st.render_file() if pending else gr.update(), st.message

    def click(st: AppState, mode: str, obj: float, x: float | None, y: float | None) -> None:
        if st is None:
            raise MedisamError("open an image first")
        if x is None or y is None:
            raise MedisamError("a click needs its position on the picture")
        st.mode, st.obj_id = mode, int(obj or 1)
        st.click_view(x, y)  # event coordinates are pixels of the shown (maybe enlarged) picture

    guarded_click = guarded(click)

    def on_click(st: AppState, mode: str, obj: float, evt: gr.SelectData) -> tuple:
        # gradio injects ``evt`` by this type hint, so this handler is not wrapped; an API call
        # without click data gets the one-line error of every other handler
        index = getattr(evt, "index", None)
        if not isinstance(index, (list, tuple)) or len(index) < 2:
            return guarded_click(st, mode, obj, None, None)
        return guarded_click(st, mode, obj, float(index[0]), float(index[1]))

    def on_range(st: AppState, text: str) -> None:
        if st is None or st.session is None:
            if (text or "").strip():
                raise MedisamError("open a volume first")
            return
        st.set_slice_range(text)
        st.message = (f"next box: a 3D box on slices {st.slice_range[0]}..{st.slice_range[1]}"
                      if st.slice_range else "next box: a 2D box on the shown slice")

    def on_cancel(st: AppState) -> None:
        if st is not None:
            st.cancel()
            st.message = "cancelling: propagation stops after the current slice"

    def on_finish(st: AppState) -> None:
        if st is None:
            raise MedisamError("open an image first")
        st.finish_shape()

    def on_undo(st: AppState) -> None:
        if st is not None:
            st.undo()

    def on_remove(st: AppState, obj: float) -> None:
        if st is None or st.session is None:
            raise MedisamError("open an image first")
        st.remove_object(int(obj))

    def on_reset(st: AppState) -> None:
        if st is None or st.session is None:
            raise MedisamError("open an image first")
        st.reset()

    def on_propagate(st: AppState, progress=gr.Progress()) -> None:  # noqa: ANN001, B008
        if st is None:
            raise MedisamError("open a volume first")
        unit = "frames" if st.is_video else "planes"  # as the plan counts them
        st.propagate(progress=lambda done, total: progress((done, max(total, done)), unit=unit,
                                                           desc="; ".join(st.plan) or None))

    def on_opacity(st: AppState, obj: float, value: float) -> None:
        if st is None or st.session is None:
            return
        st.opacity[int(obj or 1)] = float(value)
        st.message = f"object {int(obj or 1)}: opacity {round(100 * float(value))}%"

    def on_object(st: AppState | None, obj: float):  # noqa: ANN202 - the opacity slider of that object
        return gr.update(value=(st.opacity if st else {}).get(int(obj or 1), DEFAULT_OPACITY))

    def legend(st: AppState | None) -> str:
        if st is None or st.session is None:
            return legend_html([], {})
        return legend_html(st.session.object_ids, st.opacity)

    def on_download(st: AppState | None, fmt: str) -> tuple:
        if st is None or st.session is None:
            return None, "error: open an image first"
        try:
            path = st.export(None if fmt in (None, "", "auto") else fmt)
        except Exception as exc:  # noqa: BLE001 - shown as one line
            return None, error_line(exc)
        return str(path), f"mask saved as {path.name}"

    def on_download_video(st: AppState | None) -> tuple:
        if st is None or st.session is None:
            return None, "error: open a video first"
        try:
            path = st.export_overlay()
        except Exception as exc:  # noqa: BLE001 - shown as one line
            return None, error_line(exc)
        return str(path), f"overlay video saved as {path.name} ({st.session.image.source.get('fps') or 25:.3g} fps)"

    with gr.Blocks(title="medisam") as demo:
        gr.Markdown("## medisam: Segment Anything for medical images\n" + HELP)
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.File(label="image, volume, video (MP4/AVI, DICOM cine), DICOM or zipped DICOM series",
                                 type="filepath",
                                 elem_id="medisam-upload")
                window = gr.Dropdown(["auto", *WINDOW_PRESETS], value="auto", label="window (CT preset)",
                                     elem_id="medisam-window")
                mode = gr.Radio(list(MODES), value="box", label="click mode", elem_id="medisam-mode")
                obj = gr.Number(1, precision=0, minimum=1, maximum=65535, label="object id (label value)",
                                elem_id="medisam-obj")
                srange = gr.Textbox("", label="slice range for a 3D box (first,last; empty = 2D box)",
                                    placeholder="e.g. 3,7", elem_id="medisam-range")
                direction = gr.Radio(list(VIDEO_DIRECTIONS), value="forward", visible=False,
                                     label="video: track forward (objects start where boxed) or both ways",
                                     elem_id="medisam-direction")
                with gr.Row():
                    undo = gr.Button("Undo", elem_id="medisam-undo")
                    propagate = gr.Button("Propagate", elem_id="medisam-propagate")
                    cancel = gr.Button("Cancel", elem_id="medisam-cancel")
                finish = gr.Button("Finish shape (scribble / lasso)", elem_id="medisam-finish")
                with gr.Row():
                    remove = gr.Button("Remove object (the id above)", elem_id="medisam-remove")
                    reset = gr.Button("Remove all", elem_id="medisam-reset")
                opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="opacity of the object id above",
                                    elem_id="medisam-opacity")
                gr.Markdown("**objects**")
                legend_box = gr.HTML(legend_html([], {}), elem_id="medisam-legend")
                fmt = gr.Dropdown(list(DOWNLOAD_CHOICES), value="auto", label="download format",
                                  elem_id="medisam-format")
                download = gr.Button("Download mask", variant="primary", elem_id="medisam-download")
                out_file = gr.File(label="mask file", interactive=False, elem_id="medisam-mask")
                with gr.Group(visible=False) as video_box:
                    download_video = gr.Button("Download overlay video", elem_id="medisam-download-video")
                    video_file = gr.File(label=f"overlay video (masks: {', '.join(VIDEO_MASK_FORMATS)})",
                                         interactive=False, elem_id="medisam-overlay")
                # last in the column: the controls above keep their places
                guide = gr.File(label="optional: another channel of the volume for 3D clicks (e.g. T1c, same grid)",
                                type="filepath", elem_id="medisam-guide")
            with gr.Column(scale=3):
                view = gr.Image(type="filepath", format="png", interactive=False, label="click to prompt", height=560,
                                elem_id="medisam-view", buttons=[])
                slider = gr.Slider(0, 1, value=0, step=1, label="slice / frame", visible=False,
                                   elem_id="medisam-slice")
                gr.HTML(VIEW_HTML, js_on_load=VIEW_JS, elem_id="medisam-viewctl")
                status = gr.Textbox(label="status", interactive=False, elem_id="medisam-status")
        upload.change(on_open, [state, upload, window, fmt], [state, view, slider, direction, video_box, status, fmt])
        slider.change(on_slice, [state, slider], [state, view, status])  # drag, arrows or typed value
        window.change(on_window, [state, window], [state, view, status, window])  # a put-back value: a no-op
        guide.change(guarded(on_guide, redraw=False), [state, guide], [state, view, status])
        mode.change(on_mode, [state, mode, obj], [state, view, status], show_progress=QUICK)
        view.select(on_click, [state, mode, obj], [state, view, status])
        undo.click(guarded(on_undo), [state], [state, view, status])
        remove.click(guarded(on_remove), [state, obj], [state, view, status])
        reset.click(guarded(on_reset), [state], [state, view, status])
        finish.click(guarded(on_finish), [state], [state, view, status])
        srange.change(guarded(on_range, redraw=False), [state, srange], [state, view, status], show_progress=QUICK)
        propagate.click(guarded(on_propagate), [state], [state, view, status])
        cancel.click(guarded(on_cancel), [state], [state, view, status], concurrency_limit=None, queue=False)
        download.click(on_download, [state, fmt], [out_file, status])
        download_video.click(on_download_video, [state], [video_file, status])
        direction.input(guarded(on_direction, redraw=False), [state, direction], [state, view, status],
                        show_progress=QUICK)
        opacity.change(guarded(on_opacity), [state, obj, opacity], [state, view, status], show_progress=QUICK)
        obj.change(on_object, [state, obj], [opacity])
        view.change(legend, [state], [legend_box])
    return demo
