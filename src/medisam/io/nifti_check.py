"""Integrity pass for NIfTI files, covering two silent behaviours of ITK's NIfTI reader.

Measured with SimpleITK 2.5 / ITK 5.4: a truncated ``.nii``/``.nii.gz`` is read without error
(the missing voxels become 0), and NaN voxels come back as 0. One streaming pass over the
raw voxel bytes (header from nibabel; no array is built) finds both, so a broken file is
reported instead of producing a silently wrong mask.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from medisam.errors import InputError

CHUNK_BYTES = 1 << 24


def check_nifti(path: Path) -> None:
    """Raise ``InputError`` if the voxel data of a NIfTI file is truncated or holds NaN/inf."""
    import nibabel as nib

    try:
        proxy = nib.load(str(path)).dataobj  # ArrayProxy: file offset, on-disk dtype and shape
        dtype, offset = np.dtype(proxy.dtype), int(proxy.offset)
        expected = math.prod(int(s) for s in proxy.shape) * dtype.itemsize
    except Exception as exc:  # nibabel raises several types for broken headers
        raise InputError(f"{path}: cannot read NIfTI header ({type(exc).__name__})") from exc
    is_float = dtype.kind in "fc"
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    got, bad, rest = 0, 0, b""
    try:
        with opener(path, "rb") as fh:
            fh.seek(offset)
            while got < expected:
                block = fh.read(min(CHUNK_BYTES, expected - got))
                if not block:
                    break
                got += len(block)
                if is_float:
                    data = rest + block
                    usable = len(data) - len(data) % dtype.itemsize
                    bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(data[:usable], dtype))))
                    rest = data[usable:]
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated NIfTI data ({type(exc).__name__})") from exc
    if got < expected:
        raise InputError(f"{path}: truncated NIfTI file ({got} of {expected} voxel bytes)")
    if bad:
        raise InputError(f"{path}: image has {bad} NaN/inf pixel values")


def sform_shear(path: Path) -> float | None:
    """Largest |cosine| between two axes of the NIfTI sform (``None`` when the sform is
    unset or orthogonal). ITK cannot represent a sheared grid: it refuses the file or falls
    back to the qform, so the caller reports it instead of a wrong or puzzling geometry."""
    import nibabel as nib

    try:
        header = nib.load(str(path)).header
        sform, code = header.get_sform(coded=True)
    except Exception:  # noqa: BLE001 - a broken header is reported by the reader itself
        return None
    if sform is None or not code:
        return None
    axes = np.asarray(sform[:3, :3], dtype=float)
    norms = np.linalg.norm(axes, axis=0)
    if np.any(norms == 0):
        return None
    cosines = np.abs((axes / norms).T @ (axes / norms) - np.eye(3))
    shear = float(cosines.max())
    return shear if shear > 1e-4 else None


def shear_message(shear: float, used_qform: bool = False) -> str:
    """The one line that explains a sheared affine (angle between axes off 90 degrees)."""
    degrees = 90.0 - math.degrees(math.acos(min(1.0, shear)))
    resample = "resample the image onto an orthogonal grid (e.g. nibabel.processing.resample_from_to)"
    if used_qform:
        return (f"the NIfTI sform is sheared (two axes {degrees:.3g} degrees off perpendicular) and was ignored: "
                f"the geometry comes from the qform; if the sform is the true one, {resample}")
    return (f"the NIfTI affine is sheared (two axes {degrees:.3g} degrees off perpendicular), which medisam's "
            f"ITK-based reader cannot represent; {resample} first")
