"""A 4D enhanced multi-frame file: several frames at each slice position (b-values, time points, echoes).

medisam reads one 3D volume; such a file holds several. :func:`four_d_problem` says so in one line,
naming what the frames at one position differ in (the frame content and MR functional groups, and
whether the file's Dimension Index names it), with advice that works: convert the file to a 4D NIfTI
and pick one volume of it with ``--channel``. Frames repeated at a position without such a difference
stay :func:`~medisam.io.dicom_geometry.check_positions`' duplicate error.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue

from medisam.io.dicom_geometry import SliceHeader, functional_value

#: (functional group sequence, attribute, words) of the dimensions a 4D file's frames step through.
DIMENSIONS = (
    ("FrameContentSequence", "StackID", "stacks"),
    ("FrameContentSequence", "TemporalPositionIndex", "temporal positions"),
    ("MRDiffusionSequence", "DiffusionBValue", "b-values"),
    ("MREchoSequence", "EffectiveEchoTime", "echo times"),
    ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", "cardiac trigger delays"),
)
#: Steps along the slice normal below this (mm) are one position, as in check_positions.
SAME_POSITION = 1e-3


def position_groups(headers: Sequence[SliceHeader]) -> list[int] | None:
    """Per frame, the index of its slice position (0 = lowest along the slice normal); None without positions."""
    if any(h.position is None or h.orientation is None for h in headers):
        return None
    o = np.asarray(headers[0].orientation, float)
    normal = np.cross(o[:3], o[3:])
    if np.linalg.norm(normal) < 1e-6:
        return None
    z = np.array([h.position for h in headers], float) @ (normal / np.linalg.norm(normal))
    order = np.argsort(z, kind="stable")
    group = np.cumsum(np.r_[0, np.diff(z[order]) >= SAME_POSITION])
    out = np.empty(len(z), int)
    out[order] = group
    return [int(g) for g in out]


def _frame_values(ds: pydicom.Dataset) -> dict[str, tuple[str, list[object]]]:
    """Per dimension (:data:`DIMENSIONS`, then the DimensionIndexSequence's pointers): words, each frame's value."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or ()
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    out = {keyword: (words, [functional_value(f, shared, sequence, keyword) for f in per_frame])
           for sequence, keyword, words in DIMENSIONS}
    index = [functional_value(f, shared, "FrameContentSequence", "DimensionIndexValues") for f in per_frame]
    for j, keyword in enumerate(_indexed(ds)):
        if keyword in out and any(v is not None for v in out[keyword][1]):
            continue  # the attribute itself is in the frames
        values = [v[j] if isinstance(v, (list, MultiValue)) and len(v) > j else None for v in index]
        out[keyword] = (out[keyword][0] if keyword in out else f"values of {keyword}", values)
    return out


def _indexed(ds: pydicom.Dataset) -> list[str]:
    """Keywords the file's DimensionIndexSequence points to, in its order."""
    out = []
    for item in ds.get("DimensionIndexSequence") or ():
        pointer = item.get("DimensionIndexPointer")
        out.append((keyword_for_tag(pointer) or str(pointer)) if pointer is not None else "?")
    return out


def _varying(ds: pydicom.Dataset, groups: list[int]) -> list[tuple[str, str, int]]:
    """(attribute, words, distinct values) of each dimension that differs between frames at one position."""
    found = []
    for keyword, (words, values) in _frame_values(ds).items():
        if len(values) != len(groups):
            continue
        at_one = {}
        for g, v in zip(groups, values):
            if v is not None:
                at_one.setdefault(g, set()).add(str(v))
        if any(len(v) > 1 for v in at_one.values()):
            found.append((keyword, words, len(set().union(*at_one.values()))))
    return found


def four_d_problem(ds: pydicom.Dataset, headers: Sequence[SliceHeader]) -> str | None:
    """One line for an enhanced multi-frame file (``ds``, its header; ``headers``, its frames) whose frames at
    one slice position differ in a time, b-value, echo, stack or dimension index value; else None (repeated
    slices that differ in nothing stay check_positions' duplicates)."""
    groups = position_groups(headers)
    if groups is None or len(set(groups)) == len(headers):
        return None
    varying = _varying(ds, groups)
    if not varying:
        return None
    positions = len(set(groups))
    sizes = sorted({groups.count(g) for g in set(groups)})
    indexed = set(_indexed(ds))
    named = ", ".join(f"{n} {words} ({keyword}{', in its dimension index' if keyword in indexed else ''})"
                      if not words.startswith("values of") else f"{n} {words} (in its dimension index)"
                      for keyword, words, n in varying)
    per_position = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    volumes = f"--channel 0..{sizes[0] - 1}" if len(sizes) == 1 else "--channel K"
    return (f"{len(headers)} frames at {positions} position{'s' if positions > 1 else ''} ({per_position} per "
            f"position): a 4D file ({named}), not one volume; medisam segments one 3D volume: convert it with "
            "dcm2niix (dcm2niix -o OUTDIR FILE writes a 4D NIfTI, or one NIfTI per echo or stack) and read one "
            f"volume of a 4D NIfTI with {volumes} (channel= in Python)")
