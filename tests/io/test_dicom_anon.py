"""DICOM-SEG output from anonymised series (blanked or deleted attributes): a valid SEG or one line."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from medisam.errors import InputError
from medisam.io import read_image, write_mask
from tests.dicom_factory import anonymise, copy_series

pytest.importorskip("highdicom")


def _dciodvfy_errors(path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed")
    res = subprocess.run([exe, str(path)], capture_output=True, text=True)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture()
def real_series(data_dir, tmp_path):
    """A copy of the real 3-slice dcmqi CT series (the original is never edited)."""
    return copy_series(data_dir / "dcmqi_ct3slice_seg" / "series", tmp_path / "series")


def _liver_mask(data_dir, img):
    labels = read_image(data_dir / "dcmqi_ct3slice_seg" / "labelsTr" / "ct3slice.nii.gz").array
    return (labels == 1).astype(np.uint8)


@pytest.mark.parametrize("blank,delete", [
    (("SOPClassUID",), ()),
    (("SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID", "StudyDate", "AccessionNumber",
      "SliceThickness", "Modality", "SeriesNumber"), ()),
    ((), ("SOPClassUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "StudyID", "AccessionNumber", "ReferringPhysicianName", "SliceThickness")),
], ids=["empty-sop-class", "many-blank", "many-deleted"])
def test_anonymised_series_gives_valid_seg(data_dir, real_series, tmp_path, blank, delete):
    """The SEG references what the series carries, passes dciodvfy and reads back at the right positions."""
    hd = pytest.importorskip("highdicom")
    anonymise(real_series, blank=blank, delete=delete)
    img = read_image(real_series[0].parent)
    mask = _liver_mask(data_dir, img)
    out = write_mask(mask, tmp_path / "seg.dcm", reference=img, segments={1: "liver"})
    assert _dciodvfy_errors(out) == []
    ref = pydicom.dcmread(data_dir / "dcmqi_ct3slice_seg" / "seg" / "liver.dcm")
    ds = pydicom.dcmread(out)
    # the same source instances as the reference SEG made by dcmqi, with the CT Image Storage class
    refd = {i.ReferencedSOPInstanceUID for i in ref.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    ours = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert {i.ReferencedSOPInstanceUID for i in ours} == refd
    assert {i.ReferencedSOPClassUID for i in ours} == {pydicom.uid.CTImageStorage}
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ref.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert ds.StudyInstanceUID == ref.StudyInstanceUID and ds.FrameOfReferenceUID == ref.FrameOfReferenceUID

    def positions(d):
        return sorted(tuple(round(float(v), 3) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                      for f in d.PerFrameFunctionalGroupsSequence)
    assert positions(ds) == positions(ref)  # 3 liver frames at the reference SEG's positions
    # frames decode back onto the source instances exactly as written
    uids = [pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
            for f in img.source["dicom_files"]]
    back = hd.seg.segread(out).get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(back, mask)
    # and agree with dcmqi's liver SEG (labelsTr was resampled from dcmqi's NRRD: Dice 0.997, not 1)
    ref_back = hd.seg.segread(data_dir / "dcmqi_ct3slice_seg" / "seg" / "liver.dcm").get_pixels_by_source_instance(
        uids, combine_segments=True, ignore_spatial_locations=True)
    dice = 2 * np.logical_and(back > 0, ref_back > 0).sum() / ((back > 0).sum() + (ref_back > 0).sum())
    assert dice > 0.99


@pytest.mark.parametrize("keyword,how", [
    ("SOPClassUID", "blank+meta"), ("StudyInstanceUID", "blank"), ("SeriesInstanceUID", "delete"),
    ("FrameOfReferenceUID", "blank"), ("ImagePositionPatient", "delete"), ("ImageOrientationPatient", "blank"),
    ("PixelSpacing", "delete"),
])
def test_unrecoverable_attribute_is_one_line(real_series, tmp_path, keyword, how):
    """An attribute the SEG cannot be written without: one line that names it and offers NIfTI."""
    anonymise(real_series, blank=(keyword,) if how.startswith("blank") else (),
              delete=(keyword,) if how == "delete" else (), file_meta=how.endswith("meta"))
    img = read_image(real_series[0].parent)
    with pytest.raises(InputError) as err:
        write_mask(np.ones(img.spatial_shape, np.uint8), tmp_path / "seg.dcm", reference=img)
    msg = str(err.value)
    assert keyword in msg and ".nii.gz" in msg and "\n" not in msg
    assert not (tmp_path / "seg.dcm").exists() and not list(tmp_path.glob(".medisam-tmp*"))


@pytest.mark.parametrize("command", [
    ["segment", "--slice", "1", "--box", "150,150,350,350"],
    ["propagate", "--box3d", "150,150,0,350,350,2", "--views", "1", "--no-progress"],
])
def test_cli_on_anonymised_series(real_series, tmp_path, command, capsys):
    """`medisam segment|propagate SERIES ... -o mask.dcm` on an empty-SOP-Class series: a valid SEG."""
    from medisam.cli import main

    anonymise(real_series, blank=("SOPClassUID",))
    out = tmp_path / "mask.dcm"
    code = main([command[0], str(real_series[0].parent), *command[1:], "-o", str(out), "--model", "litemedsam-tiny",
                 "--device", "cpu", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    assert _dciodvfy_errors(out) == []
    ds = pydicom.dcmread(out)
    assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPClassUID == \
        pydicom.uid.CTImageStorage


def test_cli_unrecoverable_is_exit_2(real_series, tmp_path, capsys):
    """No traceback: one `error:` line naming the attribute, exit 2, no output file."""
    from medisam.cli import main

    anonymise(real_series, blank=("SOPClassUID",), file_meta=True)
    out = tmp_path / "mask.dcm"
    code = main(["segment", str(real_series[0].parent), "--slice", "1", "--box", "150,150,350,350", "-o", str(out),
                 "--model", "litemedsam-tiny", "--device", "cpu", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "SOPClassUID" in errors[0] and "Traceback" not in "".join(err)
    assert not out.exists()
