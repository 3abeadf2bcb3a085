"""medisam's DICOM voxel values against pydicom's, file by file (every ``*.dcm`` in a folder).

For each file the reference is pydicom's ``ds.pixel_array`` (pydicom's own handlers: numpy, RLE,
pillow...), turned into what medisam promises: RT Dose = stored value x DoseGridScaling; otherwise the
modality LUT (``pydicom.pixels.apply_modality_lut``: RescaleSlope/Intercept); PALETTE COLOR through its
LUT (8-bit, as GDCM gives it); Pixel Padding Value voxels set to the lowest real value; frames in
medisam's order (``source["frame_order"]``). ``read_image``'s array is compared voxel by voxel (same
shape) or as sorted values (same size, other shape).

Outcome per file: ``ok`` (equal; floats to 1e-6 relative), ``close`` (a lossy syntax: decoders may
differ by a few grey levels; the largest difference is given), ``WRONG`` (values differ, with the
range of medisam / reference), ``error`` (medisam refuses it: the start of its message), ``no ref``
(pydicom cannot decode it: medisam's result is not checked) and ``not image`` (neither has pixels).

    python benchmarks/dicom_decode_check.py                       # pydicom's test files
    python benchmarks/dicom_decode_check.py FOLDER
    git archive HEAD src | tar -x -C /tmp/before                  # medisam as committed
    python benchmarks/dicom_decode_check.py --before /tmp/before/src   # a before / after table
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91"}


def default_folder() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def reference(path: Path) -> tuple[dict, np.ndarray | None, str]:
    """(header summary, pydicom's values as medisam should give them or None, why None)."""
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001
        return {"syntax": "-", "bits": "-"}, None, f"pydicom: {type(exc).__name__}"
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    head = {"syntax": ts.name if ts is not None else "-", "uid": str(ts or ""), "bits": ds.get("BitsAllocated", "-")}
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom's handlers raise many types
        return head, None, f"pydicom: {str(exc).strip().splitlines()[0][:60]}"
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return head, (rgb >> 8 if rgb.dtype.itemsize > 1 else rgb).astype(np.float64), ""
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return head, arr.astype(np.float64), ""
    stored = arr.astype(np.float64)
    scaling = ds.get("DoseGridScaling")
    values = stored * float(scaling) if scaling else apply_modality_lut(arr, ds).astype(np.float64)
    pad = ds.get("PixelPaddingValue")
    if pad is not None and not isinstance(pad, bytes):
        lo, hi = sorted((int(pad), int(ds.get("PixelPaddingRangeLimit", pad))))
        mask = (stored >= lo) & (stored <= hi)
        if 0 < mask.sum() < mask.size:
            values[mask] = values[~mask].min()
    return head, values, ""


def medisam_values(path: Path) -> tuple[np.ndarray | None, list[int] | None, str]:
    """(medisam's array, its frame order or None, the error's start when it refuses the file)."""
    from medisam.io import read_image

    try:
        img = read_image(path)
    except Exception as exc:  # noqa: BLE001 - a crash is a finding too
        message = str(exc).replace(str(path), "FILE").strip().splitlines()[0]
        return None, None, f"{type(exc).__name__}: {message[:70]}"
    return np.asarray(img.array, dtype=np.float64), img.source.get("frame_order"), ""


def outcome(path: Path, head: dict, ref: np.ndarray | None, why_not: str) -> str:
    """One file's outcome word and detail (see the module docstring)."""
    got, order, error = medisam_values(path)
    if ref is None:
        if error:
            return "not image" if "no pixel" in why_not.lower() or "has no" in why_not else f"error ({error})"
        return f"no ref ({why_not})"
    if error:
        return f"error ({error})"
    if order is not None and ref.ndim >= 3 and len(order) == ref.shape[0]:
        ref = ref[order]
    if got.shape != ref.shape:
        if got.size != ref.size:
            return f"WRONG (shape {got.shape}, pydicom {ref.shape})"
        got, ref = np.sort(got, axis=None), np.sort(ref, axis=None)
    diff = np.abs(got - ref)
    if np.all(diff <= 1e-6 * np.maximum(np.abs(ref), 1.0)):
        return "ok"
    if head.get("uid") in LOSSY and diff.max() <= 8:
        return f"close (lossy, max |d| {diff.max():g})"
    nonzero = np.abs(ref) > 0
    ratio = got[nonzero] / ref[nonzero] if nonzero.any() else np.array([np.nan])
    return f"WRONG (max |d| {diff.max():.4g}, ratio {np.nanmin(ratio):.3g}..{np.nanmax(ratio):.3g})"


def check(folder: Path) -> dict[str, dict]:
    """Every ``*.dcm`` in ``folder``: its header summary and outcome."""
    rows = {}
    for path in sorted(folder.glob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head, ref, why = reference(path)
            rows[path.name] = {**head, "outcome": outcome(path, head, ref, why)}
    return rows


def _before(folder: Path, src: Path) -> dict[str, dict]:
    """The same check run with medisam imported from ``src`` (e.g. ``git archive HEAD src``), in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, str(folder), "--json"], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=None, help="default: pydicom's test files")
    parser.add_argument("--before", type=Path, help="a medisam src folder to run as the 'before' column")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    folder = args.folder or default_folder()
    rows = check(folder)
    if args.json:
        print(json.dumps(rows))
        return 0
    import medisam

    before = _before(folder, args.before) if args.before else None
    print(f"# {folder} ({len(rows)} files); medisam from {Path(medisam.__file__).parent}")
    head = "| file | transfer syntax | bits | " + ("before | after |" if before else "medisam |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, row in rows.items():
        cells = [name, row["syntax"], str(row["bits"])]
        cells += [before.get(name, {}).get("outcome", "-"), row["outcome"]] if before else [row["outcome"]]
        print("| " + " | ".join(cells) + " |")
    words = [r["outcome"].split(" (")[0] for r in rows.values()]
    print("\nafter:" if before else "\ntotal:", {w: words.count(w) for w in sorted(set(words))})
    if before:
        words = [r["outcome"].split(" (")[0] for r in before.values()]
        print("before:", {w: words.count(w) for w in sorted(set(words))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
