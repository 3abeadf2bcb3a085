"""The web UI browses a volume along its acquisition axis, as ``medisam propagate --box3d`` slices it: a
volume stored with its thick axis last (spacing (1, 1, 5) zyx) shows its (Z, Y) planes, the slider
runs along axis 2, clicks and 3D clicks land on that axis's voxels, and a slice with oblong pixels
(the same volume opened along axis 0) is drawn in its true aspect."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from test_session_axis import BOX, SPACING_XYZ, slices_last  # noqa: E402

from medisam.io import read_image  # noqa: E402
from medisam.predict import open_session  # noqa: E402


def _nifti(tmp_path: Path) -> Path:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(slices_last())
    img.SetSpacing(SPACING_XYZ)
    path = tmp_path / "sag.nii.gz"
    sitk.WriteImage(img, str(path))
    return path


def test_the_slider_runs_along_the_acquisition_axis_and_clicks_are_its_voxels(state, tiny_model, tmp_path):
    path = _nifti(tmp_path)
    state.open(path)
    s = state.session
    assert (s.axis, s.num_slices, state.slice) == (2, 10, 5)
    assert state.message.endswith("10 slices along axis 2 (i)")
    f = state.view_scale  # square pixels: one integer factor
    assert state.view_factors == (f, f) and state.render().shape == (40 * f, 36 * f, 3)
    ref = open_session(tiny_model, read_image(path), axis=2)
    state.mode = "box"
    state.click_view(BOX[0] * f, BOX[1] * f)
    state.click_view((BOX[2] - 1) * f, (BOX[3] - 1) * f)
    expected = ref.add_box(5, BOX, 1).mask
    assert np.array_equal(s.labels_slice(5), expected) and np.array_equal(s.labels[:, :, 5], expected)
    state.propagate()
    ref.propagate()
    truth = ref.label_map().array
    assert np.array_equal(s.labels, truth)
    assert state.message.startswith(f"propagated: {int(truth.any(axis=(0, 1)).sum())} of 10 slices labelled")
    state.set_slice(6)
    state.mode = "negative"
    state.click_view(18 * f + 1, 20 * f + 1)  # pixel (x=18, y=20) of slice 6 = voxel (z=20, y=18, x=6)
    ref.add_click((20, 18, 6), False, 1)
    assert np.array_equal(s.labels, ref.label_map().array)
    with pytest.raises(Exception, match="slice 10 out of range 0..9 along axis 2"):
        state.set_slice(10)


def test_a_slice_with_oblong_pixels_is_drawn_in_its_true_aspect(state, tmp_path):
    """Opened along axis 0, the slices-last volume's (Y, X) planes have 1 x 5 mm pixels: the picture is
    5 times as wide per pixel as high, and a click maps back to the pixel under it."""
    state.open(_nifti(tmp_path), axis="k")
    s = state.session
    assert (s.axis, s.num_slices, s.slice_shape, s.pixel_mm) == (0, 40, (36, 10), (5.0, 1.0))
    fx, fy = state.view_factors
    assert fx == 5 * fy and state.render().shape == (round(36 * fy), round(10 * fx), 3)
    state.mode = "positive"
    state.click_view(7 * fx + 0.5 * fx, 30 * fy + 0.2 * fy)
    assert state.points == [(7.0, 30.0, 1)]


def test_the_pages_slider_is_as_long_as_the_acquisition_axis(tiny_model, tmp_path):
    """The slider's range came from array axis 0 (40 slices of squashed 1 x 5 mm planes)."""
    pytest.importorskip("gradio")
    from medisam.app import build_ui

    demo = build_ui(tiny_model)
    on_open = next(b.fn for b in demo.fns.values() if getattr(b.fn, "__name__", "") == "on_open")
    st, view, slider = on_open(None, str(_nifti(tmp_path)), "auto")[:3]
    try:
        assert (slider["maximum"], slider["value"], slider["label"]) == (9, 5, "slice along axis 2 (i)")
        assert isinstance(view, str) and view.endswith(".png")
    finally:
        st.close()
