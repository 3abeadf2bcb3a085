"""Web UI logic: 3D box from a box plus a slice range, the drawn box, cancel, format choice, error lines."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_data import ct_volume  # noqa: E402

from medisam.app import AppState  # noqa: E402
from medisam.errors import InputError  # noqa: E402


@pytest.fixture()
def vol_state(tiny_model, tmp_path):
    import SimpleITK as sitk

    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume((8, 48, 48))), str(path))
    st = AppState(tiny_model)
    st.open(path)
    yield st
    st.close()


def test_box_with_slice_range_is_a_3d_box_and_stays_drawn(vol_state, tiny_model):
    from medisam.predict import VolumeSession

    st = vol_state
    st.set_slice_range("5, 2")
    assert st.slice_range == (2, 5)
    before = st.render().copy()
    st.click(12, 12)
    st.click(35, 35)
    assert st.boxes[1] == ((12.0, 12.0, 36.0, 36.0), 2, 5)
    drawn = st.render()
    assert (np.abs(drawn.astype(int) - before.astype(int)).sum(-1) > 0).any()
    st.propagate()
    ref = VolumeSession(tiny_model, st.session.image)
    ref.add_box3d((12, 12, 2, 35, 35, 5), drawn_on=st.slice)  # the box bounds the object on its own slice
    assert np.array_equal(st.session.labels, ref.propagate(progress=False).array)
    st.set_slice(7)  # outside the range: no box drawn
    assert st.slice == 7
    out = st.export(".nrrd")
    assert out.name.endswith(".nrrd")


def test_box_drawn_outside_its_slice_range_says_it_bounds_every_slice(vol_state, tiny_model):
    from medisam.predict import VolumeSession

    st = vol_state
    st.set_slice_range("2,5")
    st.set_slice(7)
    st.click(12, 12)
    st.click(35, 35)
    assert "drawn on slice 7, outside the slice range 2..5: a 3D box bounding every slice" in st.message
    st.propagate()
    ref = VolumeSession(tiny_model, st.session.image)
    ref.add_box3d((12, 12, 2, 35, 35, 5))  # no drawn slice: the box bounds every slice of the range
    assert np.array_equal(st.session.labels, ref.propagate(progress=False).array)
    st.set_slice(3)
    st.click(12, 12)
    st.click(35, 35)
    assert "outside the slice range" not in st.message


def test_cancel_stops_propagation_after_the_current_slice(vol_state):
    st = vol_state
    st.click(10, 10)
    st.click(38, 38)
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if done == 1:
            st.cancel()

    st.propagate(progress=progress)
    assert len(seen) == 1 and seen[0][1] > 1
    assert "cancelled after 1 of" in st.message and not st.cancel_requested


def test_cancel_clicked_just_before_the_run_starts_stops_it_a_stale_one_does_not(vol_state, monkeypatch):
    # on a busy server the Cancel click may be handled before the Propagate it was meant for starts
    from medisam.app import state as app_state

    st = vol_state
    st.click(10, 10)
    st.click(38, 38)
    st.cancel()
    st.propagate()
    assert "cancelled after 1 of" in st.message and not st.cancel_requested
    st.cancel()
    clock = app_state.time.monotonic() + app_state.CANCEL_GRACE_S + 1  # a click long before the run
    monkeypatch.setattr(app_state.time, "monotonic", lambda: clock)
    st.propagate()
    assert st.message.startswith("propagated: ") and not st.cancel_requested


@pytest.mark.parametrize("text", ["a,b", "1", "0,99"])
def test_bad_slice_range_is_one_line(vol_state, text):
    with pytest.raises(InputError):
        vol_state.set_slice_range(text)


def test_error_line_hides_internals(tmp_path):
    import tempfile

    from medisam.app.ui import error_line

    assert error_line(InputError(f"cannot read {tempfile.gettempdir()}/gradio/abc/x.nii: bad\nmore")) \
        == "error: cannot read x.nii: bad"
    assert error_line(RuntimeError("secret /opt/internal")) == "error: unexpected RuntimeError (the server log has the details)"
