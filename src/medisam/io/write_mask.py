"""``write_mask``: save a label map in the format named by the file extension.

Formats: ``.nii``/``.nii.gz``/``.nrrd``/``.nhdr``/``.mha``/``.mhd`` (SimpleITK, exact
geometry), ``.png`` (2D; visible: one object as 0/255 grey, up to 255 labels as a palette PNG
whose indices are the labels, more as 16-bit grey; see :mod:`medisam.io.label_png`, whose
``read_label_png`` reads all three back as label values), ``.npz`` (key ``segs`` as in the CVPR24 challenge, plus
``spacing`` in ITK order), ``.dcm`` (DICOM-SEG; needs a DICOM series or single-slice reference).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from medisam.errors import InputError
from medisam.io.atomic import atomic_write
from medisam.io.label_png import encode_label_png
from medisam.io.medical_image import MedicalImage
from medisam.io.sitk_convert import image_to_sitk
from medisam.io.write_seg import write_dicom_seg

log = logging.getLogger(__name__)

Writer = Callable[[MedicalImage, Path, "MedicalImage | None", "dict[int, str] | None"], None]


def _write_sitk(labels: MedicalImage, tmp: Path, reference: MedicalImage | None, names: dict | None) -> None:
    sitk.WriteImage(_placed(labels), str(tmp), useCompression=not tmp.name.lower().endswith(".nii"))


def _placed(labels: MedicalImage) -> sitk.Image:
    """The SimpleITK image of ``labels``; the mask of one DICOM slice is a one-slice volume at the slice's
    place in patient space (``source["geometry3d"]``): as a 2D image it sat at z = 0, in another plane
    than the slice, and an oblique slice lost its orientation."""
    placement = labels.source.get("geometry3d") if labels.spatial_ndim == 2 and not labels.is_video else None
    if placement is None:
        return image_to_sitk(labels)
    img = sitk.GetImageFromArray(np.ascontiguousarray(labels.array)[None])
    img.SetSpacing(tuple(float(v) for v in placement["spacing"]))
    img.SetOrigin(tuple(float(v) for v in placement["origin"]))
    img.SetDirection(tuple(float(v) for v in placement["direction"]))
    return img


def _write_png(labels: MedicalImage, tmp: Path, reference: MedicalImage | None, names: dict | None) -> None:
    if labels.spatial_ndim != 2:
        raise InputError(f"{tmp.name}: PNG output needs a 2D mask, got shape {labels.array.shape}; use .nii.gz")
    tmp.write_bytes(encode_label_png(labels.array))


def _write_npz(labels: MedicalImage, tmp: Path, reference: MedicalImage | None, names: dict | None) -> None:
    with open(tmp, "wb") as fh:  # a file object, so numpy does not append another ".npz"
        np.savez_compressed(fh, segs=labels.array, spacing=np.asarray(labels.spacing, dtype=np.float64))


def _write_dcm(labels: MedicalImage, tmp: Path, reference: MedicalImage | None, names: dict | None) -> None:
    write_dicom_seg(labels, tmp, reference, names)


#: Lower-case extension -> writer, one place to add output formats.
WRITERS: dict[str, Writer] = {
    ".nii": _write_sitk, ".nii.gz": _write_sitk, ".nrrd": _write_sitk, ".nhdr": _write_sitk,
    ".mha": _write_sitk, ".mhd": _write_sitk, ".png": _write_png, ".npz": _write_npz, ".dcm": _write_dcm,
}


def mask_extension(path: Path) -> str:
    """The writer extension of ``path`` (longest match, lower case); InputError if unsupported."""
    name = path.name.lower()
    matches = [ext for ext in WRITERS if name.endswith(ext)]
    if not matches:
        raise InputError(f"{path}: unsupported mask format '{path.suffix}'; use one of {', '.join(WRITERS)}")
    return max(matches, key=len)


def _as_label_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Validate and narrow a label array: non-negative integers -> uint8/uint16/uint32 (the array
    itself where it has that type already; callers only read the result)."""
    a = np.asarray(array)
    if a.dtype == bool:
        return a.view(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise InputError(f"{path}: mask must hold integer labels, got non-integer {a.dtype} values")
    elif a.dtype.kind not in "iu":
        raise InputError(f"{path}: mask must hold integer labels, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise InputError(f"{path}: mask has negative labels (min {a.min()})")
    top = int(a.max(initial=0))
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    return a.astype(dtype, copy=False)  # no copy of a label map of that type already (225 MiB for 512 x 512 x 900)


def _protected_paths(*images: MedicalImage | None) -> list[str]:
    out: list[str] = []
    for im in images:
        if im is not None:
            out += [p for p in [im.source.get("path"), *(im.source.get("dicom_files") or [])] if p]
    return out


def write_mask(
    mask: MedicalImage | np.ndarray,
    path: str | Path,
    *,
    reference: MedicalImage | None = None,
    force: bool = False,
    segments: dict | None = None,
) -> Path:
    """Write a label map atomically; returns the written path.

    Geometry comes from ``mask`` when it is a MedicalImage, else from ``reference`` (identity
    geometry when neither is given). ``reference`` must be the image the mask belongs to for
    DICOM-SEG output; its files are never overwritten. ``segments`` maps label value to
    a DICOM-SEG segment's meaning: a name (``"liver"``), a labels-JSON object or a
    :class:`~medisam.io.segment_meaning.SegmentMeaning` (default "label N", generic codes);
    other formats ignore it.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is False.
        InputError: unsupported extension, non-integer labels, shape not matching
            ``reference``, format that cannot hold the mask, or ``path`` is an input file.
    """
    path = Path(path).expanduser()
    ext = mask_extension(path)
    if isinstance(mask, MedicalImage):
        if mask.is_rgb:
            raise InputError(f"{path}: mask must be a single-channel label map, got an RGB image")
        labels = replace(mask, array=_as_label_array(mask.array, path), kind="labels")
    else:
        arr = _as_label_array(mask, path)
        if reference is not None:
            if tuple(arr.shape) != reference.spatial_shape:
                raise InputError(
                    f"{path}: mask shape {arr.shape} does not match reference image {reference.spatial_shape}"
                )
            labels = replace(reference, array=arr, is_rgb=False, kind="labels")
        else:
            labels = replace(MedicalImage.from_array(arr, is_rgb=False), kind="labels")
    if reference is not None and labels.spatial_shape != reference.spatial_shape:
        raise InputError(
            f"{path}: mask shape {labels.spatial_shape} does not match reference image {reference.spatial_shape}"
        )
    protected = _protected_paths(reference, mask if isinstance(mask, MedicalImage) else None)
    with atomic_write(path, force=force, protected=protected) as tmp:
        WRITERS[ext](labels, tmp, reference, segments)
    log.info("wrote mask %s (%s, shape %s)", path, ext, labels.array.shape)
    return path
