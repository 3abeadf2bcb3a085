"""Turn uploaded bytes into a MedicalImage without trusting anything the client names.

An upload is written into the session's private folder (mode 0700) under a name the
server makes up (``upload`` + a registered extension taken from the client's file name);
the client's name never becomes a path. Zipped DICOM series are extracted member by
member under numbered names after checking every member name (no absolute paths, no
``..``, no links), the member count, the total uncompressed size and each member's
compression ratio (zip bombs). Reading then goes through :func:`medisam.io.read_image`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from medisam.errors import ImageTooLargeError, InputError
from medisam.io import READERS, MedicalImage, read_image
from medisam.io.detached import check_data_files
from medisam.io.header import SITK as SITK_SUFFIXES, read_header
from medisam.io.registry import file_extension

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
HEADER_ONLY = (".mhd", ".nhdr")  # formats whose pixels live in a separate file
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class UploadTooLarge(InputError):
    """The upload (or what it unpacks to) is larger than a server limit (HTTP 413)."""


def upload_extension(filename: str | None) -> str:
    """The registered extension (``.nii.gz``, ``.png``, ``.zip``...) of a client file name.

    Only the last path component is looked at and only a known extension is kept, so the
    result is safe to append to a server-chosen name.
    """
    if not filename:
        raise InputError("the upload needs a file name with an extension (e.g. scan.nii.gz, image.png, series.zip)")
    base = PureWindowsPath(PurePosixPath(filename).name).name  # strip both / and \ folders
    if base.lower().endswith(".zip"):
        return ".zip"
    ext = file_extension(Path(base))
    if ext not in READERS:
        known = ", ".join(sorted([*READERS, ".zip"]))
        raise InputError(f"unsupported upload type '{ext or '(none)'}'; supported: {known}")
    return ext


def save_stream(stream: BinaryIO, dest: Path, max_bytes: int) -> int:
    """Copy ``stream`` to ``dest`` (created 0600), refusing more than ``max_bytes``; returns the size."""
    total = 0
    with open(dest, "xb") as out:
        dest.chmod(0o600)
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise UploadTooLarge(f"upload is larger than the limit of {max_bytes} bytes")
            out.write(chunk)
    if total == 0:
        raise InputError("the uploaded file is empty")
    return total


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise InputError(f"zip member {name!r} has an absolute or parent-relative path; refusing the archive")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InputError(f"zip member {name!r} is a symbolic link; refusing the archive")
    if info.flag_bits & 0x1:
        raise InputError(f"zip member {name!r} is encrypted")


def _member_names(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Flat file names for the members: the member's own base name when it is plain and unique
    (so a detached header finds its data file), else a number plus its registered extension."""
    bases = [PurePosixPath(i.filename.replace("\\", "/")).name for i in infos]
    counts: dict[str, int] = {}
    for b in bases:
        counts[b.lower()] = counts.get(b.lower(), 0) + 1
    names = []
    for n, base in enumerate(bases):
        if _PLAIN_NAME.fullmatch(base) and counts[base.lower()] == 1 and not base.startswith("0"):
            names.append(base)
        else:
            ext = file_extension(Path(base))
            names.append(f"{n:06d}{ext if ext in READERS else ''}")
    return names


