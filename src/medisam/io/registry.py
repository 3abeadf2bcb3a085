"""Extension -> reader dispatch table, so a new format registers in one place.

A reader is ``fn(path: Path, opts: ReadOptions) -> MedicalImage``. Folders are routed to
the DICOM series reader by :func:`medisam.io.read.read_image`, not through this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from medisam.errors import InputError
from medisam.io.medical_image import MedicalImage


@dataclass(frozen=True)
class ReadOptions:
    """Options every reader receives (readers ignore those that do not apply)."""

    series_uid: str | None = None
    modality: str | None = None
    max_voxels: int | None = None
    channel: int | None = None


Reader = Callable[[Path, ReadOptions], MedicalImage]

#: Lower-case extension (including compound ones such as ".nii.gz") -> reader function.
READERS: dict[str, Reader] = {}


def register_reader(extensions: tuple[str, ...] | list[str], reader: Reader) -> None:
    """Register ``reader`` for each extension (e.g. ``(".nii", ".nii.gz")``)."""
    for ext in extensions:
        READERS[ext.lower()] = reader


def file_extension(path: Path) -> str:
    """The registered extension of ``path`` (longest matching suffix, lower case), or its last suffix."""
    name = path.name.lower()
    matches = [ext for ext in READERS if name.endswith(ext)]
    if matches:
        return max(matches, key=len)
    return path.suffix.lower()


def reader_for(path: Path) -> Reader:
    """Return the reader registered for ``path``'s extension, or raise ``InputError``."""
    ext = file_extension(path)
    if ext in READERS:
        return READERS[ext]
    known = ", ".join(sorted(READERS))
    raise InputError(f"{path}: unsupported file type '{ext or '(none)'}'; supported: {known}, or a DICOM folder")
