"""Multi-frame DICOM files that are no enhanced 3D volume: legacy multi-frame files (one position and a
rule for the frames, or none) and 4D enhanced files (several frames per position)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medisam.errors import InputError
from medisam.io import read_image
from tests.dicom_factory import write_ct_series, write_enhanced_ct, write_legacy_multiframe

CENTRE = np.array([-4.0, -15.0, 58.0])  # the ball's centre (mm, LPS)
FIRST = (-10.0, -20.0, 50.0)  # ImagePositionPatient of frame 1
PIXEL = (0.8, 0.75)  # PixelSpacing: row spacing (y), column spacing (x)
NM, RT_DOSE = "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.481.2"


def _ball(offsets: list[float], radius: float = 5.0) -> np.ndarray:
    """(frames, 16, 16) HU: a 200 HU ball at CENTRE in -1000 HU, frame f at FIRST + offsets[f] along z."""
    z = np.asarray(FIRST[2]) + np.asarray(offsets, float)
    y = FIRST[1] + PIXEL[0] * np.arange(16)
    x = FIRST[0] + PIXEL[1] * np.arange(16)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    inside = (xx - CENTRE[0]) ** 2 + (yy - CENTRE[1]) ** 2 + (zz - CENTRE[2]) ** 2 <= radius ** 2
    return np.where(inside, 200.0, -1000.0)


def _ball_centre(img) -> np.ndarray:  # noqa: ANN001 - a MedicalImage
    """Physical centre (mm) of the voxels above 0 HU, from the image's own geometry."""
    kji = np.argwhere(np.asarray(img.array) > 0).mean(axis=0)
    ijk = kji[::-1] * np.asarray(img.spacing)
    return np.asarray(img.origin) + np.asarray(img.direction).reshape(3, 3) @ ijk


GEOMETRY = {"ImagePositionPatient": list(FIRST), "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
            "PixelSpacing": list(PIXEL)}
STEPS = [2.0 * k for k in range(9)]


def _detectors() -> dict:
    det = Dataset()
    det.ImagePositionPatient, det.ImageOrientationPatient = list(FIRST), [1, 0, 0, 0, 1, 0]
    return {"DetectorInformationSequence": Sequence([det]), "PixelSpacing": list(PIXEL)}


PLACED = {  # name: (offsets of the frames, header attributes, SOP class, modality, what placed them)
    "RT dose, relative offsets": (STEPS, {**GEOMETRY, "GridFrameOffsetVector": STEPS,
                                          "FrameIncrementPointer": 0x3004000C}, RT_DOSE, "RTDOSE", "GridFrameOffset"),
    "RT dose, absolute offsets": (STEPS, {**GEOMETRY, "GridFrameOffsetVector": [FIRST[2] + s for s in STEPS]},
                                  RT_DOSE, "RTDOSE", "GridFrameOffset"),
    "RT dose, head first": ([-s + 16 for s in STEPS], {**GEOMETRY, "ImagePositionPatient": [*FIRST[:2], 66.0],
                                                       "GridFrameOffsetVector": [-s for s in STEPS]},
                            RT_DOSE, "RTDOSE", "GridFrameOffset"),
    "CT converter": (STEPS, {**GEOMETRY, "SpacingBetweenSlices": 2.0, "SliceThickness": 3.0},
                     "1.2.840.10008.5.1.4.1.1.2", "CT", "SpacingBetweenSlices"),
    "MR, negative spacing": ([-s + 16 for s in STEPS], {**GEOMETRY, "ImagePositionPatient": [*FIRST[:2], 66.0],
                                                        "SpacingBetweenSlices": -2.0},
                             "1.2.840.10008.5.1.4.1.1.4", "MR", "SpacingBetweenSlices"),
    "NM tomography": (STEPS, {**_detectors(), "SpacingBetweenSlices": 2.0, "FrameIncrementPointer": 0x00540080,
                              "SliceVector": list(range(1, 10))}, NM, "NM", "SpacingBetweenSlices"),
}


@pytest.mark.parametrize("name", PLACED)
def test_legacy_frames_are_placed_from_their_rule(tmp_path, name):
    offsets, attributes, sop_class, modality, placed_by = PLACED[name]
    path = write_legacy_multiframe(tmp_path / "legacy.dcm", _ball(offsets), sop_class=sop_class, modality=modality,
                                   **attributes)
    img = read_image(path)
    assert img.geometry_warnings == ()
    np.testing.assert_allclose(img.spacing, (0.75, 0.8, 2.0), atol=1e-6)
    np.testing.assert_allclose(_ball_centre(img), CENTRE, atol=0.05)
    np.testing.assert_allclose(img.direction, np.eye(3).ravel(), atol=1e-9)  # frames ascending, as a series'
    assert placed_by in img.source["frame_geometry"]  # and `medisam info` says so


