"""Dice of the REST server's box + propagate on a real CT stored with its thick axis first, in the middle
and last: a tight box on the label's median slice (along the session's axis, ``SessionInfo.axis``; 0
where the server does not say), then ``/propagate``, scored against the label on the whole volume.

Run: MEDISAM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_axis_dice.py [--axis A]
(``--axis`` is sent with every upload; without it the server picks.) Prints one markdown row per layout.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DATA = Path("/work/shared/data/pyradiomics_lung_ct")
#: layout name -> where the CT's thick axis (array axis 0 as read) goes
LAYOUTS = {"slices first (as stored)": 0, "slices in the middle": 1, "slices last": 2}


def _nifti_bytes(array: np.ndarray, spacing_zyx: tuple[float, ...], tmp: Path) -> bytes:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))  # ITK order x, y, z
    path = tmp / "upload.nii.gz"
    sitk.WriteImage(img, str(path))
    return path.read_bytes()


def _tight_box_on_median_slice(label: np.ndarray, axis: int) -> tuple[int, list[float]]:
    """The label's median slice along ``axis`` and its tight box there (x0, y0, x1, y1 pixel edges)."""
    along = np.moveaxis(label, axis, 0)
    slices = np.nonzero(along.reshape(len(along), -1).any(axis=1))[0]
    k = int(slices[len(slices) // 2])
    rows, cols = np.nonzero(along[k])
    return k, [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / max(1, int(a.sum()) + int(b.sum()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--axis", default=None, help="sent as the upload's axis field (default: not sent)")
    args = ap.parse_args()
    import tempfile

    from fastapi.testclient import TestClient

    from medisam.client import decode_array
    from medisam.models import load_model
    from medisam.models.runtime import backend_available
    from medisam.serve import ServerSettings, create_app

    backend = "openvino" if backend_available("openvino") else "torch"
    model = load_model("litemedsam", device="cpu", backend=backend, precision="fp32" if backend == "openvino" else None)
    settings = ServerSettings(model="litemedsam", device="cpu", allowed_hosts=("testserver",),
                              request_timeout_s=3600.0)
    print("| case | layout (shape) | session axis | median slice | slice plane | labelled slices | Dice | s |")
    print("|---|---|---|---|---|---|---|---|")
    with TestClient(create_app(settings, model=model)) as tc, tempfile.TemporaryDirectory() as tmpdir:
        for image_path in sorted((DATA / "imagesTr").glob("*_0000.nii.gz")):
            case = image_path.name.removesuffix("_0000.nii.gz")
            img = sitk.ReadImage(str(image_path))
            array = sitk.GetArrayFromImage(img)
            label = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "labelsTr" / f"{case}.nii.gz"))) > 0
            spacing = np.array(img.GetSpacing()[::-1])  # zyx
            for layout, to in LAYOUTS.items():
                arr, lab = np.moveaxis(array, 0, to), np.moveaxis(label, 0, to)
                sp = [float(v) for v in spacing[1:]]
                sp.insert(to, float(spacing[0]))  # the thick spacing moves with its axis
                data = _nifti_bytes(arr, tuple(sp), Path(tmpdir))
                form = {"modality": "CT", **({"axis": args.axis} if args.axis is not None else {})}
                r = tc.post("/sessions", files={"file": ("ct.nii.gz", io.BytesIO(data).read())}, data=form)
                assert r.status_code == 201, r.text
                info = r.json()
                sid, axis = info["session_id"], int(info.get("axis", 0))
                k, box = _tight_box_on_median_slice(lab, axis)
                t0 = time.perf_counter()
                r = tc.post(f"/sessions/{sid}/predict", json={"slice": k, "box": box})
                assert r.status_code == 200, r.text
                out = tc.post(f"/sessions/{sid}/propagate").json()
                seconds = time.perf_counter() - t0
                pred = decode_array(tc.get(f"/sessions/{sid}/labels").json()) > 0
                plane = [arr.shape[a] for a in range(3) if a != axis]
                print(f"| {case} | {layout} {tuple(arr.shape)} | {axis} | {k} | {plane[0]}x{plane[1]} | "
                      f"{out['slices_with_labels']} | {dice(pred, lab):.4f} | {seconds:.0f} |", flush=True)
                tc.delete(f"/sessions/{sid}")


if __name__ == "__main__":
    main()