def extract_zip(archive: Path, dest: Path, *, max_members: int, max_bytes: int, max_ratio: float) -> list[Path]:
    """Safely extract ``archive`` into ``dest`` under numbered names; return the files written.

    Each member keeps only its registered extension (DICOM files often have none). Raises
    ``InputError`` for unsafe names, ``UploadTooLarge`` for too many members, too many bytes
    or a suspicious compression ratio; the byte limit is enforced while decompressing, so a
    header that lies about sizes does not help.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise InputError("the upload is not a readable zip archive") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for info in zf.infolist():
            _check_member(info)
        infos = [i for i in infos if not PurePosixPath(i.filename).parts[0].startswith("__MACOSX")
                 and not PurePosixPath(i.filename).name.startswith(".")]
        if not infos:
            raise InputError("the zip archive holds no files")
        if len(infos) > max_members:
            raise UploadTooLarge(f"the zip archive has {len(infos)} files, more than the limit of {max_members}")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise UploadTooLarge(f"the zip archive unpacks to {declared} bytes, more than the limit of {max_bytes}")
        dest.mkdir(mode=0o700, exist_ok=False)
        written: list[Path] = []
        total = 0
        names = _member_names(infos)
        for info, out_name in zip(infos, names):
            out_path = dest / out_name
            limit = max(max_ratio * max(info.compress_size, 1), 1 << 16)
            member_bytes = 0
            try:
                with zf.open(info) as src, open(out_path, "xb") as out:
                    while chunk := src.read(_CHUNK):
                        member_bytes += len(chunk)
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadTooLarge(f"the zip archive unpacks to more than {max_bytes} bytes")
                        if member_bytes > limit:
                            raise UploadTooLarge(f"zip member {info.filename!r} expands more than "
                                                 f"{max_ratio:g} times; refusing a possible zip bomb")
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
                raise InputError(f"zip member {info.filename!r} cannot be extracted ({type(exc).__name__})") from None
            written.append(out_path)
    log.info("extracted %d files (%d bytes) from a zip upload", len(written), total)
    return written


#: Bytes a session holds per image voxel besides the pixels: uint16 labels + uint8 display copy.
SESSION_BYTES_PER_VOXEL = 3


def guide_bytes(image: MedicalImage) -> int:
    """Memory a session's guide channel holds: the walker's float32 channel (the upload's
    pixels are not kept)."""
    return 4 * math.prod(image.spatial_shape)


def session_bytes(image: MedicalImage, frame_bytes: int = 0, axis: int = 0) -> int:
    """Memory a session holds for ``image``: its pixels (dtype-aware) plus labels and display copy, plus
    ``frame_bytes`` per slice along ``axis`` (the session's) and colour channel (a SAM 2 model's resized
    copy of every frame, :func:`model_frame_bytes`: a 6000 x 4 x 4 upload held 1.5 GiB there and counted
    as 0.4 MB)."""
    return _held_bytes(int(image.array.nbytes), image.spatial_shape, 3 if image.is_rgb else 1, frame_bytes, axis)


def _held_bytes(pixel_bytes: int, shape: tuple[int, ...], channels: int, frame_bytes: int, axis: int = 0) -> int:
    """The one rule of :func:`session_bytes`, from a read image or a header: the pixels, labels and
    display per voxel, and ``frame_bytes`` per slice (along ``axis`` of a volume) and colour channel."""
    frames = shape[axis] if len(shape) == 3 else 1
    return pixel_bytes + SESSION_BYTES_PER_VOXEL * math.prod(shape) + frames * channels * frame_bytes


def model_frame_bytes(model) -> int:  # noqa: ANN001 - a loaded model
    """Bytes a session of ``model`` keeps per frame and channel besides the image: a SAM 2 model's
    frames resized to its square input (uint8, :class:`~medisam.predict.sam2_frames.NormalisedFrames`);
    0 for the others (their embeddings are bounded by the session's cache)."""
    from medisam.predict.contract import tracks_with_memory

    return int(model.net.image_size) ** 2 if tracks_with_memory(model) else 0


def _header_bytes(path: Path, frame_bytes: int = 0) -> int | None:
    """``session_bytes`` predicted from a NIfTI/NRRD/MetaImage header (pixel type included), else None."""
    if not path.name.lower().endswith(SITK_SUFFIXES):
        return None
    try:
        header = read_header(path)
    except InputError:
        return None  # the reader reports the broken header
    if header is None or header.nbytes is None:
        return None
    return _held_bytes(header.nbytes, header.shape, min(header.channels, 3), frame_bytes)


def check_image_bytes(nbytes: int, limit: int) -> None:
    """UploadTooLarge (413) when a session would hold more than ``limit`` bytes."""
    if nbytes > limit:
        raise UploadTooLarge(f"upload: the image needs {nbytes} bytes in memory (pixels, labels, display), "
                             f"more than the limit of {limit} bytes per session set by this server")


def read_upload(path: Path, workdir: Path, *, max_voxels: int, max_members: int, max_bytes: int,
                max_ratio: float, modality: str | None = None, max_image_bytes: int | None = None,
                frame_bytes: int = 0) -> MedicalImage:
    """Read a saved upload (an image/volume file, or a zip of a DICOM series or of one file).

    ``max_image_bytes`` bounds :func:`session_bytes` (with ``frame_bytes`` per frame: the
    model's, :func:`model_frame_bytes`); checked from the header where the format says its
    pixel type (NIfTI, NRRD, MetaImage), and after reading otherwise.
    Error messages name the upload, never the server's folders.
    """
    image = _read_upload(path, workdir, max_voxels=max_voxels, max_members=max_members, max_bytes=max_bytes,
                         max_ratio=max_ratio, modality=modality, max_image_bytes=max_image_bytes,
                         frame_bytes=frame_bytes)
    if max_image_bytes is not None:
        check_image_bytes(session_bytes(image, frame_bytes), max_image_bytes)
    return image


def _prune(folder: Path, image: MedicalImage) -> int:
    """Delete the extracted files the image does not refer to (junk members, read-once headers/frames).

    A DICOM series keeps its files (DICOM-SEG output references them); everything else is
    in memory once read. Returns how many files were deleted.
    """
    keep = {os.path.realpath(p) for p in [image.source.get("path"), *(image.source.get("dicom_files") or [])]
            if p and image.source.get("format") == "dicom"}
    removed = 0
    for p in folder.rglob("*"):
        if p.is_file() and os.path.realpath(p) not in keep:
            p.unlink()
            removed += 1
    return removed


def _read_target(target: Path, root: Path, max_image_bytes: int | None, frame_bytes: int = 0,
                 **read_kw) -> MedicalImage:
    check_data_files(target, root=root)
    if max_image_bytes is not None:
        predicted = _header_bytes(target, frame_bytes)
        if predicted is not None:
            check_image_bytes(predicted, max_image_bytes)
    return read_image(target, **read_kw)


def _read_upload(path: Path, workdir: Path, *, max_voxels: int, max_members: int, max_bytes: int,
                 max_ratio: float, modality: str | None, max_image_bytes: int | None,
                 frame_bytes: int = 0) -> MedicalImage:
    try:
        if path.name.endswith(".zip"):
            files = extract_zip(path, workdir / "unzipped", max_members=max_members,
                                max_bytes=max_bytes, max_ratio=max_ratio)
            path.unlink()  # the extracted copy is all we keep
            known = [f for f in files if f.suffix and file_extension(f) not in (".dcm", ".dicom", ".ima")]
            headers = [f for f in files if f.name.lower().endswith(HEADER_ONLY)]
            if len(headers) == 1:
                target = headers[0]  # a detached header zipped with its data file(s)
            else:
                target = known[0] if len(files) == 1 and known else workdir / "unzipped"
            image = _read_target(target, workdir / "unzipped", max_image_bytes, frame_bytes, max_voxels=max_voxels,
                                 modality=modality)
            _prune(workdir / "unzipped", image)
            return image
        return _read_target(path, workdir, max_image_bytes, frame_bytes, max_voxels=max_voxels, modality=modality)
    except ImageTooLargeError as exc:
        raise UploadTooLarge(f"upload: image has {exc.voxels} voxels, more than the limit of {exc.limit} "
                             "set by this server") from None
    except InputError as exc:
        msg = str(exc).replace(str(workdir.resolve()) + "/", "").replace(str(workdir) + "/", "")
        msg = msg.replace(str(workdir.resolve()), "upload").replace(str(workdir), "upload")
        raise type(exc)(msg) from None
