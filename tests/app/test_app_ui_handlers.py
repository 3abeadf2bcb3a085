"""The web UI's Gradio handlers called directly (no browser): the window dropdown after a refused
change, a CT window's warning on an image not in HU, the "opened ..." status line, the download
formats offered for the input, the slider's echo after opening (nothing redrawn) and what a box on a
volume's slice costs (one encoding, one decoder pass, one picture)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_data import ct_volume, disk, png_bytes, write_ct_series, zip_bytes  # noqa: E402

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def demo(tiny_model):
    from medisam.app import build_ui

    return build_ui(tiny_model)


def _handler(demo, name: str) -> Callable[..., Any]:
    """The event function of the handler ``name``, itself or the ``guarded`` wrapper around it."""
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if getattr(fn, "__name__", "") == name:
            return fn
        if any(getattr(cell.cell_contents, "__name__", "") == name for cell in fn.__closure__ or ()):
            return fn
    raise LookupError(name)


def _volume(tmp_path: Path) -> Path:
    import SimpleITK as sitk

    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume((8, 48, 48))), str(path))
    return path


def test_a_refused_window_change_puts_the_dropdown_back(demo, tmp_path):
    """The dropdown kept showing the refused window while the picture and the model kept the old one."""
    on_open, on_window = _handler(demo, "on_open"), _handler(demo, "on_window")
    st = on_open(None, str(_volume(tmp_path)), "auto")[0]
    st.session.segment(4, 1, box=(12, 12, 36, 36))
    st2, view, status, dropdown = on_window(st, "lung")
    assert status == "error: change the window before prompting a volume (or undo/reset first)"
    assert dropdown == {"__type__": "update", "value": "auto"} and st2.session.window is None
    assert view == {"__type__": "update"}  # the picture stays as it is
    # the dropdown's put-back value fires its change event again: nothing changes, the error line stays
    assert on_window(st, "auto")[1:] == ({"__type__": "update"}, status, {"__type__": "update"})
    st.undo()
    _, view, status, dropdown = on_window(st, "abdomen")
    assert status == "window: abdomen" and st.session.window == "abdomen" and dropdown == {"__type__": "update"}
    assert isinstance(view, str) and view.endswith(".png")


def test_a_ct_window_on_an_image_not_in_hu_is_warned_of_in_the_status_line(demo, tmp_path):
    """The CLI warned; the web UI applied the window silently (a blank or white picture, no word why)."""
    on_open, on_window = _handler(demo, "on_open"), _handler(demo, "on_window")
    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(disk()))  # 8-bit values 30 .. 200, no modality: not in HU
    out = on_open(None, str(png), "lung")
    st, status = out[0], out[5]
    assert status.startswith("opened image in.png: shape (96, 96), modality OT; warning: window lung is a CT "
                             "window in Hounsfield units (-1350 .. 150), but the image (values 30 .. 200) is not in "
                             "HU: it is clipped there as asked"), status
    assert "warning: window bone is a CT window" in on_window(st, "bone")[2]
    assert on_window(st, "auto")[2] == "window: auto"
    ct = on_open(None, str(_volume(tmp_path)), "lung")  # a CT in HU: nothing to warn of
    assert "warning" not in ct[5] and ct[0].session.window == "lung"


def test_opening_a_volume_keeps_the_opened_line_and_offers_dcm_for_dicom_only(demo, tmp_path):
    """The slider set by the upload fired on_slice at once: "slice 4 of 8" replaced the "opened ..."
    line. And ``.dcm`` was offered for every input, an error for all but a DICOM series."""
    on_open, on_slice = _handler(demo, "on_open"), _handler(demo, "on_slice")
    out = on_open(None, str(_volume(tmp_path)), "auto", ".dcm")
    st, slider, opened, formats = out[0], out[2], out[5], out[6]
    assert opened.startswith("opened volume ct.nii.gz: shape (8, 48, 48)")
    assert on_slice(st, slider["value"])[2] == opened  # the slider's echo of the shown slice
    assert on_slice(st, 2)[2] == "slice 2 of 8"
    assert ".dcm" not in formats["choices"] and formats["value"] == "auto"
    assert {"auto", ".nii.gz", ".nrrd"} <= set(formats["choices"]) and ".png" not in formats["choices"]
    files = write_ct_series(tmp_path / "s", ct_volume())
    zipped = tmp_path / "series.zip"
    zipped.write_bytes(zip_bytes({f"dir/{p.name}": p.read_bytes() for p in files}))
    formats = on_open(None, str(zipped), "auto", ".dcm")[6]
    assert ".dcm" in formats["choices"] and formats["value"] == ".dcm"
    assert on_open(None, None, "auto")[5:] == ("no file", {"__type__": "update"})


def test_an_object_or_every_object_is_removed_from_the_page_and_undo_brings_them_back(demo, tmp_path):
    """REST had DELETE /objects/{id} and /reset; the page had only Undo, back past every later step."""
    import numpy as np

    on_open, on_remove, on_reset = (_handler(demo, n) for n in ("on_open", "on_remove", "on_reset"))
    st = on_open(None, str(_volume(tmp_path)), "auto")[0]
    st.session.segment(4, 1, box=(6, 6, 20, 20))
    st.session.segment(4, 2, box=(26, 26, 42, 42))
    st.boxes[2] = ((26, 26, 42, 42), 4, 4)
    labels = st.session.labels.copy()
    assert {1, 2} <= set(np.unique(labels))
    st, view, status = on_remove(st, 2)
    assert status == "object 2 removed (Undo brings it back)" and 2 not in st.session.labels and 2 not in st.boxes
    assert st.session.object_ids == [1] and isinstance(view, str)
    st.undo()
    assert np.array_equal(st.session.labels, labels) and 2 in st.boxes  # its drawn box comes back too
    st, _, status = on_reset(st)
    assert status == "every object removed (Undo brings them back)" and not st.session.labels.any()
    st.undo()
    assert np.array_equal(st.session.labels, labels)
    _, _, status = on_remove(st, 7)
    assert status.startswith("error: no object 7")


def test_every_download_format_offered_writes_and_prompt_marks_have_no_object_colour(demo, tmp_path):
    """``.zip`` (PNG label frames) was offered for images and volumes and ``.png`` for volumes: both
    failed on choice. And the marks were drawn in object colours: a positive click in object 2's green,
    a box in object 3's yellow."""
    import numpy as np

    from medisam.io.overlay import PALETTE
    from tests.video_clips import BOX1, write_two_disks

    on_open = _handler(demo, "on_open")
    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(disk()))
    (tmp_path / "clip").mkdir()
    clip, _ = write_two_disks(tmp_path / "clip", "mp4")
    inputs = {"image": (png, (20, 22, 75, 74)), "volume": (_volume(tmp_path), (12, 12, 36, 36)), "video": (clip, BOX1)}
    for kind, (path, box) in inputs.items():
        out = on_open(None, str(path), "auto", "auto")
        st, offered = out[0], out[6]["choices"]
        assert (".zip" in offered) == (kind == "video") and (".png" in offered) == (kind == "image"), offered
        st.session.segment(st.slice, 1, box=box)
        for ext in offered:
            written = st.export(None if ext == "auto" else ext)
            assert written.is_file() and written.stat().st_size > 0, (kind, ext)
        plain = st.render().copy()
        st.points = [(30.0, 30.0, 1), (40.0, 40.0, 0)]
        st.boxes = {2: (box, st.slice, st.slice)}
        marked = st.render()
        changed = np.any(marked != plain, axis=-1)
        assert changed.any()
        marks = marked[changed].astype(np.float32)
        assert np.all(marks.max(axis=1) - marks.min(axis=1) == 0), kind  # white, black and greys only
        assert not any(np.all(marks == colour, axis=1).any() for colour in PALETTE), kind


