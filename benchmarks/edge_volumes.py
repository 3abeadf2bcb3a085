"""Write a small labelled 3D set of edge cases (nnU-Net layout) for ``medisam bench -p cvpr25-box3d``.

The two 3D sets here (hippocampus, BraTS) hold neither thin objects nor thick slices; volumes the
protocol will meet do. Each case is synthetic (bright objects on noise), so the truth is exact:

* ``edge_a``: a ball (label 1), a one-voxel object (label 2) and a one-slice object on the
  volume's last slice, touching its border (label 5: the labels have a gap);
* ``edge_b``: 6 slices of 5 mm, the object on the first slice only;
* ``edge_c``: a constant image (no contrast: only the clicks can find the object);
* ``edge_d``: a volume of two slices.

    python benchmarks/edge_volumes.py runs/edge
    medisam bench runs/edge -p cvpr25-box3d -o runs/edge_out -w 1

Stop 48 found with it that a positive click wiped ``edge_a``'s one-slice object (docs/interactive3d.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def save_case(out: Path, name: str, image: np.ndarray, labels: np.ndarray, spacing_xyz=(1.0, 1.0, 1.0)) -> None:
    """Write one nnU-Net case: ``imagesTr/<name>_0000.nii.gz`` (float32) and ``labelsTr/<name>.nii.gz`` (uint8)."""
    for array, path in ((image.astype(np.float32), out / "imagesTr" / f"{name}_0000.nii.gz"),
                        (labels.astype(np.uint8), out / "labelsTr" / f"{name}.nii.gz")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(spacing_xyz)
        sitk.WriteImage(itk, str(path))


def write_cases(out: Path, seed: int = 0) -> list[str]:
    """Write the four cases under ``out`` (``imagesTr``, ``labelsTr``); returns their ids."""
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:48, :96, :96]
    image = rng.normal(0, 20, (48, 96, 96)) + 100
    labels = np.zeros((48, 96, 96), np.uint8)
    ball = (z - 24) ** 2 + (y - 48) ** 2 + (x - 40) ** 2 < 12 ** 2
    labels[ball], image[ball] = 1, image[ball] + 200
    labels[10, 80, 80], image[10, 80, 80] = 2, image[10, 80, 80] + 300
    labels[47, 0:20, 60:90], image[47, 0:20, 60:90] = 5, image[47, 0:20, 60:90] + 150
    save_case(out, "edge_a", image, labels)
    image = rng.normal(0, 20, (6, 96, 96)) + 100
    labels = np.zeros((6, 96, 96), np.uint8)
    labels[0, 30:60, 30:60], image[0, 30:60, 30:60] = 1, image[0, 30:60, 30:60] + 200
    save_case(out, "edge_b", image, labels, (0.8, 0.8, 5.0))
    labels = np.zeros((24, 64, 64), np.uint8)
    labels[8:16, 20:40, 20:40] = 1
    save_case(out, "edge_c", np.full((24, 64, 64), 50.0), labels)
    image = rng.normal(0, 20, (2, 64, 64)) + 100
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[:, 10:30, 10:50] = 1
    image[labels > 0] += 150
    save_case(out, "edge_d", image, labels)
    return ["edge_a", "edge_b", "edge_c", "edge_d"]


def refuse_written(out: Path) -> None:
    """Exit with a one-line error when ``out`` already holds labels (a set is never overwritten)."""
    if (out / "labelsTr").exists() and any((out / "labelsTr").iterdir()):
        raise SystemExit(f"error: {out} already holds labels; choose an empty folder")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="folder to write (imagesTr/, labelsTr/)")
    args = ap.parse_args(argv)
    refuse_written(args.out)
    print(f"wrote {', '.join(write_cases(args.out))} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
