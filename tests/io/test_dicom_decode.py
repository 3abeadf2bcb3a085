"""Pixel data that GDCM decodes wrongly or not at all, decoded by pydicom (medisam.io.dicom_pixels):
pydicom's own test files (known values) and synthetic big-endian CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian

from medisam.errors import InputError
from medisam.io import read_image
from tests.dicom_factory import big_endian, write_ct_series

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
ONE_FRAME_DOSES = ["rtdose_1frame.dcm", "rtdose_expb_1frame.dcm", "rtdose_rle_1frame.dcm"]


def _test_file(name: str) -> Path:
    path = TEST_FILES / name
    if not path.is_file():
        pytest.skip(f"pydicom's test file {name} is not installed")
    return path


def _dose(path: Path) -> np.ndarray:
    """pydicom's stored values x DoseGridScaling: the doses medisam should read."""
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)


def test_big_endian_dose_reads_the_little_endian_values():
    """GDCM read rtdose_expb.dcm 19 to 4800 times too high, without an error."""
    little, big = read_image(_test_file("rtdose.dcm")), read_image(_test_file("rtdose_expb.dcm"))
    np.testing.assert_array_equal(big.array, little.array)
    np.testing.assert_allclose(big.array, _dose(TEST_FILES / "rtdose.dcm"), rtol=1e-6)
    assert (big.spacing, big.origin, big.direction) == (little.spacing, little.origin, little.direction)
    assert big.source["dose"] == little.source["dose"] == {"grid_scaling": 1e-6, "units": "relative"}
    assert big.source["frame_geometry"] == little.source["frame_geometry"]


@pytest.mark.parametrize("name", ONE_FRAME_DOSES)
def test_one_frame_doses_read(name):
    """GDCM refused these (one frame, a 15-value GridFrameOffsetVector): 'An invalid logic behavior occurred'."""
    img = read_image(_test_file(name))
    first = _dose(_test_file("rtdose.dcm"))[0]  # the same plane, from the 15-frame file
    assert img.array.shape == (10, 10) and img.array.dtype == np.float32
    np.testing.assert_allclose(img.array, _dose(TEST_FILES / name), rtol=1e-6)
    np.testing.assert_allclose(img.array, first, rtol=1e-6)
    assert img.spacing == (10.0, 10.0)
    np.testing.assert_allclose(img.origin, (189.43125, 199.43125))
    np.testing.assert_allclose(img.source["geometry3d"]["origin"], (189.43125, 199.43125, -761.87))
    assert img.source["dose"]["units"] == "relative"


@pytest.mark.parametrize("name", ["SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit_2frame.dcm"])
def test_rle_colour_above_8_bits_reads_pydicoms_values(name):
    """GDCM mixed up the byte segments: the red bar at the top came out as (0, 65280, 255)."""
    img = read_image(_test_file(name))
    ref = pydicom.dcmread(TEST_FILES / name).pixel_array
    assert img.is_rgb
    np.testing.assert_array_equal(img.array, ref)
    first = img.array if img.array.ndim == 3 else img.array[0]  # (a second frame is the first inverted)
    np.testing.assert_array_equal(first[0, 50], [np.iinfo(ref.dtype).max, 0, 0])


def _to_big_endian(paths: list[Path], bits: int) -> None:
    """Rewrite CT slices (Explicit VR LE, int16) as Explicit VR Big Endian, ``bits`` per stored value."""
    for path in paths:
        big_endian(path, bits)


def _hu() -> np.ndarray:
    return np.random.default_rng(0).integers(-1000, 3000, size=(3, 8, 8)).astype(np.float64)


@pytest.mark.parametrize("bits", [16, 32])
def test_big_endian_ct_reads_the_right_hu(tmp_path, bits):
    """A big-endian CT, one file and the series: the HU written. GDCM read 16 bits right (this case
    passes on the old code too) and 32 bits wrong (about 2.6e8 HU off)."""
    hu = _hu()
    _, paths = write_ct_series(tmp_path / "ct", hu)
    _to_big_endian(paths, bits)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    one = read_image(paths[1])
    np.testing.assert_array_equal(one.array, hu[1])
    series = read_image(tmp_path / "ct")
    np.testing.assert_array_equal(series.array, hu)
    little = tmp_path / "le"
    write_ct_series(little, hu)
    reference = read_image(little)
    assert (series.spacing, series.origin, series.direction) == (reference.spacing, reference.origin,
                                                                 reference.direction)


def test_gdcm_stays_the_decoder_where_it_is_right(monkeypatch):
    """Little-endian and RLE grey files never reach pydicom's decoder."""
    import medisam.io.dicom_pixels as dicom_pixels

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("pydicom decoded a file GDCM reads right")

    monkeypatch.setattr(dicom_pixels, "decode", refuse)
    for name in ("rtdose.dcm", "rtdose_rle.dcm", "MR_small_RLE.dcm", "CT_small.dcm"):
        assert read_image(_test_file(name)).array.size > 0


def test_undecodable_by_both_is_one_line_naming_the_syntax():
    path = _test_file("JPEG2000-embedded-sequence-delimiter.dcm")
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot decode DICOM pixel data in JPEG 2000 Image Compression "
                              "(1.2.840.10008.1.2.4.91)")
    assert "; pydicom: Unable to decode" in message
