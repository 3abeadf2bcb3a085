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
#: Readers that apply ``ReadOptions.channel`` themselves (while reading); the others get it applied after.
_PICK_CHANNEL_WHILE_READING: set[Reader] = set()


def register_reader(extensions: tuple[str, ...] | list[str], reader: Reader, *, picks_channel: bool = False) -> None:
    """Register ``reader`` for each extension (e.g. ``(".nii", ".nii.gz")``).

    ``picks_channel``: the reader honours ``ReadOptions.channel`` itself (e.g. a 4D volume, where
    reading every channel first would waste memory); otherwise ``read_image`` picks it afterwards.
    """
    for ext in extensions:
        READERS[ext.lower()] = reader
    if picks_channel:
        _PICK_CHANNEL_WHILE_READING.add(reader)


def picks_channel(reader: Reader | None) -> bool:
    """Whether ``reader`` applied ``ReadOptions.channel`` while reading."""
    return reader in _PICK_CHANNEL_WHILE_READING


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
