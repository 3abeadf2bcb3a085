"""A DICOM series (one file per slice) with files GDCM decodes wrongly or not at all: those files, and only
those, are decoded by pydicom (medisam.io.dicom_pixels.series_pixels); the rest of the series stays GDCM's,
with the same rescale, padding and geometry. A file neither decoder reads is one line naming it, its
transfer syntax and both reasons.

``python -m tests.io.test_dicom_series_fallback`` prints the outcome of every series case built here.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRBigEndian, JPEG2000Lossless

from medisam.errors import InputError
from medisam.io import read_image
from tests.dicom_factory import big_endian, compress_series, write_ct_series

RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
REAL_SERIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "dcmqi_ct3slice_seg" / "series"


def _hu(shape: tuple[int, int, int] = (5, 8, 10)) -> np.ndarray:
    return np.random.default_rng(1).integers(-1000, 3000, size=shape).astype(np.float64)


def _ct(folder: Path, shape: tuple[int, int, int] = (5, 8, 10)) -> tuple[np.ndarray, list[Path]]:
    """A synthetic CT series (Explicit VR LE, int16, intercept -1024) and its files in slice order."""
    hu = _hu(shape)
    return hu, write_ct_series(folder, hu)[1]


def dose_series(folder: Path, gdcm_fails: list[int], n: int = 4) -> tuple[np.ndarray, list[Path]]:
    """A series of single-frame RT Dose files (DoseGridScaling 0.001 Gy); the files ``gdcm_fails`` get a
    GridFrameOffsetVector without NumberOfFrames, on which GDCM stops ('An invalid logic behavior
    occurred', as on pydicom's rtdose_1frame.dcm) and pydicom reads. Returns the doses and the files."""
    stored = np.random.default_rng(2).integers(0, 30000, size=(n, 6, 7)).astype(np.float64)
    _, files = write_ct_series(folder, stored, intercept=0.0)
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = RT_DOSE
        ds.Modality, ds.DoseGridScaling, ds.DoseUnits, ds.DoseType = "RTDOSE", 0.001, "GY", "PHYSICAL"
        del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
        if k in gdcm_fails:
            ds.GridFrameOffsetVector, ds.FrameIncrementPointer = [0.0], 0x3004000C
        ds.save_as(f, enforce_file_format=True)
    return stored * 0.001, files


def corrupt_j2k(path: Path) -> None:
    """One file as JPEG 2000 whose code stream is no JPEG 2000 (GDCM and pydicom both refuse it)."""
    compress_series([path], "j2k")
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([bytes(range(256)) * 2])
    ds.save_as(path)


def short_big_endian(path: Path) -> None:
    """A 32-bit big-endian file with half its pixel data (GDCM is not trusted with it, pydicom refuses it)."""
    big_endian(path, 32)
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)


def rgb_series(folder: Path) -> tuple[np.ndarray, list[Path]]:
    """Three 16-bit RGB slices (pydicom's SC_rgb_rle_16bit.dcm, divided by 1, 2, 3), the middle one RLE Lossless
    (GDCM mixes up its byte segments), the others Explicit VR LE. Returns the values and the files."""
    from pydicom.uid import RLELossless

    folder.mkdir(parents=True)
    rgb = pydicom.dcmread(pydicom.data.get_testdata_file("SC_rgb_rle_16bit.dcm")).pixel_array
    uid, values, files = pydicom.uid.generate_uid(), [], []
    for k in range(3):
        ds = pydicom.dcmread(pydicom.data.get_testdata_file("SC_rgb_rle_16bit.dcm"))
        ds.decompress()
        values.append((rgb // (k + 1)).astype(np.uint16))
        ds.PixelData = values[-1].tobytes()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.0 * k], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]
        if k == 1:
            ds.compress(RLELossless)
        files.append(folder / f"{k}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return np.stack(values), files


def _geometry(img) -> tuple:  # noqa: ANN001 - a MedicalImage
    return img.spacing, img.origin, img.direction


def test_one_32bit_big_endian_file_reads_the_written_hu(tmp_path):
    """GDCM read a 32-bit big-endian slice about 2.6e8 HU off; it is now decoded by pydicom, the others by GDCM."""
    hu, files = _ct(tmp_path / "ct")
    big_endian(files[2], 32)
    img = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(img.array, hu)
    _ct(tmp_path / "le")  # the same series, every file little endian: GDCM's one series read
    reference = read_image(tmp_path / "le")
    assert _geometry(img) == _geometry(reference) and img.array.dtype == reference.array.dtype
    assert img.source["dicom_files"] == [str(f) for f in files]


def _one_big_endian(folder: Path) -> tuple[np.ndarray, list[Path]]:
    hu, files = _ct(folder)
    big_endian(files[1], 32)
    return hu, files


@pytest.mark.parametrize("build", [_one_big_endian, rgb_series], ids=["big endian 32-bit", "RLE 16-bit colour"])
def test_only_the_files_gdcm_gets_wrong_are_decoded_by_pydicom(tmp_path, monkeypatch, build):
    """The decision is per file, from its header: GDCM never decodes the file it gets wrong (file 1), pydicom
    only it (before, GDCM decoded the whole series, then pydicom every file again)."""
    import medisam.io.dicom_pixels as dicom_pixels

    values, files = build(tmp_path / "series")
    by_pydicom: list[str] = []
    real_decode = dicom_pixels.decode
    monkeypatch.setattr(dicom_pixels, "decode", lambda path, *a, **k: by_pydicom.append(Path(path).name)
                        or real_decode(path, *a, **k))
    by_gdcm: list[str] = []
    real_read = sitk.ImageFileReader.Execute

    def counting_read(self):  # noqa: ANN001, ANN202
        by_gdcm.append(Path(self.GetFileName()).name)
        return real_read(self)

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", counting_read)
    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", lambda self: pytest.fail("GDCM decoded the whole series"))
    np.testing.assert_array_equal(read_image(tmp_path / "series").array, values)
    assert by_pydicom == [files[1].name]
    assert sorted(by_gdcm) == sorted(f.name for f in files if f != files[1])


def test_a_clean_series_stays_one_gdcm_series_read(tmp_path, monkeypatch):
    """The fast path: no file needs pydicom, so no file is read alone and none by pydicom."""
    import medisam.io.dicom_pixels as dicom_pixels

    hu, _ = _ct(tmp_path / "ct")
    monkeypatch.setattr(dicom_pixels, "decode", lambda *a, **k: pytest.fail("pydicom decoded a clean series"))
    monkeypatch.setattr(sitk.ImageFileReader, "Execute", lambda self: pytest.fail("a slice was read alone"))
    np.testing.assert_array_equal(read_image(tmp_path / "ct").array, hu)


def test_real_series_with_one_big_endian_slice(tmp_path, data_dir):
    """A real CT series (512 x 512, GE): one slice rewritten as 32-bit big endian reads as the original."""
    series = data_dir / "dcmqi_ct3slice_seg" / "series"
    original = read_image(series)
    folder = tmp_path / "real"
    shutil.copytree(series, folder)
    big_endian(folder / Path(original.source["dicom_files"][1]).relative_to(series), 32)
    img = read_image(folder)
    np.testing.assert_array_equal(img.array, original.array)
    assert img.array.dtype == original.array.dtype
    assert _geometry(img) == _geometry(original)


@pytest.mark.parametrize("fails", [[2], [0], [0, 1, 2, 3]], ids=["a middle file", "the first file", "every file"])
def test_files_gdcm_cannot_decode_are_read_by_pydicom(tmp_path, fails):
    """GDCM's scan of the folder stopped on them (a RuntimeError: a traceback and exit 1 from the CLI); now those
    files come from pydicom, with their DoseGridScaling, and the geometry GDCM gives the same series without them
    (the first file's: from its header when GDCM cannot read it)."""
    dose, _ = dose_series(tmp_path / "dose", fails)
    img = read_image(tmp_path / "dose")
    np.testing.assert_allclose(img.array, dose, rtol=1e-6)
    assert img.source["dose"] == {"grid_scaling": 0.001, "units": "Gy"}
    dose_series(tmp_path / "clean", [])
    assert _geometry(img) == _geometry(read_image(tmp_path / "clean"))


def test_undecodable_file_is_one_line_with_both_reasons(tmp_path):
    _, files = _ct(tmp_path / "ct")
    corrupt_j2k(files[3])
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "ct")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'ct'}: cannot decode DICOM pixel data of {files[3].name} in "
                              f"{JPEG2000Lossless.name} ({JPEG2000Lossless}) (GDCM: ")
    assert "; pydicom: " in message
    assert "0x" not in message and "ITK ERROR" not in message  # the same words every run: no object addresses


