"""Output checks that try instead of asking (``os.access`` says yes to root), and symbolic links as outputs.

A link is an existing output even when broken (``lexists``): replaced only with ``force``, and then the link
itself is replaced by the written file (the atomic rename), never written through into the target's place.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path

import pytest

from medisam.errors import InputError, OutputExistsError
from medisam.io.atomic import atomic_write, check_output


def test_a_folder_that_refuses_new_files_is_told_though_access_says_yes(tmp_path, monkeypatch):
    """Root on a read-only mount (or /proc): os.access said yes, the write failed after the work."""
    real = tempfile.mkdtemp

    def read_only(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == tmp_path:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(InputError, match=r"m\.png: cannot write in .* \(Read-only file system\)$"):
        check_output(tmp_path / "m.png", force=False)
    with pytest.raises(InputError, match=r"sub/m\.png: cannot write in .*\(Read-only file system\)$"):
        check_output(tmp_path / "sub" / "m.png", force=False)  # the missing folder would be made in tmp_path
    with pytest.raises(InputError, match="Read-only file system"):
        check_output(tmp_path / "out", force=False, folder=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_proc_is_refused_for_every_user():
    with pytest.raises(InputError, match=r"^/proc/m\.png: cannot write in /proc \("):
        check_output(Path("/proc/m.png"), force=False)
    with pytest.raises(InputError, match=r"^/proc/a/b\.nii\.gz: cannot write in /proc \("):
        check_output(Path("/proc/a/b.nii.gz"), force=True)


def test_the_probe_leaves_nothing_behind(tmp_path):
    check_output(tmp_path / "m.png", force=False)
    check_output(tmp_path / "new" / "m.png", force=False)
    check_output(tmp_path / "folder", force=False, folder=True)
    assert list(tmp_path.iterdir()) == []


def test_a_broken_link_is_an_existing_output(tmp_path):
    link = tmp_path / "m.png"
    target = tmp_path / "missing" / "x.png"
    link.symlink_to(target)
    with pytest.raises(OutputExistsError, match=r"m\.png: exists \(a broken symbolic link to .*x\.png\); pass force"):
        check_output(link, force=False)
    with pytest.raises(OutputExistsError):
        with atomic_write(link) as tmp:
            tmp.write_bytes(b"new")
    assert link.is_symlink() and not target.parent.exists()


def test_force_replaces_a_broken_link_itself(tmp_path):
    link = tmp_path / "m.png"
    target = tmp_path / "missing" / "x.png"
    link.symlink_to(target)
    with atomic_write(link, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert not target.parent.exists()  # nothing written where the link pointed


def test_force_replaces_a_link_to_a_file_not_the_file(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"KEEP")
    link = tmp_path / "m.png"
    link.symlink_to(target)
    with pytest.raises(OutputExistsError, match=r"exists \(a symbolic link to .*keep\.png\)"):
        check_output(link, force=False)
    with atomic_write(link, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert target.read_bytes() == b"KEEP"


def test_broken_links_as_folders(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(InputError, match=r"out: is a broken symbolic link to .*gone; remove it"):
        check_output(tmp_path / "out", force=True, folder=True)
    with pytest.raises(InputError, match=r"out/m\.png: .*out is a broken symbolic link to .*gone, not a folder"):
        check_output(tmp_path / "out" / "m.png", force=True)


def test_a_link_to_a_folder_is_a_folder_output(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "out").symlink_to(real)
    check_output(tmp_path / "out", force=False, folder=True)
    check_output(tmp_path / "out" / "m.png", force=False)
    assert list(real.iterdir()) == []
