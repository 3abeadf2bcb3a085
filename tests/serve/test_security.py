"""Server security (issue 18): no server file reachable from a request, bounded work, safe defaults."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from serve_data import disk, png_bytes, zip_bytes


def _upload(tc, name: str, data: bytes, **form):
    return tc.post("/sessions", files={"file": (name, data, "application/octet-stream")}, data=form)


def _detail(r) -> str:
    body = r.json()
    assert set(body) == {"detail"}, body
    return body["detail"]


def _mhd_pair(tmp_path, data_file: str | None = None) -> tuple[bytes, bytes]:
    """(header, raw) bytes of a small int16 MetaImage; ``data_file`` overrides ElementDataFile."""
    path = tmp_path / "scan.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 6, 6), 7, np.int16)), str(path))
    header = path.read_text()
    if data_file is not None:
        header = "\n".join(ln if not ln.startswith("ElementDataFile") else f"ElementDataFile = {data_file}"
                           for ln in header.splitlines()) + "\n"
    return header.encode(), (tmp_path / "scan.raw").read_bytes()


# ------------------------------------------------------------ 1. detached headers
def test_upload_cannot_name_a_server_file(make_client, tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(np.full(4 * 6 * 6, 1234, np.int16).tobytes())
    tc = make_client()
    details = []
    for target in (str(secret), str(tmp_path / "missing.raw"), "../../../../etc/passwd", "/dev/zero"):
        header, _ = _mhd_pair(tmp_path, target)
        r = _upload(tc, "scan.mhd", header)
        assert r.status_code == 400, (target, r.text)
        details.append(_detail(r).replace(repr(target), "X"))
        assert str(tmp_path) not in _detail(r).replace(repr(target), "")
    assert len(set(details)) == 1  # an existing and a missing file answer alike: no existence oracle
    assert "outside the upload" in details[0]
    header, _ = _mhd_pair(tmp_path, str(secret))  # also when zipped: the data file must be in the zip
    r = _upload(tc, "scan.zip", zip_bytes({"scan.mhd": header}))
    assert r.status_code == 400 and "outside the upload" in _detail(r)
    r = _upload(tc, "scan.nhdr", b"NRRD0004\ntype: short\ndimension: 2\nsizes: 2 2\nencoding: raw\n"
                                 b"data file: ../../../etc/hostname\n")
    assert r.status_code == 400 and "outside the upload" in _detail(r)
    assert tc.get("/sessions").json()["open"] == 0


def test_zipped_header_with_its_data_file_is_read(make_client, tmp_path):
    header, raw = _mhd_pair(tmp_path)
    r = _upload(make_client(), "scan.zip", zip_bytes({"case/scan.mhd": header, "case/scan.raw": raw}))
    assert r.status_code == 201, r.text
    assert r.json()["shape"] == [4, 6, 6]
