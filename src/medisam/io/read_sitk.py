"""NIfTI / NRRD / MetaImage reader through SimpleITK.

SimpleITK converts NIfTI's RAS to ITK's LPS and reads NRRD/MHA geometry, so the result
carries the exact spacing/origin/direction SimpleITK reports (see ``sitk_convert``).
A 4D image or a multi-component (vector) volume is refused unless ``channel`` picks one
volume/component; a 2D 3-component uint8 image is read as RGB.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import SimpleITK as sitk

from medisam.errors import InputError
from medisam.io.detached import check_data_files
from medisam.io.itk_quiet import quiet_itk
from medisam.io.limits import check_size
from medisam.io.medical_image import MedicalImage
from medisam.io.nifti_check import check_nifti, sform_shear, shear_message
from medisam.io.registry import ReadOptions, register_reader
from medisam.io.sitk_convert import sitk_to_image

log = logging.getLogger(__name__)

FORMATS = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}


def _format_of(path: Path) -> str:
    name = path.name.lower()
    return "nifti" if name.endswith((".nii", ".nii.gz")) else FORMATS.get(path.suffix.lower(), "itk")


def _check_channel(path: Path, channel: int | None, n: int, what: str) -> int:
    if channel is None:
        raise InputError(f"{path}: image has {n} {what}; choose one with --channel 0..{n - 1} "
                         f"(channel=0..{n - 1} in Python)")
    if not 0 <= channel < n:
        raise InputError(f"{path}: channel {channel} out of range, image has {n} {what} (0..{n - 1})")
    return channel


def read_sitk(path: Path, opts: ReadOptions) -> MedicalImage:
    """Read a NIfTI/NRRD/MHA/MHD file; geometry is kept exactly as SimpleITK reports it."""
    check_data_files(path)  # a detached data file must be a regular file (never a FIFO or device)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        shear = sform_shear(path) if _format_of(path) == "nifti" else None
        if shear is not None:
            raise InputError(f"{path}: {shear_message(shear)}") from None
        raise InputError(f"{path}: cannot read image header (corrupt or not a {_format_of(path)} file)") from exc
    size = reader.GetSize()
    comps = reader.GetNumberOfComponents()
    dim = reader.GetDimension()
    shape = tuple(reversed(size)) + ((comps,) if comps > 1 else ())
    check_size(shape, path, opts.max_voxels)
    if dim == 4:
        # Check the channel choice before reading the 4D pixel data.
        _check_channel(path, opts.channel, size[3], "volumes (4D)")
    elif dim not in (2, 3):
        raise InputError(f"{path}: {dim}D images are not supported (2D or 3D only)")
    if _format_of(path) == "nifti":
        check_nifti(path)
    try:
        with quiet_itk():  # e.g. "unexpected scales in sform": reported below
            img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read pixel data (corrupt or truncated file)") from exc
    if dim == 4:
        c = opts.channel
        img = sitk.Extract(img, [size[0], size[1], size[2], 0], [0, 0, 0, c])
    is_rgb_2d = comps == 3 and dim == 2 and img.GetPixelID() == sitk.sitkVectorUInt8
    if comps > 1 and not is_rgb_2d:
        c = _check_channel(path, opts.channel, comps, "components per voxel")
        img = sitk.VectorIndexSelectionCast(img, c)
    elif comps == 1 and opts.channel not in (None, 0) and dim != 4:
        raise InputError(f"{path}: channel {opts.channel} requested but the image has a single channel")
    fmt = _format_of(path)
    image = sitk_to_image(img, modality=opts.modality or "OT", source={"format": fmt})
    shear = sform_shear(path) if fmt == "nifti" else None
    if shear is not None:  # ITK fell back to the (orthogonal) qform: say so
        image = replace(image, geometry_warnings=(shear_message(shear, used_qform=True),))
    log.debug("read %s: shape %s spacing %s", path, image.array.shape, image.spacing)
    return image


register_reader(tuple(FORMATS), read_sitk, picks_channel=True)
