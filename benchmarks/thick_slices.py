"""3D boxes on thick slices: three views against the session axis alone, by slice thickness.

Why: the two other views of a 3D box see planes that cross the slices; on thick slices those
planes are mostly interpolation (stretched to square pixels) and a 2D model can fail on them
(docs/speed.md, stop 40). This prints, per volume and target, the Dice of:

* ``default``: the 3D box as a user gets it (``PropagationConfig()``: views skipped across
  slices more than ``view_max_anisotropy`` (4) times thicker than their pixels; where the
  session axis is confident (``view_trusted_score``, 0.85), a view that agrees with it below
  ``view_min_agreement`` (0.15) left out of the vote);
* ``every-view``: the three views always voting (the behaviour before stop 40);
* ``single``: the session axis alone (``views=1``).

Volumes (real data from ``../shared/data``):

* BraTS FLAIR, all 4 cases, every ``k``-th slice kept (``--brats-steps 1,2,3,4,5``: 1 to 5 mm
  slices of 1 mm pixels), whole tumour and tumour core, labels taken the same way;
* pyradiomics lung1 at its own 5 mm (0.57 mm pixels): the left lung, labelled by an air
  threshold inside the body (largest air component, left of the midline, holes filled:
  not anatomical, but a whole organ of the size a user boxes);
* ``--lung-resampled``: lung1 resampled to 1.25 mm slices (192x512x512, slow: minutes per
  variant), the volume whose coronal views failed (Dice 0.133 before stop 40).

    python benchmarks/thick_slices.py [--brats-steps 1,3,5] [--variants default,every-view,single]
        [--lung-resampled] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from propagation_3d import DATA, brats_cases, dice, tight_box3d  # noqa: E402

from medisam.io import read_image  # noqa: E402
from medisam.io.medical_image import MedicalImage  # noqa: E402
from medisam.models import load_model  # noqa: E402
from medisam.predict import Predictor, PropagationConfig, VolumeSession  # noqa: E402
from medisam.predict.volume import volume_to_display  # noqa: E402

VARIANTS = {
    "default": PropagationConfig(),
    "every-view": PropagationConfig(view_max_anisotropy=float("inf"), view_min_agreement=0.0),
    "single": PropagationConfig(views=1),
}


#: (table row, case, image, CT window or None, {target: (Z, Y, X) bool truth})
Volume = tuple[str, str, MedicalImage, "str | None", dict[str, np.ndarray]]


def brats_thinned(step: int) -> list[Volume]:
    """BraTS FLAIR cases with every ``step``-th slice (display uint8, as propagation_3d.py)."""
    out = []
    for case in brats_cases(4):
        vol8 = np.rint(volume_to_display(case.image.array, case.image.modality)).astype(np.uint8)
        sx, sy, sz = case.image.spacing
        image = MedicalImage.from_array(vol8[::step], spacing=(sx, sy, sz * step), is_rgb=False)
        out.append((f"BraTS {sz * step:g} mm", case.name, image, None,
                    {t: m[::step] for t, m in case.targets.items()}))
    return out


def left_lung(hu: np.ndarray) -> np.ndarray:
    """The largest air component inside the body, left of the midline, holes filled per slice."""
    from scipy import ndimage as ndi

    body = ndi.binary_opening(ndi.binary_fill_holes(hu > -500, structure=np.ones((1, 3, 3))), iterations=2)
    air = ndi.binary_opening((hu < -400) & body, iterations=2)
    labels, _ = ndi.label(air)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    lung = labels == int(np.argmax(sizes))
    lung[:, :, hu.shape[2] // 2:] = False
    return ndi.binary_fill_holes(lung, structure=np.ones((1, 3, 3)))


def lung_volumes(resampled: bool) -> list[Volume]:
    path = DATA / "pyradiomics_lung_ct" / "imagesTr" / "lung1_0000.nii.gz"
    if not path.is_file():
        return []
    image = read_image(path)
    out = [("lung1 5 mm", "lung1", image, "lung", {"left lung": left_lung(image.array)})]
    if resampled:
        import SimpleITK as sitk

        itk = sitk.GetImageFromArray(image.array.astype(np.float32))
        itk.SetSpacing(image.spacing)
        size = [image.array.shape[2], image.array.shape[1], int(round(image.array.shape[0] * image.spacing[2] / 1.25))]
        spacing = (image.spacing[0], image.spacing[1], 1.25)
        thin = sitk.GetArrayFromImage(sitk.Resample(itk, size, sitk.Transform(), sitk.sitkLinear, itk.GetOrigin(),
                                                    spacing, itk.GetDirection(), -1024.0))
        resampled_image = MedicalImage.from_array(thin, spacing=spacing, is_rgb=False, modality="CT")
        out.append(("lung1 resampled to 1.25 mm", "lung1", resampled_image, "lung", {"left lung": left_lung(thin)}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brats-steps", default="1,3,5", help="comma list: keep every k-th BraTS slice")
    ap.add_argument("--variants", default="default,every-view,single", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--lung-resampled", action="store_true", help="also lung1 at 1.25 mm (slow)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    model = load_model("litemedsam", threads=args.threads or None)
    print(f"# model: backend {model.backend}, precision {model.precision}", flush=True)
    volumes = [v for k in (int(s) for s in args.brats_steps.split(",") if s.strip()) for v in brats_thinned(k)]
    volumes += lung_volumes(args.lung_resampled)
    if not volumes:
        print(f"no data under {DATA}", file=sys.stderr)
        return 1
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    t_all = time.perf_counter()
    for group, name, image, window, targets in volumes:
        predictor = Predictor(model)  # the variants of one volume share its embeddings (accuracy only)
        for target, truth in targets.items():
            box = tight_box3d(truth)
            scores = []
            for v in variants:
                session = VolumeSession(model, image, window=window, predictor=predictor, config=VARIANTS[v])
                session.add_box3d(box, obj_id=1)
                d = dice(session.propagate(progress=False).array == 1, truth)
                rows.setdefault((group, target), {}).setdefault(v, []).append(d)
                scores.append(f"{v} {d:.4f}")
            print(f"# {group} {name} {target}: " + ", ".join(scores), flush=True)
    print("\n| volume | target | n | " + " | ".join(variants) + " |")
    print("|---|---|---|" + "---|" * len(variants))
    for (group, target), res in rows.items():
        print(f"| {group} | {target} | {len(res[variants[0]])} | "
              + " | ".join(f"{np.mean(res[v]):.4f}" for v in variants) + " |")
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f} s (Dice only: variants share embeddings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