def test_untrusted_file_pydicom_cannot_decode_is_one_line_with_both_reasons(tmp_path):
    _, files = _ct(tmp_path / "ct")
    short_big_endian(files[1])
    with pytest.raises(InputError) as info:
        read_image(tmp_path / "ct")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'ct'}: cannot decode DICOM pixel data of {files[1].name} in "
                              f"Explicit VR Big Endian ({ExplicitVRBigEndian}) (GDCM: its values are not trusted "
                              "for this transfer syntax; pydicom: ")


def test_cli_info_and_segment_on_a_series_with_a_fallback_file(tmp_path, capsys):
    from medisam.cli import main

    _, files = _ct(tmp_path / "ct", (5, 32, 32))
    big_endian(files[0], 32)
    dose_series(tmp_path / "dose", [1])
    for folder in ("ct", "dose"):
        assert main(["info", str(tmp_path / folder)]) == 0
    assert "error" not in capsys.readouterr().err
    out = tmp_path / "mask.nii.gz"
    code = main(["segment", str(tmp_path / "ct"), "--slice", "2", "--box", "4,4,20,20", "-o", str(out),
                 "--model", "litemedsam-tiny", "--device", "cpu"])
    assert code == 0 and out.is_file()
    assert read_image(out).array.shape == (5, 32, 32)


