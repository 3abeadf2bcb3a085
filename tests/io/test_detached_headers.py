"""Detached headers (.mhd ElementDataFile, .nhdr data file): no FIFO/device reads, uploads stay in their folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.errors import InputError
from medisam.io import read_image
from medisam.io.detached import check_data_files, data_file_names


def _mhd(folder: Path, name: str = "scan.mhd") -> Path:
    """A small MetaImage header + raw pair written by SimpleITK."""
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.arange(2 * 5 * 6, dtype=np.int16).reshape(2, 5, 6)
    path = folder / name
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def _point_to(header: Path, data_file: str) -> None:
    key = "ElementDataFile" if header.suffix == ".mhd" else "data file"
    sep = " = " if header.suffix == ".mhd" else ": "
    lines = [ln for ln in header.read_text().splitlines()
             if not ln.lower().replace(" ", "").startswith(key.lower().replace(" ", ""))]
    if header.suffix == ".nhdr":
        lines = [ln for ln in lines if ln.strip()]
    header.write_text("\n".join([*lines, f"{key}{sep}{data_file}"]) + "\n")


def test_mhd_pointing_outside_the_upload_is_refused(tmp_path):
    secret = tmp_path / "server" / "secret.raw"
    secret.parent.mkdir()
    secret.write_bytes(b"\x01\x02" * 60)
    header = _mhd(tmp_path / "upload")
    for target in (str(secret), "../server/secret.raw", "/nonexistent/file.raw"):
        _point_to(header, target)
        with pytest.raises(InputError, match="outside the upload") as err:
            check_data_files(header, root=tmp_path / "upload")
        # the same answer whether the file exists or not: no existence oracle
        assert "not found" not in str(err.value)
    _point_to(header, str(secret))
    assert read_image(header).array.shape == (2, 5, 6)  # a local user may name their own files


def test_symlinked_data_file_is_resolved_before_the_check(tmp_path):
    outside = tmp_path / "outside.raw"
    outside.write_bytes(b"\0" * 120)
    header = _mhd(tmp_path / "upload")
    (tmp_path / "upload" / "link.raw").symlink_to(outside)
    _point_to(header, "link.raw")
    with pytest.raises(InputError, match="outside the upload"):
        check_data_files(header, root=tmp_path / "upload")


def test_data_file_inside_the_upload_is_allowed(tmp_path):
    header = _mhd(tmp_path / "upload")
    assert [p.name for p in check_data_files(header, root=tmp_path / "upload")] == ["scan.raw"]
    assert data_file_names(header) == ["scan.raw"]


def _read_in_thread(path: Path, timeout: float = 10.0):
    """read_image in a daemon thread: returns the exception, or fails if it blocks."""
    box: dict = {}

    def run():
        try:
            read_image(path)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "read_image blocked"
    return box.get("exc")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_fifo_or_device_data_file_never_blocks(tmp_path, suffix):
    header = _mhd(tmp_path, "scan.mhd")
    if suffix == ".nhdr":
        nrrd = tmp_path / "scan.nhdr"
        sitk.WriteImage(sitk.ReadImage(str(header)), str(nrrd))
        header = nrrd
    fifo = tmp_path / "pipe.raw"
    os.mkfifo(fifo)
    for target in (str(fifo), "/dev/zero"):
        _point_to(header, target)
        exc = _read_in_thread(header)
        assert isinstance(exc, InputError) and "not a regular file" in str(exc), exc


def test_nhdr_parent_relative_and_list_forms(tmp_path):
    header = tmp_path / "up" / "scan.nhdr"
    header.parent.mkdir()
    header.write_text("NRRD0004\ntype: short\ndimension: 2\nsizes: 2 2\nencoding: raw\n"
                      "data file: LIST\nok.raw\n../evil.raw\n")
    (header.parent / "ok.raw").write_bytes(b"\0" * 8)
    (tmp_path / "evil.raw").write_bytes(b"\0" * 8)
    assert data_file_names(header) == ["ok.raw", "../evil.raw"]
    with pytest.raises(InputError, match="'../evil.raw' is outside"):
        check_data_files(header, root=header.parent)
    header.write_text("NRRD0004\ntype: short\ndimension: 2\nsizes: 2 2\nencoding: raw\n"
                      "data file: s%02d.raw 1 3 1\n")
    assert data_file_names(header) == ["s01.raw", "s02.raw", "s03.raw"]


def test_attached_files_have_no_data_files(tmp_path):
    path = tmp_path / "a.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4), np.uint8)), str(path))
    assert check_data_files(path, root=tmp_path) == []
    nrrd = tmp_path / "a.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4), np.uint8)), str(nrrd))
    assert check_data_files(nrrd, root=tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["pipe", "pipe.png", "pipe.nii.gz"])
def test_fifo_input_file_never_blocks(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    exc = _read_in_thread(fifo)
    assert isinstance(exc, InputError) and "not a regular file" in str(exc), exc
