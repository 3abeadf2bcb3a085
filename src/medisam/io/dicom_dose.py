"""RT Dose values as doses: stored value x DoseGridScaling (3004,000E), which GDCM does not apply.

The RT Dose IOD defines the dose on the stored pixel value (PS3.3 C.8.8.3) and has no rescale; GDCM
applies RescaleSlope/Intercept only, so an RT Dose file read through SimpleITK gives raw integers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom

from medisam.io.dicom_geometry import floats
from medisam.io.dicom_pixels import gdcm_rescale
from medisam.io.medical_image import MedicalImage

log = logging.getLogger(__name__)

#: RT Dose attributes read with each slice's header (:func:`to_dose`).
DOSE_TAGS = ["DoseGridScaling", "DoseUnits"]
#: DoseUnits (3004,0002) values as a unit.
DOSE_UNITS = {"GY": "Gy", "RELATIVE": "relative"}


def dose_scaling(ds: pydicom.Dataset) -> float | None:
    """DoseGridScaling (3004,000E) of an RT Dose header: the dose of one stored pixel value (PS3.3 C.8.8.3);
    None when absent, blank or not positive."""
    value = floats([ds.get("DoseGridScaling")], 1)
    return value[0] if value and value[0] > 0 else None


def dose_rescale(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """(slope, intercept) from stored values to what :func:`to_dose` leaves in the array, for the Pixel
    Padding check (:func:`~medisam.io.dicom_padding.slice_padding`); None without DoseGridScaling."""
    scale = dose_scaling(ds)
    return None if scale is None else (scale, 0.0)


def to_dose(image: MedicalImage, headers: Sequence[pydicom.Dataset], where: Path) -> MedicalImage:
    """The array as doses, float32: stored value x DoseGridScaling, per array slice whose header has one
    (``headers``: one per array slice, or one for a whole multi-frame file), in DoseUnits (``source["dose"]``).

    GDCM has applied RescaleSlope/Intercept, not DoseGridScaling. The RT Dose IOD has no rescale and
    defines the dose on the stored value, so a rescale is undone first: an exporter that copies the
    scaling into RescaleSlope (for viewers that know no RT Dose) does not get it applied twice, and any
    other rescale beside DoseGridScaling is left out, with a log warning."""
    scales = [dose_scaling(h) for h in headers]
    if all(s is None for s in scales):
        return image
    arr = image.array.astype(np.float64)
    slices = arr[None] if arr.ndim == 2 else arr
    for k, (ds, scale) in enumerate(zip(headers, scales)):
        if scale is None:
            continue
        slope, intercept = gdcm_rescale(ds)
        if not (np.isclose(slope, 1.0) and intercept == 0) and not (np.isclose(slope, scale) and intercept == 0):
            log.warning("%s: RescaleSlope %g and RescaleIntercept %g beside DoseGridScaling %g: the dose is the "
                        "stored value x DoseGridScaling (the RT Dose definition); the rescale is left out",
                        where, slope, intercept, scale)
        part = slices if len(headers) == 1 else slices[k]
        part[...] = (part - intercept) / slope * scale
    units = str(headers[0].get("DoseUnits", "") or "").strip().upper()
    given = sorted({s for s in scales if s is not None})
    dose = {"grid_scaling": given[0] if len(given) == 1 else given, "units": DOSE_UNITS.get(units, units or "?")}
    log.info("%s: RT Dose values x DoseGridScaling %s, in %s", where, dose["grid_scaling"], dose["units"])
    return image.with_array(arr.astype(np.float32), source={**image.source, "dose": dose})

