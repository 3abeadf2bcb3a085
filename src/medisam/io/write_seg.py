"""DICOM-SEG output through highdicom.

A label map on the grid of a DICOM series becomes a BINARY segmentation with one segment
per label value present (BINARY rather than LABELMAP because every DICOM viewer and
3D Slicer read BINARY, while LABELMAP is a 2024 addition to the standard). Frames are
matched to the source instances by order: ``source["dicom_files"]`` is sorted exactly
like array axis 0, so slice ``k`` of the mask is stored against ``dicom_files[k]``.
Empty frames are omitted, as highdicom does by default.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from medisam.errors import InputError, require
from medisam.io.medical_image import MedicalImage

log = logging.getLogger(__name__)

SOFTWARE_NAME = "medisam"


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("medisam")
    except Exception:  # not installed as a distribution (source checkout)
        return "0.0.0"


def write_dicom_seg(
    labels: MedicalImage,
    path: Path,
    reference: MedicalImage | None,
    segment_names: dict[int, str] | None = None,
) -> None:
    """Write ``labels`` (``(Z, Y, X)`` ints on ``reference``'s grid) as a DICOM-SEG at ``path``."""
    hd = require("highdicom", "dicom")
    import pydicom
    from pydicom.sr.codedict import codes

    files = (reference.source.get("dicom_files") if reference is not None else None) or []
    if reference is None or reference.source.get("format") != "dicom" or not files:
        raise InputError(f"{path}: DICOM-SEG output needs reference= an image read from DICOM")
    if not reference.is_volume or reference.is_video or len(files) != reference.num_slices:
        raise InputError(
            f"{path}: DICOM-SEG output needs a DICOM series reference (one file per slice); "
            f"got a {'video' if reference.is_video else str(reference.spatial_ndim) + 'D'} image "
            f"from {len(files)} file(s); write .nii.gz or .png instead"
        )
    arr = np.asarray(labels.array)
    if arr.shape != reference.spatial_shape:
        raise InputError(f"{path}: mask shape {arr.shape} does not match the DICOM series {reference.spatial_shape}")
    values = [int(v) for v in np.unique(arr) if v != 0]
    if not values:
        raise InputError(f"{path}: mask is empty; a DICOM-SEG needs at least one labelled voxel")
    # segment numbers must be 1..N; label value v_k becomes segment k
    seg_array = np.zeros(arr.shape, dtype=np.uint16 if len(values) > 255 else np.uint8)
    for k, v in enumerate(values, start=1):
        seg_array[arr == v] = k
    names = segment_names or {}
    algorithm = hd.AlgorithmIdentificationSequence(
        name=SOFTWARE_NAME, version=_software_version(), family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=str(names.get(v, f"label {v}"))[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=f"label {v}",
            tracking_uid=hd.UID(),
        )
        for k, v in enumerate(values, start=1)
    ]
    try:
        sources = [pydicom.dcmread(f) for f in files]
    except Exception as exc:
        raise InputError(f"{path}: cannot re-read the source DICOM files ({type(exc).__name__}: {exc})") from exc
    for ds in sources:  # an empty (0008,0005) is legal but highdicom rejects it: it means the default
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet
    series_number = int(sources[0].get("SeriesNumber", 0) or 0) + 1000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = _build(hd, sources, seg_array, descriptions, series_number)
    for w in caught:  # highdicom's remarks about the *source* files (e.g. odd PatientName)
        log.debug("highdicom: %s", w.message)
    seg.save_as(str(path))
    log.info("wrote DICOM-SEG %s: %d segments, %d frames", path, len(values), int(seg.NumberOfFrames))


def _build(hd, sources, seg_array, descriptions, series_number):  # noqa: ANN001, ANN202 - thin wrapper
    """Call highdicom's Segmentation constructor with medisam's fixed attributes."""
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=seg_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=SOFTWARE_NAME,
        manufacturer_model_name=SOFTWARE_NAME,
        software_versions=_software_version(),
        device_serial_number="0",
        series_description="medisam segmentation",
        content_label="SEGMENTATION",
        content_description="Segmentation made with medisam",
    )
