"""DICOM-SEG output through highdicom.

A label map on the grid of a DICOM series becomes a BINARY segmentation with one segment
per label value present (BINARY rather than LABELMAP because every DICOM viewer and
3D Slicer read BINARY, while LABELMAP is a 2024 addition to the standard). Frames are
matched to the source instances by order: ``source["dicom_files"]`` is sorted exactly
like array axis 0, so slice ``k`` of the mask is stored against ``dicom_files[k]``.
Empty frames are omitted, as highdicom does by default.

Each segment carries its meaning (:mod:`medisam.io.segment_meaning`): label name, SNOMED CT
category and type codes and a recommended display colour (CIELab, as dcmqi writes it);
labels without a given name stay ``"label N"`` with generic "Tissue" codes.

Anonymised series often carry blanked or deleted attributes. Before highdicom sees the
source headers, :func:`prepare_sources` fills what the files themselves still carry
(SOP Class/Instance UID from the file meta header, Slice Thickness from the slice
spacing), adds Type 2 patient/study attributes as empty values (which the standard
allows), and refuses with one line naming the attribute when a reference the SEG cannot
be written without (Study/Series/Frame of Reference UID, the plane geometry) is absent.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from medisam.errors import InputError, first_line, require
from medisam.io.medical_image import MedicalImage
from medisam.io.segment_meaning import NAME_CHARS, SegmentMeaning, Spec, dicom_text, generic, resolve

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
    segments: dict[int, Spec] | None = None,
) -> None:
    """Write ``labels`` (``(Z, Y, X)`` ints on ``reference``'s grid) as a DICOM-SEG at ``path``.

    ``segments`` maps label value -> a name (``"liver"``), a labels-JSON object or a
    :class:`~medisam.io.segment_meaning.SegmentMeaning`; unknown names raise InputError.
    """
    hd = require("highdicom", "dicom")
    import pydicom
    from pydicom.sr.codedict import codes

    problem = seg_reference_problem(reference)
    if problem is not None:
        raise InputError(problem)
    files = reference.source["dicom_files"]
    arr = np.asarray(labels.array)
    if arr.shape != reference.spatial_shape:
        raise InputError(f"DICOM-SEG output: mask shape {arr.shape} does not match the DICOM series "
                         f"{reference.spatial_shape}")
    if reference.spatial_ndim == 2:  # one DICOM slice: a SEG with one frame on it
        arr = arr[None]
    values = [int(v) for v in np.unique(arr) if v != 0]
    if not values:
        raise InputError("DICOM-SEG output: mask is empty; a DICOM-SEG needs at least one labelled voxel")
    # segment numbers must be 1..N; label value v_k becomes segment k
    seg_array = np.zeros(arr.shape, dtype=np.uint16 if len(values) > 255 else np.uint8)
    for k, v in enumerate(values, start=1):
        seg_array[arr == v] = k
    meanings = resolve(segments)
    absent = sorted(set(meanings) - set(values))
    if absent:
        log.warning("DICOM-SEG: named label(s) %s are not in the mask", ", ".join(map(str, absent)))
    algorithm = hd.AlgorithmIdentificationSequence(
        name=SOFTWARE_NAME, version=_software_version(), family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [_description(hd, k, meanings.get(v) or generic(v), algorithm, v)
                    for k, v in enumerate(values, start=1)]
    try:
        sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    except Exception as exc:
        raise InputError(f"DICOM-SEG output: cannot re-read the source DICOM files ({type(exc).__name__}: {exc})") from exc
    prepare_sources(sources, files, slice_spacing=_slice_spacing(reference))
    series_number = _int_or(sources[0].get("SeriesNumber"), 0) + 1000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            seg = _build(hd, sources, seg_array, descriptions, series_number)
        except (ValueError, KeyError, AttributeError, TypeError) as exc:  # highdicom's checks of the sources
            raise InputError(f"DICOM-SEG output: highdicom cannot build a DICOM-SEG on this series "
                             f"({type(exc).__name__}: {first_line(exc)}); "
                             f"write the mask as .nii.gz instead") from exc
    for w in caught:  # highdicom's remarks about the *source* files (e.g. odd PatientName)
        log.debug("highdicom: %s", w.message)
    if not all(_ascii(m) for m in (meanings.get(v) or generic(v) for v in values)):
        seg.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the default repertoire is ASCII ("é" was written "?")
    seg.save_as(str(path))
    log.info("wrote DICOM-SEG %s: %d segments, %d frames", path, len(values), int(seg.NumberOfFrames))


def _ascii(m: SegmentMeaning) -> bool:
    return all(t.isascii() for t in (m.name, m.category.meaning, m.type.meaning, m.category.value, m.type.value))


def _description(hd, number: int, m: SegmentMeaning, algorithm, value: int):  # noqa: ANN001, ANN202
    """highdicom's SegmentDescription for segment ``number`` (label ``value``) with meaning ``m``."""
    def coded(c):  # noqa: ANN001, ANN202
        return hd.sr.CodedConcept(c.value, c.scheme, c.meaning)

    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=dicom_text(m.name, f"label {value}: the name", NAME_CHARS),
        segmented_property_category=coded(m.category),
        segmented_property_type=coded(m.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
        tracking_id=f"label {value}",
        tracking_uid=hd.UID(),
        display_color=hd.color.CIELabColor.from_rgb(*m.color),
    )


#: Attributes a SEG must copy from its source series; without them it cannot reference it.
REQUIRED = {
    "StudyInstanceUID": "(0020,000D)",
    "SeriesInstanceUID": "(0020,000E)",
    "FrameOfReferenceUID": "(0020,0052)",
    "ImagePositionPatient": "(0020,0032)",
    "ImageOrientationPatient": "(0020,0037)",
    "PixelSpacing": "(0028,0030)",
}
#: Type 2 patient/study attributes of the SEG: may be empty, but must be present.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "AccessionNumber", "ReferringPhysicianName", "StudyID")


def _int_or(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _empty(value: object) -> bool:
    """True for an absent, empty or blank DICOM value (``None``, ``""``, an empty multi-value)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return hasattr(value, "__len__") and len(value) == 0  # type: ignore[arg-type]


def _missing(source: str, keyword: str, tag: str) -> InputError:
    return InputError(f"DICOM-SEG output: the source DICOM {Path(source).name} has no {keyword} {tag} (blanked by an "
                      f"anonymiser?); a DICOM-SEG must reference it: write the mask as .nii.gz instead")


def seg_reference_problem(reference: MedicalImage | None) -> str | None:
    """Why a DICOM-SEG cannot be written on ``reference`` (one line), or None when it can: it needs an
    image read from DICOM with one file per slice (a series, or a single slice), not a video or a
    multi-frame file. The CLI asks it before the model runs; :func:`write_dicom_seg` before writing."""
    files = (reference.source.get("dicom_files") if reference is not None else None) or []
    if reference is None or reference.source.get("format") != "dicom" or not files:
        got = "no source image" if reference is None else f"a {reference.source.get('format') or 'non-DICOM'} image"
        return (f"DICOM-SEG output needs an image read from DICOM (a series, or its folder or zip); "
                f"got {got}: write the mask as .nii.gz instead")
    one_slice = reference.spatial_ndim == 2 and len(files) == 1
    if reference.is_video or not (one_slice or (reference.is_volume and len(files) == reference.num_slices)):
        kind = "video" if reference.is_video else f"{reference.spatial_ndim}D image"
        return (f"DICOM-SEG output needs a DICOM series (one file per slice) or a single DICOM slice; got a "
                f"{kind} from {len(files)} file(s) (a multi-frame DICOM): write .nii.gz or .png instead")
    return None


def _slice_spacing(reference: MedicalImage) -> float:
    """The slice spacing a source without Slice Thickness is given: the series', or a single slice's
    third spacing as read (its thickness where the file has one)."""
    if reference.is_volume:
        return float(reference.spacing[2])
    return float(reference.source.get("geometry3d", {}).get("spacing", (1.0, 1.0, 1.0))[2])


def prepare_sources(sources: list, files: list[str], slice_spacing: float) -> None:
    """Make anonymised source headers usable by highdicom, in place (see the module docstring).

    Raises InputError naming the first attribute that is missing and cannot be recovered.
    """
    seen: dict[str, str] = {}
    for ds, f in zip(sources, files):
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            del ds.SpecificCharacterSet  # an empty (0008,0005) means the default; highdicom rejects it
        meta = getattr(ds, "file_meta", None)
        for keyword, meta_keyword, tag in (("SOPClassUID", "MediaStorageSOPClassUID", "(0008,0016)"),
                                           ("SOPInstanceUID", "MediaStorageSOPInstanceUID", "(0008,0018)")):
            if _empty(ds.get(keyword)):
                carried = str(meta.get(meta_keyword, "") or "").strip() if meta is not None else ""
                if not carried:
                    raise _missing(f, keyword, tag)
                setattr(ds, keyword, carried)
                log.info("%s: %s taken from the file meta header (%s)", Path(f).name, keyword, meta_keyword)
        for keyword, tag in REQUIRED.items():
            if _empty(ds.get(keyword)):
                raise _missing(f, keyword, tag)
        if str(ds.SOPInstanceUID) in seen:
            first = Path(seen[str(ds.SOPInstanceUID)]).name
            raise InputError(f"DICOM-SEG output: {Path(f).name} and {first} have the same "
                             "SOP Instance UID (0008,0018); a DICOM-SEG cannot tell them apart: write .nii.gz instead")
        seen[str(ds.SOPInstanceUID)] = f
        if _empty(ds.get("SliceThickness")):
            ds.SliceThickness = f"{slice_spacing:.6g}"  # type 1C in the SEG's pixel measures
        for keyword in TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")


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
