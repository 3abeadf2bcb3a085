"""The mask of a single DICOM slice stays where the slice is in patient space: a one-slice volume in
NIfTI/NRRD (it was a 2D image at z = 0, in another plane), a one-frame DICOM-SEG (it was refused); an input
that cannot take a DICOM-SEG is told so before the model runs."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medisam.cli import main
from medisam.errors import InputError
from medisam.io import read_image, write_mask
from medisam.io.medical_image import MedicalImage

SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # rows run anterior->posterior, columns head->feet


def _one_slice(tmp_path, make_series, orientation=None):
    hu = np.full((1, 24, 32), -50, np.int16)
    hu[0, 6:14, 8:20] = 200
    _, [path] = make_series(tmp_path / "slice", hu, origin=(10.0, -20.0, 30.0))
    if orientation is not None:
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = orientation
        ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("orientation", [None, SAGITTAL])
def test_a_single_slice_mask_is_a_one_slice_volume_at_the_slice(tmp_path, make_series, orientation):
    path = _one_slice(tmp_path, make_series, orientation)
    image = read_image(path)
    labels = np.zeros(image.spatial_shape, np.uint8)
    labels[6:14, 8:20] = 1
    for ext in (".nii.gz", ".nrrd"):
        back = sitk.ReadImage(str(write_mask(image.as_labels(labels), tmp_path / f"mask{ext}")))
        assert back.GetSize() == (32, 24, 1), ext
        np.testing.assert_allclose(back.GetOrigin(), (10.0, -20.0, 30.0), atol=1e-4)  # it sat at z = 0
        want = orientation or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        direction = np.asarray(back.GetDirection()).reshape(3, 3)
        np.testing.assert_allclose(direction[:, 0], want[:3], atol=1e-6)  # the slice's own orientation
        np.testing.assert_allclose(direction[:, 1], want[3:], atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back)[0], labels)


def test_a_single_slice_gets_a_one_frame_dicom_seg_from_the_cli(tmp_path, make_series):
    path = _one_slice(tmp_path, make_series)
    out = tmp_path / "seg.dcm"
    assert main(["segment", str(path), "--box", "8,6,20,14", "-o", str(out), "--model", "litemedsam-tiny",
                 "--device", "cpu"]) == 0
    seg = pydicom.dcmread(out)
    source = pydicom.dcmread(path)
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) >= 1
    refs = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence]
    assert set(refs) == {source.SOPInstanceUID}
    position = seg.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    np.testing.assert_allclose([float(v) for v in position], [float(v) for v in source.ImagePositionPatient])
    exe = shutil.which("dciodvfy")
    if exe is not None:
        res = subprocess.run([exe, str(out)], capture_output=True, text=True)
        assert [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")] == []


def test_an_image_that_cannot_take_a_dicom_seg_is_told_before_the_model_loads(tmp_path, monkeypatch, capsys):
    """A multi-frame DICOM (one file, several slices) and a non-DICOM image: one line naming -o, no model."""
    import medisam.models
    from medisam.io.write_seg import seg_reference_problem

    multi = MedicalImage(np.zeros((3, 8, 8), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                         (1, 0, 0, 0, 1, 0, 0, 0, 1), "CT", source={"format": "dicom", "dicom_files": ["a.dcm"]})
    assert "multi-frame DICOM" in seg_reference_problem(multi)
    with pytest.raises(InputError, match="multi-frame DICOM"):
        write_mask(np.ones((3, 8, 8), np.uint8), tmp_path / "x.dcm", reference=multi)
    monkeypatch.setattr(medisam.models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr("medisam.io.read_image", lambda *a, **k: multi)
    monkeypatch.setattr("medisam.io.read.read_image", lambda *a, **k: multi, raising=False)
    fake = tmp_path / "multi.dcm"
    fake.write_bytes(b"\0" * 128 + b"DICM")
    out = tmp_path / "out.dcm"
    rc = main(["segment", str(fake), "--box", "1,1,6,6", "--slice", "1", "-o", str(out),
               "--model", "litemedsam-tiny", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: -o {out}:") and "multi-frame" in err[0], err
    assert not out.exists()