def test_the_sliders_echo_after_opening_a_volume_redraws_nothing(demo, tmp_path):
    """Opening a volume sets the slider to the slice shown; its change event rendered that slice again: a
    second PNG, the picture swapped under the user's first click, and one more legend event."""
    on_open, on_slice = _handler(demo, "on_open"), _handler(demo, "on_slice")
    out = on_open(None, str(_volume(tmp_path)), "auto")
    st, slider, opened = out[0], out[2], out[5]
    renders = st._renders
    assert on_slice(st, slider["value"])[1:] == ({"__type__": "update"}, opened)
    assert st._renders == renders  # nothing drawn again
    _, view, status = on_slice(st, 2)
    assert isinstance(view, str) and view.endswith(".png") and status == "slice 2 of 8"
    assert st._renders == renders + 1
    assert on_slice(None, 3) == (None, {"__type__": "update"}, "")


def test_a_box_on_a_volume_slice_costs_one_encoding_one_decode_and_one_picture(demo, tiny_model, tmp_path,
                                                                              monkeypatch):
    """Between the box's second corner and its mask on the page: the shown slice encoded once, one
    decoder pass, one picture of one slice; nothing propagated, no other slice or view encoded."""
    from types import SimpleNamespace

    on_open, on_click = _handler(demo, "on_open"), _handler(demo, "on_click")
    st = on_open(None, str(_volume(tmp_path)), "auto")[0]
    calls = {"encoded images": 0, "decodes": 0}

    def counted(name: str, key: str, per_call: Callable[[Any], int]) -> None:
        original = getattr(tiny_model, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            calls[key] += per_call(args)
            return original(*args, **kwargs)
        monkeypatch.setattr(tiny_model, name, run)

    counted("encode", "encoded images", lambda args: int(args[0].shape[0]))
    counted("decode", "decodes", lambda args: 1)
    factor, renders = st.view_scale, st._renders
    st, _, status = on_click(st, "box", 1, SimpleNamespace(index=[12 * factor, 12 * factor]))
    assert "corner" in status and calls == {"encoded images": 0, "decodes": 0}
    st, view, status = on_click(st, "box", 1, SimpleNamespace(index=[36 * factor, 36 * factor]))
    assert status.startswith("object 1 on slice 4:"), status
    assert calls == {"encoded images": 1, "decodes": 1}
    vs = st.session.volume
    assert vs.encoded_slices == {4} and vs.visited_planes == {(0, 4)}
    assert isinstance(view, str) and st._renders == renders + 2  # the corner's picture, then the mask's
    labelled = np.flatnonzero(st.session.labels.reshape(8, -1).any(axis=1))
    assert set(labelled) <= {4}  # the mask on its slice only: propagation waits for its button