def test_uneven_grid_frame_offsets_are_a_gap(tmp_path):
    """GDCM spaces RT dose frames by the first step; a missing plane must not shift the ones after it."""
    offsets = [0.0, 2.0, 4.0, 8.0, 10.0, 12.0, 14.0, 16.0]
    path = write_legacy_multiframe(tmp_path / "dose.dcm", _ball(offsets), sop_class=RT_DOSE, modality="RTDOSE",
                                   GridFrameOffsetVector=offsets, **GEOMETRY)
    img = read_image(path)
    assert len(img.geometry_warnings) == 1
    assert img.geometry_warnings[0].startswith("gap in slice positions: 4 mm between frame 3 and frame 4")


@pytest.mark.parametrize("attributes,assumed", [
    ({**GEOMETRY, "SliceThickness": 2.0}, "the slice spacing (2 mm, its SliceThickness) is assumed, not known"),
    ({}, "the slice spacing (1 mm, GDCM's default) and its position and orientation (no ImagePositionPatient/"
         "ImageOrientationPatient) are assumed, not known"),
])
def test_legacy_frames_without_a_rule_say_the_spacing_is_assumed(tmp_path, attributes, assumed):
    path = write_legacy_multiframe(tmp_path / "sc.dcm", _ball(STEPS), sop_class="1.2.840.10008.5.1.4.1.1.7.3",
                                   modality="OT", **attributes)
    img = read_image(path)
    assert img.array.shape == (9, 16, 16)
    assert img.geometry_warnings == (
        "legacy multi-frame file (9 frames) without per-frame positions, GridFrameOffsetVector or "
        f"SpacingBetweenSlices: {assumed}; distances and volumes across slices may be wrong",)
    assert img.spacing[2] == (2.0 if attributes else 1.0)


UNPLACED = {  # name: (header attributes, what the warning says is missing and assumed, origin, spacing rule)
    "spacing, no plane": ({"PixelSpacing": list(PIXEL), "SpacingBetweenSlices": 2.0},
                          "no ImagePositionPatient/ImageOrientationPatient", "the origin and identity axes",
                          (0.0, 0.0, 0.0), "SpacingBetweenSlices (0018,0088)"),
    "RT dose offsets, no plane": ({"PixelSpacing": list(PIXEL), "GridFrameOffsetVector": STEPS},
                                  "no ImagePositionPatient/ImageOrientationPatient", "the origin and identity axes",
                                  (0.0, 0.0, 0.0), "GridFrameOffsetVector (3004,000C)"),
    "spacing and orientation, no position": ({"PixelSpacing": list(PIXEL), "SpacingBetweenSlices": 2.0,
                                              "ImageOrientationPatient": [1, 0, 0, 0, 1, 0]},
                                             "no ImagePositionPatient", "the origin", (0.0, 0.0, 0.0),
                                             "SpacingBetweenSlices (0018,0088)"),
    "spacing and position, no orientation": ({"PixelSpacing": list(PIXEL), "SpacingBetweenSlices": 2.0,
                                              "ImagePositionPatient": list(FIRST)},
                                             "no ImageOrientationPatient", "identity axes", FIRST,
                                             "SpacingBetweenSlices (0018,0088)"),
}


@pytest.mark.parametrize("name", UNPLACED)
def test_known_spacing_without_a_plane_says_where_the_volume_lies_is_unknown(tmp_path, name):
    """The slice spacing is kept; that the position and orientation are assumed is a geometry warning."""
    attributes, missing, assumed, origin, rule = UNPLACED[name]
    path = write_legacy_multiframe(tmp_path / "mf.dcm", _ball(STEPS), sop_class="1.2.840.10008.5.1.4.1.1.7.3",
                                   modality="OT", **attributes)
    img = read_image(path)
    assert img.geometry_warnings == (
        f"legacy multi-frame file (9 frames) with {missing}: its slice spacing (2 mm, {rule}) is known, but its "
        f"position and orientation in the patient are not ({assumed} assumed); a mask or dose grid placed in "
        "patient space from it, or a distance to another series, would be wrong",)
    np.testing.assert_allclose(img.spacing, (0.75, 0.8, 2.0), atol=1e-6)  # the known spacing, not GDCM's 1 mm
    np.testing.assert_allclose(img.origin, origin, atol=1e-9)
    np.testing.assert_allclose(img.direction, np.eye(3).ravel(), atol=1e-9)
    assert img.source["frame_geometry"] == f"{rule}; {missing}: {assumed} assumed"


