"""Sam2Session along any array axis (``axis=``, as VolumeSession's): its frames are the volume's slices
along that axis, prompts are in those planes' pixels, 3D boxes, 3D clicks and the label map in the
volume's own ``(Z, Y, X)``; ``medisam propagate --box3d`` tracks a SAM 2 model along the acquisition axis."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.cli import main
from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage
from medisam.predict.factory import open_session
from medisam.predict.refine3d import slice_click
from medisam.predict.sam2_session import Sam2Session
from medisam.prompts import Box3D

SHAPE = (7, 18, 22)  # (Z, Y, X): every axis a different length, so a wrong mapping cannot fit


def _blob() -> np.ndarray:
    """A bright ellipsoid off the centre of a noisy ``SHAPE`` volume."""
    zz, yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    inside = ((zz - 3) / 2.5) ** 2 + ((yy - 8) / 5.0) ** 2 + ((xx - 12) / 6.0) ** 2 <= 1
    return (inside * 200.0 + np.random.default_rng(3).normal(0, 5, SHAPE)).astype(np.float32)


def _image(array: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0)) -> MedicalImage:
    return MedicalImage(array, tuple(reversed(spacing_zyx)), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), modality="MR")


def _moved_box(b: Box3D, axis: int) -> Box3D:
    """``b`` in the voxel indices of ``np.moveaxis(volume, axis, 0)``."""
    lo, hi = (b.z0, b.y0, b.x0), (b.z1, b.y1, b.x1)
    order = [axis, *(a for a in range(3) if a != axis)]  # the moved array's (z, y, x) in the volume's axes
    z, y, x = order
    return Box3D(lo[x], lo[y], lo[z], hi[x], hi[y], hi[z])


@pytest.mark.parametrize("axis", [1, 2])
def test_an_axis_session_is_an_axis_0_session_on_the_moved_volume(sam2_tiny, axis):
    """Same planes, same prompts -> the same results per frame, and the label map in (Z, Y, X)."""
    volume = _blob()
    session = Sam2Session(sam2_tiny, _image(volume), axis=axis)
    moved = Sam2Session(sam2_tiny, _image(np.ascontiguousarray(np.moveaxis(volume, axis, 0))), axis=0)
    assert session.axis == axis and session.num_slices == SHAPE[axis]
    assert session.plane_hw == moved.plane_hw == tuple(n for a, n in enumerate(SHAPE) if a != axis)
    assert session.geometry.shape_zyx == SHAPE
    t = SHAPE[axis] // 2
    h, w = session.plane_hw
    box = (1, 1, w - 2, h - 2)
    for s in (session, moved):
        s.add_box(t, box, obj_id=2)
    labels = session.propagate(progress=False).array
    want = moved.propagate(progress=False).array
    assert labels.shape == SHAPE and labels.any()
    assert np.array_equal(labels, np.moveaxis(want, 0, axis))
    results, expected = session.results(2), moved.results(2)
    assert results.keys() == expected.keys() == set(range(SHAPE[axis]))
    assert all(np.array_equal(results[k].mask, expected[k].mask) and results[k].axis == axis for k in results)
    session.add_box(0, (0, 0, 3, 3), obj_id=5)  # undo gives the label map back in (Z, Y, X)
    session.undo()
    assert session.object_ids == [2] and np.array_equal(session.label_map().array, labels)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_box3d_along_any_axis_stays_inside_the_box_in_zyx(sam2_tiny, axis):
    volume = _blob()
    b = Box3D(7, 4, 1, 17, 12, 5)  # x0, y0, z0, x1, y1, z1
    session = Sam2Session(sam2_tiny, _image(volume), axis=axis)
    seed = session.add_box3d(b, obj_id=1)
    lo, hi = (b.z0, b.y0, b.x0)[axis], (b.z1, b.y1, b.x1)[axis]
    assert (seed.slice, seed.axis, seed.mask.shape) == (lo + (hi - lo) // 2, axis, session.plane_hw)
    labels = session.propagate(progress=False).array
    inside = np.zeros(SHAPE, bool)
    inside[b.slices] = True
    assert labels.shape == SHAPE and labels.any() and not labels[~inside].any()
    assert set(session.results(1)) <= set(range(lo, hi + 1))
    moved = Sam2Session(sam2_tiny, _image(np.ascontiguousarray(np.moveaxis(volume, axis, 0))))
    moved.add_box3d(_moved_box(b, axis), obj_id=1)
    assert np.array_equal(labels, np.moveaxis(moved.propagate(progress=False).array, 0, axis))


def test_a_3d_click_on_an_axis_1_session_lands_on_frame_y(sam2_tiny):
    session = Sam2Session(sam2_tiny, _image(_blob()), axis=1)
    z, y, x = 3, 8, 12
    outcome = slice_click(session, (z, y, x), positive=True, obj_id=1)
    assert (outcome.slice, outcome.point) == (y, (x, z, 1))  # frame y; the plane's columns x, rows z
    if not outcome.rejected:
        assert np.array_equal(session.slice_prompts(y, 1).points.coords[0], (x, z))
        assert session.label_map().array[z, y, x] == 1


def test_a_drawn_on_box_is_prompted_where_drawn_on_k_and_mid_range_on_other_axes(sam2_tiny):
    b = Box3D(7, 4, 1, 17, 12, 5)
    assert Sam2Session(sam2_tiny, _image(_blob()), axis=0).add_box3d(b, drawn_on=2).slice == 2
    assert Sam2Session(sam2_tiny, _image(_blob()), axis=2).add_box3d(b, drawn_on=2).slice == 12


@pytest.mark.parametrize("axis", [3, -1, "w", 1.5])
def test_an_axis_outside_0_to_2_is_a_one_line_input_error(sam2_tiny, axis):
    for make in (lambda: Sam2Session(sam2_tiny, _image(_blob()), axis=axis),
                 lambda: open_session(sam2_tiny, _image(_blob()), axis=axis)):
        with pytest.raises(InputError) as err:
            make()
        assert "axis must be 0, 1, 2" in str(err.value) and "\n" not in str(err.value)


def test_videos_and_2d_images_are_tracked_along_axis_0_only(sam2_tiny, moving_disk):
    frames, _ = moving_disk
    video = MedicalImage(frames, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), is_video=True)
    with pytest.raises(InputError, match="a video is tracked along its frames"):
        Sam2Session(sam2_tiny, video, axis=1)
    with pytest.raises(InputError, match="a 2D image is tracked along its frames"):
        Sam2Session(sam2_tiny, MedicalImage.from_array(frames[0]), axis="i")
    assert Sam2Session(sam2_tiny, video, axis="k").axis == 0


def test_open_session_passes_the_axis_and_refuses_what_sam2_does_not_take(sam2_tiny):
    session = open_session(sam2_tiny, _image(_blob()), axis="i", window=None, predictor=None)
    assert isinstance(session, Sam2Session) and session.axis == 2 and session.num_slices == SHAPE[2]
    with pytest.raises(InputError, match="session takes no config, guides"):
        open_session(sam2_tiny, _image(_blob()), config=None, guides=())


def _nifti(path, spacing_zyx) -> str:
    img = sitk.GetImageFromArray(_blob())
    img.SetSpacing(tuple(reversed(spacing_zyx)))
    sitk.WriteImage(img, str(path))
    return str(path)


SAM2 = ["--model", "sam2-tiny", "--device", "cpu", "--no-progress"]


def test_propagate_box3d_tracks_a_sagittal_volume_along_its_acquisition_axis(sam2_tiny, tmp_path, capsys):
    """Spacing (1, 1, 5) zyx: the acquired slices are along i (axis 2), as LiteMedSAM's --box3d default;
    tracked along k they were (Y, X) planes with 1 x 5 mm pixels."""
    b = Box3D(7, 4, 1, 17, 12, 5)
    box = ["--box3d", f"{b.x0},{b.y0},{b.z0},{b.x1},{b.y1},{b.z1}"]
    out = tmp_path / "sag.nii.gz"
    assert main(["propagate", _nifti(tmp_path / "v.nii.gz", (1.0, 1.0, 5.0)), *box, "-o", str(out)] + SAM2) == 0
    assert "over 6 + 6 frame(s)" in capsys.readouterr().err  # x 7..17 from 12; along k it was z 1..5 from 3: 3 + 3
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    session = Sam2Session(sam2_tiny, _image(_blob(), (1.0, 1.0, 5.0)), axis=2)
    session.add_box3d(b)
    assert labels.shape == SHAPE and np.array_equal(labels, session.propagate(progress=False).array)
    axial = tmp_path / "ax.nii.gz"
    assert main(["propagate", _nifti(tmp_path / "a.nii.gz", (5.0, 1.0, 1.0)), *box, "-o", str(axial)] + SAM2) == 0
    assert "over 3 + 3 frame(s)" in capsys.readouterr().err  # an axial volume stays along k


def test_propagate_takes_axis_for_sam2(tmp_path, capsys, sam2_tiny):
    """--axis j with a slice box: frame 8 along j, the box in its (Z, X) plane (refused before)."""
    out = tmp_path / "j.nii.gz"
    assert main(["propagate", _nifti(tmp_path / "v.nii.gz", (1.0, 1.0, 1.0)), "--axis", "j", "--slice", "8",
                 "--box", "6,1,18,6", "-o", str(out)] + SAM2) == 0
    assert "over 10 + 9 frame(s)" in capsys.readouterr().err  # j 8..17 and 8..0
    session = Sam2Session(sam2_tiny, _image(_blob()), axis=1)
    session.add_box(8, (6, 1, 18, 6))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.array_equal(labels, session.propagate(progress=False).array)