def test_cli_undecodable_series_is_exit_2(tmp_path, capsys):
    from medisam.cli import main

    _, files = _ct(tmp_path / "ct")
    corrupt_j2k(files[0])
    assert main(["info", str(tmp_path / "ct")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot decode DICOM pixel data of {files[0].name}" in err[0]


def wider(path: Path) -> None:
    """One file two columns wider than the rest of its series."""
    ds = pydicom.dcmread(path)
    ds.Columns = int(ds.Columns) + 2
    ds.PixelData = np.zeros((int(ds.Rows), int(ds.Columns)), np.int16).tobytes()
    ds.save_as(path)


def test_a_file_of_another_size_is_named(tmp_path):
    """GDCM's series read stops on it ('Size mismatch!'); the line names the file and both sizes."""
    _, files = _ct(tmp_path / "ct")
    wider(files[2])
    with pytest.raises(InputError, match=f"{files[2].name} has 8x12 pixels .*, {files[0].name} has 8x10: "
                                         "the files cannot form one volume"):
        read_image(tmp_path / "ct")


def test_folder_gdcm_cannot_scan_is_grouped_by_pydicom(tmp_path):
    """GDCM's scan stopped on the whole folder (a traceback, exit 1); now its series are found from the headers."""
    from medisam.io.read_dicom import list_dicom_series

    dose, _ = dose_series(tmp_path / "mixed", [1])
    hu, written = _ct(tmp_path / "ct")
    ct_files = [f.rename(tmp_path / "mixed" / f"CT{f.name}") for f in written]  # both series in one folder
    found = {s.modality: s for s in list_dicom_series(tmp_path / "mixed")}
    assert sorted(found) == ["CT", "RTDOSE"] and found["CT"].files == tuple(str(f) for f in ct_files)
    with pytest.raises(InputError, match="2 DICOM series found"):
        read_image(tmp_path / "mixed")
    np.testing.assert_allclose(read_image(tmp_path / "mixed", series_uid=found["RTDOSE"].uid).array, dose, rtol=1e-6)
    np.testing.assert_array_equal(read_image(tmp_path / "mixed", series_uid=found["CT"].uid).array, hu)


# --- the before / after table: python -m tests.io.test_dicom_series_fallback -----------------------------

def _cases() -> dict[str, Callable[[Path], np.ndarray]]:
    """name: writes a series under tmp (folder = the first path part of the name) and returns its true values."""
    def ct(edit: Callable[[list[Path]], None], shape=(5, 8, 10)) -> Callable[[Path], np.ndarray]:  # noqa: ANN001
        def build(tmp: Path) -> np.ndarray:
            hu, files = _ct(tmp / "ct", shape)
            edit(files)
            return hu
        return build

    def dose(fails: list[int]) -> Callable[[Path], np.ndarray]:
        return lambda tmp: dose_series(tmp / "dose", fails)[0]

    def real(tmp: Path) -> np.ndarray:
        original = read_image(REAL_SERIES)
        shutil.copytree(REAL_SERIES, tmp / "ct")
        big_endian(tmp / "ct" / Path(original.source["dicom_files"][1]).relative_to(REAL_SERIES), 32)
        return original.array

    return {
        "CT, 5 slices, all Explicit VR LE (fast path)": ct(lambda f: None),
        "CT, 1 of 5 slices Explicit VR BE 32-bit": ct(lambda f: big_endian(f[2], 32)),
        "CT, 1 of 5 slices Explicit VR BE 16-bit": ct(lambda f: big_endian(f[2], 16)),
        "CT, 5 of 5 slices Explicit VR BE 32-bit": ct(lambda f: [big_endian(p, 32) for p in f]),
        "real CT (dcmqi, 3 x 512 x 512), 1 slice BE 32-bit": real,
        "RGB 16-bit, 1 of 3 slices RLE Lossless": lambda tmp: rgb_series(tmp / "rgb")[0],
        "RT Dose, 1 of 4 slices GDCM cannot decode": dose([2]),
        "RT Dose, first of 4 slices GDCM cannot decode": dose([0]),
        "RT Dose, 4 of 4 slices GDCM cannot decode": dose([0, 1, 2, 3]),
        "CT, 1 of 5 slices corrupt JPEG 2000 (neither decodes)": ct(lambda f: corrupt_j2k(f[3])),
        "CT, 1 of 5 slices BE 32-bit, half its pixel data (neither)": ct(lambda f: short_big_endian(f[1])),
        "CT, 1 of 5 slices 2 columns wider": ct(lambda f: wider(f[2])),
    }


def main() -> None:
    import logging
    import tempfile

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    print("| series | outcome | detail |\n|---|---|---|")
    for name, build in _cases().items():
        with tempfile.TemporaryDirectory() as tmp:
            truth = build(Path(tmp))
            folder = next(p for p in Path(tmp).iterdir() if p.is_dir())
            try:
                img = read_image(folder)
            except InputError as exc:
                print(f"| {name} | error | {str(exc).replace(tmp, 'DIR')[:160]} |")
                continue
            except Exception as exc:  # noqa: BLE001 - a crash is an outcome of the table too
                print(f"| {name} | crash | {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:100]} |")
                continue
            same = img.array.shape == truth.shape and np.allclose(img.array, truth, rtol=1e-6)
            worst = np.abs(img.array.astype(float) - truth).max() if img.array.shape == truth.shape else "shape"
            print(f"| {name} | {'ok' if same else 'wrong values'} | max abs difference {worst} |")


if __name__ == "__main__":
    main()
