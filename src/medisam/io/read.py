"""``read_image``: the single entry point that turns a path into a :class:`MedicalImage`."""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

from medisam.errors import InputError
from medisam.io import read_dicom, read_npz, read_raster, read_sitk, video  # noqa: F401 - register readers
from medisam.io.limits import DEFAULT_MAX_VOXELS, check_pixels
from medisam.io.medical_image import MedicalImage
from medisam.io.registry import READERS, ReadOptions, file_extension, picks_channel, reader_for

log = logging.getLogger(__name__)


def input_reader(path: Path):  # noqa: ANN201 - a registry Reader, or None for a folder
    """The reader of ``path`` (None for a folder: a DICOM series or frames), from its name and, for a
    file without a known extension, its DICOM preamble; no pixel is read. InputError for a missing path,
    something that is not a regular file, or an unsupported file type. One rule for :func:`read_image`
    and the command line's checks, which run it before they look at the outputs (an unsupported input
    was reported as an unsupported mask format of the output); the answer for a file is kept by path,
    size and modification time, so the command's read does not look again."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        return None
    if not p.is_file():  # a FIFO would block the reader forever, a device never ends
        raise InputError(f"{p}: not a regular file")
    st = p.stat()
    return _file_reader(p, str(p.absolute()), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=16)
def _file_reader(p: Path, where: str, size: int, mtime_ns: int, inode: int):  # noqa: ANN202, ARG001 - the key
    """:func:`input_reader` of a regular file ``p`` (as given, for the messages), once per absolute path
    ``where`` and version (errors are not kept)."""
    if file_extension(p) not in READERS and read_dicom.is_dicom_file(p):
        return read_dicom.read_dicom_file  # DICOM files often have no extension
    return reader_for(p)


def read_image(
    path: str | Path,
    *,
    series_uid: str | None = None,
    modality: str | None = None,
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    channel: int | None = None,
) -> MedicalImage:
    """Read an image, volume or DICOM series into a MedicalImage (axis order: see MedicalImage).

    Args:
        path: an image file (PNG/JPEG/TIFF/BMP, NIfTI, NRRD, MHA/MHD, DICOM, CVPR24 npz) or
            a folder holding DICOM files.
        series_uid: SeriesInstanceUID to read when a folder holds several series.
        modality: DICOM modality code overriding the file's (default "OT" for non-DICOM).
        max_voxels: refuse larger images (checked from the header before decoding pixels);
            ``None`` or ``0`` disables the check.
        channel: volume (4D NIfTI) or component index to read from a multi-channel file.

    Raises:
        InputError: missing path, unsupported or corrupt file, empty image, NaN/inf
            pixels, too many voxels, several DICOM series without ``series_uid``.
    """
    p = Path(path).expanduser()
    reader = input_reader(p)
    opts = ReadOptions(series_uid=series_uid, modality=modality, max_voxels=max_voxels, channel=channel)
    if p.is_dir():
        image = video.read_frame_folder(p, opts) if video.is_frame_folder(p) else read_dicom.read_dicom_series(p, opts)
    else:
        if p.stat().st_size == 0:
            raise InputError(f"{p}: empty file")
        image = reader(p, opts)
    if channel is not None and not picks_channel(reader):
        image = _pick_channel(image, channel, p)
    check_pixels(image.array, p)
    source = {"path": str(p.resolve()), **image.source}
    log.info("read %s (%s): shape %s, modality %s", p, source.get("format"), image.array.shape, image.modality)
    return replace(image, source=source)


def _pick_channel(image: MedicalImage, channel: int, path: Path) -> MedicalImage:
    """One component of a colour image (grey result); channel 0 of a grey image is the image."""
    if not image.is_rgb:
        if channel != 0:
            raise InputError(f"{path}: channel {channel} requested but the image has a single channel")
        return image
    n = image.array.shape[-1]
    if not 0 <= channel < n:
        raise InputError(f"{path}: channel {channel} out of range, image has {n} channels (0..{n - 1})")
    return image.with_array(image.array[..., channel], is_rgb=False)
