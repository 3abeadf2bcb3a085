"""The one place where SimpleITK images and :class:`MedicalImage` are converted.

SimpleITK arrays are already ``(Z, Y, X)`` and its spacing/origin/direction are in ITK
``(x, y, z)`` order, which is medisam's convention, so the conversion copies geometry
verbatim (no flips, no reordering) and round-trips exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from medisam.io.medical_image import MedicalImage


def sitk_to_image(
    img: sitk.Image,
    *,
    modality: str = "OT",
    is_video: bool = False,
    kind: str = "image",
    source: dict[str, Any] | None = None,
) -> MedicalImage:
    """Convert a 2D/3D SimpleITK image (scalar, or 3-component RGB) to a MedicalImage."""
    array = sitk.GetArrayFromImage(img)
    is_rgb = img.GetNumberOfComponentsPerPixel() > 1
    return MedicalImage(
        array=array,
        spacing=tuple(float(v) for v in img.GetSpacing()),
        origin=tuple(float(v) for v in img.GetOrigin()),
        direction=tuple(float(v) for v in img.GetDirection()),
        modality=modality,
        is_rgb=is_rgb,
        is_video=is_video,
        kind=kind,
        source=dict(source or {}),
    )


def image_to_sitk(image: MedicalImage, array: np.ndarray | None = None) -> sitk.Image:
    """Convert a MedicalImage (or ``array`` on its grid) to SimpleITK with identical geometry."""
    arr = image.array if array is None else array
    is_vector = image.is_rgb and array is None
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=is_vector)
    img.SetSpacing([float(v) for v in image.spacing])
    img.SetOrigin([float(v) for v in image.origin])
    img.SetDirection([float(v) for v in image.direction])
    return img
