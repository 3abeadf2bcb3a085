"""Detached headers (MetaImage ``ElementDataFile``, NRRD ``data file``): where their pixels come from.

A ``.mhd``/``.mha``/``.nhdr``/``.nrrd`` header may name other files that hold the pixel
data, anywhere on disk. :func:`check_data_files` parses those names before SimpleITK
opens anything and refuses, with one line,

* a data file that is not a regular file (a FIFO would block the reader forever, a
  device such as ``/dev/zero`` never ends), and
* when ``root`` is given (server uploads, web UI uploads), a data file whose real path
  (symbolic links resolved) lies outside ``root``, so an upload cannot make the server
  read, or probe for, its own files.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from medisam.errors import InputError

#: Extensions whose header may name separate data files.
DETACHED_EXTENSIONS = (".mhd", ".mha", ".nhdr", ".nrrd")
_HEADER_BYTES = 1 << 16  # headers are small; the data of an attached file follows
_MAX_LISTED = 100_000  # more data files than this in one header is refused
_PATTERN = re.compile(r"^(\S*%\S*)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)(?:\s+\d+)?$")


def _header_lines(path: Path) -> list[str]:
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    return head.decode("latin-1").splitlines()


def _expand(value: str, following: list[str], what: str, path: Path) -> list[str]:
    """Data file names of a header value: one name, ``LIST`` (names on the next lines) or a %-pattern."""
    value = value.strip()
    first = value.split()[0] if value.split() else ""
    if first.upper() == "LIST":
        names = [ln.strip() for ln in following if ln.strip()]
        if not names:
            raise InputError(f"{path}: {what} LIST names no files")
        return names
    m = _PATTERN.match(value)
    if m:
        fmt, lo, hi, step = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        if step == 0 or (hi - lo) // step + 1 > _MAX_LISTED:
            raise InputError(f"{path}: {what} pattern {value!r} is invalid or names too many files")
        try:
            return [fmt % i for i in range(lo, hi + (1 if step > 0 else -1), step)]
        except (TypeError, ValueError):
            raise InputError(f"{path}: {what} pattern {value!r} is invalid") from None
    return [value]


def data_file_names(path: Path) -> list[str]:
    """The data file names a MetaImage/NRRD header gives ([] when the data is in the header file)."""
    lines = _header_lines(path)
    name = path.name.lower()
    if name.endswith((".mhd", ".mha")):
        for i, line in enumerate(lines):
            key, sep, value = line.partition("=")
            if sep and key.strip().lower() == "elementdatafile":
                if value.strip().upper() == "LOCAL":
                    return []
                return _expand(value, lines[i + 1:], "ElementDataFile", path)
        return []
    if name.endswith((".nhdr", ".nrrd")):
        for i, line in enumerate(lines):
            if not line.strip():  # a blank line ends an NRRD header
                break
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("data file", "datafile"):
                following = []
                for rest in lines[i + 1:]:  # LIST: the names follow, up to the blank line
                    if not rest.strip():
                        break
                    following.append(rest)
                return _expand(value, following, "data file", path)
        return []
    return []


def check_data_files(path: str | Path, root: str | Path | None = None) -> list[Path]:
    """Check the data files a detached header names; returns their resolved paths.

    Each must be a regular file; with ``root``, its real path must also lie inside
    ``root``. Raises ``InputError`` (one line, naming the header) otherwise.
    """
    path = Path(path)
    if not path.name.lower().endswith(DETACHED_EXTENSIONS):
        return []
    real_root = os.path.realpath(root) if root is not None else None
    out = []
    for name in data_file_names(path):
        if "\x00" in name:
            raise InputError(f"{path}: data file name holds a NUL byte")
        target = Path(os.path.realpath(path.parent / name))
        if real_root is not None and os.path.commonpath([real_root, str(target)]) != real_root:
            raise InputError(f"{path}: data file {name!r} is outside the upload; detached headers must "
                             "come with their data file (zip the header and its data together)")
        try:
            mode = os.stat(target).st_mode
        except OSError:
            raise InputError(f"{path}: data file {name!r} not found next to the header") from None
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: data file {name!r} is not a regular file")
        out.append(target)
    return out
