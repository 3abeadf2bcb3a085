"""DICOM series reading, series selection, DICOM-SEG output, and the real dcmqi series."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from medisam.errors import InputError
from medisam.io import list_dicom_series, read_image, write_mask


def test_series_sorted_and_hu(ct_series, ct_hu):
    folder, uid, files = ct_series
    img = read_image(folder)
    assert img.array.shape == (4, 6, 8)
    np.testing.assert_array_equal(img.array, ct_hu)  # sorted by position, slope/intercept applied
    assert img.modality == "CT"
    assert img.source["format"] == "dicom" and img.source["series_uid"] == uid
    assert img.source["dicom_files"] == [str(f) for f in files]
    np.testing.assert_allclose(img.spacing, (0.75, 0.8, 2.5))
    np.testing.assert_allclose(img.origin, (-100.0, -120.0, 50.0))


def test_rescale_slope(tmp_path, ct_hu, make_series):
    hu = (ct_hu // 2) * 2  # representable with slope 2
    make_series(tmp_path / "s", hu, slope=2.0, intercept=-1000.0)
    np.testing.assert_allclose(read_image(tmp_path / "s").array, hu)


def test_single_file_is_2d(ct_series, ct_hu):
    _, _, files = ct_series
    img = read_image(files[2])
    assert img.array.shape == (6, 8) and not img.is_volume
    np.testing.assert_array_equal(img.array, ct_hu[2])


def test_two_series_listed_and_selected(tmp_path, ct_hu, make_series):
    uid_a, _ = make_series(tmp_path / "a", ct_hu, description="first")
    uid_b, _ = make_series(tmp_path / "b", ct_hu[:3] + 5, description="second")
    with pytest.raises(InputError) as err:
        read_image(tmp_path)
    msg = str(err.value)
    assert uid_a in msg and uid_b in msg and "first" in msg and "3 slices" in msg and "\n" not in msg
    assert {s.uid for s in list_dicom_series(tmp_path)} == {uid_a, uid_b}
    img = read_image(tmp_path, series_uid=uid_b)
    assert img.array.shape == (3, 6, 8)
    np.testing.assert_array_equal(img.array, ct_hu[:3] + 5)
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path, series_uid="1.2.3")


def test_dicom_seg_roundtrip(ct_series, tmp_path):
    hd = pytest.importorskip("highdicom")
    folder, uid, files = ct_series
    img = read_image(folder)
    labels = np.zeros(img.array.shape, np.uint8)
    labels[1:3, 2:4, 3:6] = 1
    labels[3, 0:2, 0:2] = 4
    out = write_mask(labels, tmp_path / "out" / "seg.dcm", reference=img, segments={1: "tumour"})
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["tumour", "label 4"]
    assert int(ds.NumberOfFrames) == 3  # 2 slices of label 1 + 1 slice of label 4 (empty frames omitted)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert (int(ds.Rows), int(ds.Columns)) == (6, 8)
    np.testing.assert_allclose([float(v) for v in ds.SharedFunctionalGroupsSequence[0]
                                .PixelMeasuresSequence[0].PixelSpacing], (0.8, 0.75))
    seg = hd.seg.segread(out)
    z_positions = sorted(float(f.PlanePositionSequence[0].ImagePositionPatient[2])
                         for f in ds.PerFrameFunctionalGroupsSequence)
    assert z_positions == [52.5, 55.0, 57.5]
    # decode back onto the source slices and compare with the mask we wrote
    sop_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    back = seg.get_pixels_by_source_instance(sop_uids, combine_segments=True, relabel=False,
                                             skip_overlap_checks=True)
    np.testing.assert_array_equal(back, np.where(labels == 4, 2, labels))  # segment numbers 1..N


def test_dicom_seg_needs_dicom_series(ct_series, tmp_path):
    _, _, files = ct_series
    img2d = read_image(files[0])  # one slice: a one-frame SEG (tests/io/test_dicom_single_slice.py)
    assert int(pydicom.dcmread(write_mask(np.ones((6, 8), np.uint8), tmp_path / "a.dcm",
                                          reference=img2d)).NumberOfFrames) == 1
    with pytest.raises(InputError, match="read from DICOM"):
        write_mask(np.ones((2, 3, 4), np.uint8), tmp_path / "b.dcm")
    vol = read_image(ct_series[0])
    with pytest.raises(InputError, match="empty"):
        write_mask(np.zeros(vol.array.shape, np.uint8), tmp_path / "c.dcm", reference=vol)


def test_seg_and_non_dicom_files_ignored(ct_series, data_dir):
    folder, uid, _ = ct_series
    shutil.copy(data_dir / "dcmqi_ct3slice_seg" / "seg" / "liver.dcm", folder / "zz_seg.dcm")
    (folder / "notes.txt").write_text("not dicom")
    assert [s.uid for s in list_dicom_series(folder)] == [uid]
    with pytest.raises(InputError, match="not an image"):
        read_image(folder / "zz_seg.dcm")


def test_real_dcmqi_series(data_dir, tmp_path):
    base = data_dir / "dcmqi_ct3slice_seg"
    img = read_image(base / "series")
    assert img.array.shape == (3, 512, 512) and img.modality == "CT"
    np.testing.assert_allclose(img.spacing[:2], (0.8105469942092896,) * 2, rtol=1e-6)
    assert img.array.min() <= -1000  # HU
    assert len(img.source["dicom_files"]) == 3
    nii = read_image(base / "imagesTr" / "ct3slice_0000.nii.gz")
    np.testing.assert_allclose(nii.spacing, img.spacing, atol=1e-5)
    np.testing.assert_allclose(nii.origin, img.origin, atol=1e-4)
    np.testing.assert_allclose(nii.direction, img.direction, atol=1e-6)
    # the scan's padding (stored -2000, -3024 HU) is the lowest real value in a DICOM read; the NIfTI keeps it
    assert img.source["pixel_padding"]["set_to"] == -1024 and img.array.min() == -1024
    np.testing.assert_array_equal(np.where(nii.array == -3024, -1024, nii.array), img.array)
    # the whole dataset folder holds the CT and a SEG: the SEG is skipped, the CT is read
    assert read_image(base).array.shape == (3, 512, 512)
    labels = read_image(base / "labelsTr" / "ct3slice.nii.gz")
    out = write_mask(labels.array, tmp_path / "seg.dcm", reference=img, segments={1: "liver"})
    ds = pydicom.dcmread(out)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == img.source["series_uid"]
    assert ds.SegmentSequence[0].SegmentLabel == "liver"


def _dciodvfy_errors(path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    import subprocess

    res = subprocess.run([exe, str(path)], capture_output=True, text=True)
    return [l for l in (res.stdout + res.stderr).splitlines() if l.startswith("Error")]


def test_dciodvfy_clean(ct_series, tmp_path):
    """Plain, named (table and SNOMED fallback) and explicitly coded segments all pass dciodvfy."""
    img = read_image(ct_series[0])
    labels = np.zeros(img.array.shape, np.uint8)
    labels[:, 1:4, 2:5] = 1
    assert _dciodvfy_errors(write_mask(labels, tmp_path / "seg.dcm", reference=img)) == []
    labels[1:3, 4:6, 5:8] = 2
    labels[0, 0, 0] = 3
    labels[3, 0, 7] = 4
    segments = {1: "liver", 2: "Tumor", 3: "hippocampal structure",
                4: {"name": "my ROI", "category": "Tissue", "type": "SCT:85756007:Tissue", "color": "#102030"}}
    out = write_mask(labels, tmp_path / "named.dcm", reference=img, segments=segments)
    assert _dciodvfy_errors(out) == []
    seq = pydicom.dcmread(out).SegmentSequence
    assert [s.SegmentLabel for s in seq] == ["liver", "Tumor", "hippocampal structure", "my ROI"]
    assert seq[1].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # morphologically altered
    assert seq[2].SegmentedPropertyTypeCodeSequence[0].CodeValue == "5366008"  # pydicom's codes.SCT fallback


def test_a_name_beyond_ascii_is_written_as_utf8(ct_series, tmp_path):
    """A free-text name in another script reads back as given, in a SEG dciodvfy accepts (the
    default repertoire is ASCII: it was written 'l??ion' and flagged as an invalid value)."""
    img = read_image(ct_series[0])
    labels = np.zeros(img.array.shape, np.uint8)
    labels[:, 1:4, 2:5] = 1
    name = "lésion 肝"
    out = write_mask(labels, tmp_path / "seg.dcm", reference=img,
                     segments={1: {"name": name, "type": "SCT:10200004:Liver"}})
    ds = pydicom.dcmread(out)
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.SegmentSequence[0].SegmentLabel == name
    assert _dciodvfy_errors(out) == []


def test_cli_label_name_reads_back_in_highdicom(data_dir, tmp_path, capsys):
    """`medisam segment ... --label-name liver -o x.dcm`: highdicom shows the name, SNOMED codes and colour."""
    hd = pytest.importorskip("highdicom")
    from medisam.cli import main

    out = tmp_path / "liver.dcm"
    code = main(["segment", str(data_dir / "dcmqi_ct3slice_seg" / "series"), "--slice", "1", "--box",
                 "150,150,350,350", "-o", str(out), "--label-name", "liver", "--model", "litemedsam-tiny",
                 "--device", "cpu", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    seg = hd.seg.segread(out)
    desc = seg.get_segment_description(1)
    assert desc.segment_label == "liver"
    assert (desc.segmented_property_type.value, desc.segmented_property_type.scheme_designator) == ("10200004", "SCT")
    assert desc.segmented_property_category.value == "123037004"
    # the colour dcmqi's reference liver SEG recommends, as CIELab
    ref = pydicom.dcmread(data_dir / "dcmqi_ct3slice_seg" / "seg" / "liver.dcm").SegmentSequence[0]
    assert list(seg.SegmentSequence[0].RecommendedDisplayCIELabValue) == list(ref.RecommendedDisplayCIELabValue)
    assert _dciodvfy_errors(out) == []


def test_cli_label_name_errors(data_dir, tmp_path, capsys):
    """A misspelt name is one error line with close matches, exit 2, before the model loads; not for .nii.gz."""
    from medisam.cli import main

    series = str(data_dir / "dcmqi_ct3slice_seg" / "series")
    args = ["segment", series, "--slice", "1", "--box", "150,150,350,350", "--model", "litemedsam-tiny"]
    assert main([*args, "-o", str(tmp_path / "x.dcm"), "--label-name", "livr"]) == 2
    err = capsys.readouterr().err
    assert "unknown segment name 'livr'" in err and "liver" in err and "Traceback" not in err
    assert main([*args, "-o", str(tmp_path / "x.nii.gz"), "--label-name", "liver"]) == 2
    assert "-o *.dcm" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_propagate_bare_label_name_names_its_label(data_dir, tmp_path, capsys):
    """`propagate --label 3 --label-name tumor`: the bare name goes to label 3 (Neoplasm, SCT 108369006)."""
    from medisam.cli import main

    out = tmp_path / "t.dcm"
    code = main(["propagate", str(data_dir / "dcmqi_ct3slice_seg" / "series"), "--box3d", "150,150,0,350,350,2",
                 "--views", "1", "--no-progress", "--label", "3", "--label-name", "tumor", "-o", str(out),
                 "--model", "litemedsam-tiny", "--device", "cpu", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    item = pydicom.dcmread(out).SegmentSequence[0]
    assert item.SegmentLabel == "tumor" and item.TrackingID == "label 3"
    assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert _dciodvfy_errors(out) == []


def test_cli_names_the_series_option_for_a_folder_of_two_series(tmp_path, ct_hu, capsys):
    """The CLI says ``--series UID``, not the Python keyword ``series_uid=...``."""
    from dicom_factory import write_ct_series

    from medisam.cli import main

    folder = tmp_path / "two"
    folder.mkdir()
    for k in (1, 2):
        for f in write_ct_series(tmp_path / f"s{k}", ct_hu, seed=k)[1]:
            shutil.copy(f, folder / f"s{k}-{f.name}")
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "2 DICOM series found, pick one with --series UID" in err and "series_uid" not in err
