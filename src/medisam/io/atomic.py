"""Safe output: atomic writes, no silent overwrite, never clobber an input file.

A writer writes into a fresh temporary folder next to the destination and the files are
moved into place with ``os.replace`` (atomic on one file system), so readers never see a
half-written file. The temporary folder (rather than a temporary file name) also works for
formats that write a companion file whose name the header records (``.mhd`` + ``.raw``,
``.nhdr`` + ``.raw.gz``) and keeps the extension that picks the SimpleITK writer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from medisam.errors import InputError, OutputExistsError

log = logging.getLogger(__name__)


#: Prefix of the temporary folders writers create beside their outputs.
TMP_PREFIX = ".medisam-tmp-"
#: A temporary folder untouched this long is a leftover of a killed writer (seconds).
STALE_TMP_S = 3600.0


def sweep_owned_dirs(parent: Path, prefix: str, is_stale: Callable[[Path, os.stat_result], bool]) -> int:
    """Delete this user's real folders ``parent/prefix*`` for which ``is_stale(path, stat)`` holds.

    The one sweep for what killed processes leave behind (writers' temporary folders, a server's
    upload roots): symlinks, files and other users' folders are never touched. Returns how many
    folders were deleted.
    """
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            stale = is_stale(Path(entry.path), st)
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def sweep_stale_tmp(parent: Path, max_age_s: float = STALE_TMP_S) -> int:
    """Delete this user's ``.medisam-tmp-*`` folders in ``parent`` older than ``max_age_s``; returns how many."""
    now = time.time()
    removed = sweep_owned_dirs(parent, TMP_PREFIX, lambda _path, st: now - st.st_mtime > max_age_s)
    if removed:
        log.info("removed %d stale temporary folder(s) in %s", removed, parent)
    return removed


#: Folders already swept by this process: one sweep per output folder, not one per file written.
_swept: set[str] = set()


def make_tmp_dir(parent: Path) -> Path:
    """A fresh private temporary folder in ``parent`` (stale ones from killed writers are swept
    the first time this process writes there)."""
    key = os.path.realpath(parent)
    if key not in _swept:
        sweep_stale_tmp(parent)
        _swept.add(key)
    return Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))


def _link_text(path: Path) -> str:
    """``a broken symbolic link to TARGET`` / ``a symbolic link to TARGET`` for messages."""
    target = os.readlink(path)
    return f"{'a' if path.exists() else 'a broken'} symbolic link to {target}"


def _nearest_existing(path: Path) -> Path | None:
    """The nearest folder above ``path`` that exists (``lexists``: a broken link counts, and is refused
    by the caller): the folder a writer creates its first entry in."""
    return next((a for a in path.absolute().parents if os.path.lexists(a)), None)


def check_writable(folder: Path, path: Path) -> None:
    """Create (and remove) a temporary folder holding one file in ``folder``, where the writer of ``path``
    will create its own. ``os.access`` alone says yes to root for ``/proc``, ``/sys`` or a read-only
    mount, and the write then failed after the work. Raises a one-line InputError naming ``path``."""
    if not os.access(folder, os.W_OK | os.X_OK):  # a normal user's answer, without touching the folder
        raise InputError(f"{path}: cannot write in {folder} (permission denied)")
    probe = None
    try:
        probe = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=folder))  # swept if killed before the rmtree
        (probe / "probe").touch()
    except OSError as exc:
        reason = "no files can be created there" if exc.errno == errno.ENOENT else exc.strerror or str(exc)
        raise InputError(f"{path}: cannot write in {folder} ({reason})") from None
    finally:
        if probe is not None:
            shutil.rmtree(probe, ignore_errors=True)


def check_output(path: Path, *, force: bool, protected: Iterable[str | Path] = (), folder: bool = False,
                 probe: bool = True) -> None:
    """The one output check: refuse to write ``path`` if it is a protected input (or, for a
    ``folder`` output, holds one), has the wrong kind (a folder where a file goes, or the
    reverse), cannot be written (``probe``: a file is tried in its folder, :func:`check_writable`),
    or exists (a non-empty folder) and ``force`` is False. Messages name no CLI flag: the CLI adds
    its own (``force=True`` reads ``--force`` there).

    Symbolic links: a link counts as existing even when broken (``lexists``), so it is replaced
    only with ``force``; an output file that is a link is then replaced by the written file (the
    atomic rename replaces the link itself, never writing through it into the target's place).
    A folder output may be a link to a folder (its files are written there); a broken one is refused.
    """
    path = Path(path)
    resolved = path.resolve()
    for p in protected:
        if not p:
            continue
        inp = Path(p).resolve()
        if inp == resolved:
            raise InputError(f"{path}: refusing to overwrite an input file")
        if folder and inp.parent == resolved:
            raise InputError(f"{path}: is the folder of an input; choose another output folder")
    above = _nearest_existing(path)
    if above is not None and above.is_symlink() and not above.exists():
        raise InputError(f"{path}: {above} is {_link_text(above)}, not a folder")
    if above is not None and not above.is_dir():  # found only when writing, after the work: "[Errno 17]"
        raise InputError(f"{path}: {above} is a file, not a folder")
    if folder:
        if path.is_symlink() and not path.exists():
            raise InputError(f"{path}: is {_link_text(path)}; remove it or choose another output folder")
        if os.path.lexists(path) and not path.is_dir():
            raise InputError(f"{path}: exists and is not a folder")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise OutputExistsError(f"{path}: folder exists and is not empty; pass force=True to overwrite")
        where = path if path.is_dir() else above
        if probe and where is not None:
            check_writable(where, path)
        return
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an output file name")
    if os.path.lexists(path) and not force:
        what = f"exists ({_link_text(path)})" if path.is_symlink() else "exists"
        raise OutputExistsError(f"{path}: {what}; pass force=True to overwrite")
    if probe and above is not None:
        check_writable(above, path)


@contextlib.contextmanager
def atomic_write(
    path: str | Path, *, force: bool = False, protected: Iterable[str | Path] = ()
) -> Iterator[Path]:
    """Yield a temporary path to write to; on success move it (and companions) to ``path``.

    Parent folders are created. Raises ``OutputExistsError`` when ``path`` (or a companion
    file) exists and ``force`` is False, and ``InputError`` when it is one of ``protected``
    (input files are never overwritten, even with ``force``). On error nothing is left behind.
    """
    path = Path(path).expanduser()
    protected = [Path(p) for p in protected if p]
    check_output(path, force=force, protected=protected, probe=False)  # the temporary folder below is the probe
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = make_tmp_dir(path.parent)
    except OSError as exc:  # named by the output asked for, not by a temporary folder's name
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        tmp = tmpdir / path.name
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer did not create {tmp}")
        companions = [f for f in tmpdir.iterdir() if f.name != path.name]
        for f in companions:
            check_output(path.parent / f.name, force=force, protected=protected, probe=False)
        for f in companions:  # data files first, so the header never points to a missing file
            os.replace(f, path.parent / f.name)
        os.replace(tmp, path)
        log.debug("wrote %s", path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
