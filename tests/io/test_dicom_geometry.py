"""Broken DICOM series: skipped slice files, gaps, duplicate/missing/inconsistent positions."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import InputError
from medisam.io import read_image
from tests.dicom_factory import damage_slice, write_ct_series


@pytest.fixture()
def series(tmp_path):
    """A 6-slice series (folder, files by slice); slices are 2.5 mm apart."""
    hu = np.random.default_rng(0).integers(-1000, 1000, (6, 8, 10)).astype(np.int16)
    _, files = write_ct_series(tmp_path / "ct", hu)
    return tmp_path / "ct", files


@pytest.mark.parametrize("how,skipped", [
    ("garbage", "not a readable DICOM file"),
    ("truncate", "pixel data truncated"),
    ("delete", None),
])
def test_missing_slice_is_reported_with_its_effect(series, how, skipped):
    folder, files = series
    damage_slice(files, 3, how)
    img = read_image(folder)
    assert img.array.shape[0] == 5
    text = " | ".join(img.geometry_warnings)
    if skipped:
        assert f"skipped {files[3].name}: {skipped}" in text
    assert f"5 mm between {files[2].name} and {files[4].name}" in text and "2.5 mm" in text
    assert "1 slice(s) are missing" in text and "spacing of 3.125 mm" in text and "up to 1.25 mm" in text


def test_clean_series_has_no_warning(series):
    folder, files = series
    (folder / "notes.txt").write_text("not DICOM")  # non-DICOM files are not "skipped slices"
    assert read_image(folder).geometry_warnings == ()


@pytest.mark.parametrize("how,match", [
    ("duplicate", r"zz_duplicate.dcm and IM\d+.dcm are at the same slice position|"
                  r"IM\d+.dcm and zz_duplicate.dcm are at the same slice position"),
    ("copy", r"at the same slice position"),
    ("tilt", r"mixes slice orientations"),
])
def test_duplicate_or_inconsistent_positions_are_errors(series, how, match):
    folder, files = series
    damage_slice(files, 3, how)
    with pytest.raises(InputError, match=match) as err:
        read_image(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("how,match", [
    ("no-position", r"1 of 6 slices have no ImagePositionPatient .* guesses"),
    ("shift", r"uneven slice spacing: 3\.5 mm .* steps 2\.5 mm"),
])
def test_missing_or_uneven_positions_are_warnings(series, how, match):
    folder, files = series
    damage_slice(files, 3 if how == "no-position" else 5, how if how != "shift" else "shift")
    img = read_image(folder)
    assert len(img.geometry_warnings) == 1 and __import__("re").search(match, img.geometry_warnings[0])


def _cli(args, capsys):
    from medisam.cli import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_shows_the_warning(series, capsys):
    folder, files = series
    damage_slice(files, 2, "garbage")
    code, out, err = _cli(["info", str(folder)], capsys)
    assert code == 0
    assert f"skipped {files[2].name}" in out and "gap in slice positions" in out


@pytest.mark.parametrize("command", [
    ["segment", "--slice", "1", "--box", "1,1,8,6"],
    ["propagate", "--box3d", "1,1,0,8,6,4", "--views", "1", "--no-progress"],
])
def test_mask_refused_unless_allow_gaps(series, tmp_path, command, capsys):
    folder, files = series
    damage_slice(files, 3, "truncate")
    out = tmp_path / "mask.nii.gz"
    args = [command[0], str(folder), *command[1:], "-o", str(out), "--model", "litemedsam-tiny", "--device", "cpu"]
    code, _, err = _cli(args, capsys)
    assert code == 2 and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pixel data truncated" in lines[0]
    assert "--allow-gaps" in lines[0]
    code, _, err = _cli(args + ["--allow-gaps"], capsys)
    assert code == 0 and out.exists()
    assert "warning: gap in slice positions" in err