def test_unplaced_volume_is_shown_by_info_and_refused_by_segment(tmp_path, capsys):
    from medisam.cli import main

    path = write_legacy_multiframe(tmp_path / "mf.dcm", _ball(STEPS), PixelSpacing=list(PIXEL),
                                   SpacingBetweenSlices=2.0)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "spacing (x,y[,z]) mm  0.75, 0.8, 2" in out
    assert ("warning               legacy multi-frame file (9 frames) with no ImagePositionPatient/"
            "ImageOrientationPatient: its slice spacing (2 mm, SpacingBetweenSlices (0018,0088)) is known") in out
    mask = tmp_path / "mask.nii.gz"
    code = main(["segment", str(path), "--slice", "4", "--box", "1,1,8,6", "-o", str(mask),
                 "--model", "litemedsam-tiny", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not mask.exists() and len(err) == 1
    assert "position and orientation in the patient are not" in err[0] and "--allow-gaps" in err[0]


def test_one_frame_without_a_plane_is_no_warning(tmp_path):
    """A 2D image without ImagePositionPatient (a secondary capture) stays as usable as a PNG."""
    path = write_legacy_multiframe(tmp_path / "sc.dcm", _ball([0.0]), sop_class="1.2.840.10008.5.1.4.1.1.7",
                                   modality="OT", PixelSpacing=list(PIXEL))
    img = read_image(path)
    assert img.array.shape == (16, 16) and img.geometry_warnings == ()


def _dose(path, stored: np.ndarray, rescale: tuple[float, float] | None = None, **attributes: object):
    """An RT Dose file of ``stored`` (frames, Y, X) values, DoseGridScaling 0.001 Gy, no rescale unless given
    (one frame: no GridFrameOffsetVector, which GDCM cannot read with one frame)."""
    offsets = {"GridFrameOffsetVector": STEPS[:len(stored)]} if len(stored) > 1 else {}
    write_legacy_multiframe(path, stored.astype(float), sop_class=RT_DOSE, modality="RTDOSE", intercept=0.0,
                            **{**GEOMETRY, **offsets, "DoseGridScaling": 0.001, "DoseUnits": "GY",
                               "DoseType": "PHYSICAL", **attributes})
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept  # the RT Dose IOD has none
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("frames,rescale", [
    (3, None), (1, None),  # a multi-frame and a single-frame RT Dose file
    (3, (1.0, 0.0)),  # an identity rescale beside the scaling
    (3, (0.001, 0.0)),  # the scaling copied into RescaleSlope for other viewers: applied once, not twice
])
def test_rt_dose_reads_as_gray(tmp_path, frames, rescale):
    stored = np.full((frames, 4, 5), 2500)
    stored[0, 0, 0] = 10
    img = read_image(_dose(tmp_path / "dose.dcm", stored, rescale))
    assert img.array.dtype == np.float32
    np.testing.assert_allclose(img.array.reshape(stored.shape), stored * 0.001, rtol=1e-6)
    assert img.array.ravel()[1] == pytest.approx(2.5)
    assert img.source["dose"] == {"grid_scaling": 0.001, "units": "Gy"}


def test_rt_dose_rescale_beside_the_scaling_is_left_out(tmp_path, caplog):
    """Dose is the stored value x DoseGridScaling (PS3.3 C.8.8.3), whatever else the header says."""
    img = read_image(_dose(tmp_path / "dose.dcm", np.full((3, 4, 5), 2500), rescale=(2.0, 5.0)))
    np.testing.assert_allclose(img.array, 2.5, rtol=1e-6)
    assert "RescaleSlope 2 and RescaleIntercept 5 beside DoseGridScaling 0.001" in caplog.text


def test_rt_dose_padding_is_found_in_stored_values(tmp_path):
    stored = np.full((3, 4, 5), 2500)
    stored[:, 0, :] = -1  # outside the dose grid
    img = read_image(_dose(tmp_path / "dose.dcm", stored, PixelPaddingValue=-1))
    assert img.source["pixel_padding"] == {"stored": [-1, -1], "voxels": 15, "set_to": pytest.approx(2.5)}
    np.testing.assert_allclose(img.array, 2.5, rtol=1e-6)


def test_series_of_dose_slices_scales_each_file(tmp_path):
    """A folder of single-frame files: each file's own DoseGridScaling, in slice order."""
    _, files = write_ct_series(tmp_path / "dose", np.full((3, 4, 5), 1000.0), intercept=0.0)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.DoseGridScaling, ds.DoseUnits = 0.001 * (k + 1), "GY"
        ds.save_as(f, enforce_file_format=True)
    img = read_image(tmp_path / "dose")
    np.testing.assert_allclose(img.array[:, 0, 0], [1.0, 2.0, 3.0], rtol=1e-6)
    assert img.source["dose"] == {"grid_scaling": [0.001, 0.002, 0.003], "units": "Gy"}


def test_nm_frames_of_two_detectors_are_no_volume(tmp_path):
    path = write_legacy_multiframe(tmp_path / "nm.dcm", _ball(STEPS[:4]), sop_class=NM, modality="NM",
                                   **_detectors(), FrameIncrementPointer=[0x00540020], DetectorVector=[1, 2, 1, 2])
    (line,) = read_image(path).geometry_warnings
    assert line.startswith("legacy multi-frame file (4 frames) whose frames step through DetectorVector (2 values), "
                           "not only through slice positions: the slice spacing (1 mm, GDCM's default) is assumed")


def test_assumed_spacing_is_shown_by_info_and_refused_by_segment(tmp_path, capsys):
    from medisam.cli import main

    path = write_legacy_multiframe(tmp_path / "mf.dcm", _ball(STEPS), **GEOMETRY, SliceThickness=2.0)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "frame placement       assumed: 2 mm apart (its SliceThickness)" in out
    assert "warning               legacy multi-frame file (9 frames) without per-frame positions" in out
    mask = tmp_path / "mask.nii.gz"
    code = main(["segment", str(path), "--slice", "4", "--box", "1,1,8,6", "-o", str(mask),
                 "--model", "litemedsam-tiny", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not mask.exists() and len(err) == 1
    assert err[0].startswith("error: legacy multi-frame file (9 frames)") and "--allow-gaps" in err[0]


def _four_d(tmp_path, groups: list[dict], index: tuple[str, ...] = ()) -> str:
    """Message for an Enhanced CT of len(groups) frames, 3 positions repeated, frame f with ``groups[f]``."""
    n = len(groups)
    positions = [(0.0, 0.0, 50.0 + 2.5 * (f % 3)) for f in range(n)]
    path = write_enhanced_ct(tmp_path / "4d.dcm", np.zeros((n, 4, 5)), positions, frame_groups=groups,
                             dimension_index=index)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_dynamic_file_says_it_is_4d(tmp_path):
    groups = [{"FrameContentSequence": {"TemporalPositionIndex": f // 3 + 1}} for f in range(12)]
    message = _four_d(tmp_path, groups, ("InStackPositionNumber", "TemporalPositionIndex"))
    assert message.endswith(
        "4d.dcm: 12 frames at 3 positions (4 per position): a 4D file (4 temporal positions (TemporalPositionIndex, "
        "in its dimension index)), not one volume; medisam segments one 3D volume: convert it with dcm2niix "
        "(dcm2niix -o OUTDIR FILE writes a 4D NIfTI, or one NIfTI per echo or stack) and read one volume of a 4D "
        "NIfTI with --channel 0..3 (channel= in Python)")


def test_diffusion_file_names_its_b_values(tmp_path):
    groups = [{"MRDiffusionSequence": {"DiffusionBValue": (0, 1000)[f // 3]}} for f in range(6)]
    assert "6 frames at 3 positions (2 per position): a 4D file (2 b-values (DiffusionBValue))" in _four_d(
        tmp_path, groups)


def test_dimension_index_values_name_the_fourth_dimension(tmp_path):
    groups = [{"FrameContentSequence": {"DimensionIndexValues": [f % 3 + 1, f // 3 + 1]}} for f in range(6)]
    message = _four_d(tmp_path, groups, ("InStackPositionNumber", "EffectiveEchoTime"))
    assert "a 4D file (2 echo times (EffectiveEchoTime, in its dimension index))" in message
    assert "--channel 0..1" in message


def test_series_headers_are_read_once(tmp_path, monkeypatch):
    """Geometry and Pixel Padding come from one header read per slice file."""
    _, files = write_ct_series(tmp_path / "ct", np.full((4, 8, 10), -1000.0))
    for f in files:
        ds = pydicom.dcmread(f)
        ds.add_new(0x00280120, "SS", -2000)
        ds.save_as(f)
    reads: list[str] = []
    real = pydicom.dcmread

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if kwargs.get("specific_tags"):
            reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting)
    img = read_image(tmp_path / "ct")
    assert img.array.shape == (4, 8, 10)
    assert sorted(reads) == sorted(str(f) for f in files)
