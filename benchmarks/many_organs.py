"""Write a synthetic 14-organ abdominal CT (nnU-Net layout) to measure the CVPR25 protocol's cost
on a large many-class volume: ``medisam bench DIR -p cvpr25-box3d -o OUT -w 1``.

The two 3D sets here are small (hippocampus 35 slices, BraTS 4 classes); the protocol will meet
512 x 512 CTs with a dozen organs. The case: 512 x 512 x 120 voxels of 0.8 x 0.8 x 2.5 mm, HU
values, a body ellipse of soft tissue and 14 ellipsoids (liver, spleen, kidneys, aorta, vena cava,
stomach, pancreas, gallbladder, adrenals, a colon-like blob, spine, a 6 mm lesion; later ones are
painted over earlier ones), Gaussian noise of 15 HU. Some organs differ from soft tissue by only
10-30 HU, as real ones do. ``--sagittal`` stores the same case with the thick axis as the array's
last axis (spacing 2.5 x 0.8 x 0.8 mm), as a sagittal acquisition: the planner's and the cache's
cost depend on which axis is thick.

    python benchmarks/many_organs.py runs/abd
    python benchmarks/many_organs.py runs/sag --sagittal
    /usr/bin/time -v medisam bench runs/abd -p cvpr25-box3d -o runs/abd_out -w 1

Stop 49 found with it that interpolated embeddings took a quarter to half of the session's
embedding cache (docs/interactive3d.md, "Many organs in a 512 x 512 CT").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from edge_volumes import refuse_written, save_case  # benchmarks/: run as a script

#: (name, centre offset (z from the middle, y, x) mm, radii (z, y, x) mm, HU)
ORGANS = [("liver", (0, 180, 140), (90, 70, 60), 60), ("spleen", (20, 170, 300), (40, 45, 30), 50),
          ("kidney_left", (-30, 250, 150), (35, 22, 20), 160), ("kidney_right", (-30, 250, 260), (35, 22, 20), 160),
          ("aorta", (0, 230, 205), (140, 10, 10), 200), ("vena_cava", (0, 220, 180), (120, 11, 11), 140),
          ("stomach", (10, 150, 200), (20, 30, 45), 20), ("pancreas", (-10, 210, 200), (12, 15, 40), 90),
          ("gallbladder", (5, 160, 120), (15, 12, 12), 10), ("adrenal_left", (25, 210, 130), (10, 8, 8), 70),
          ("adrenal_right", (25, 210, 280), (10, 8, 8), 70), ("colon", (-60, 140, 205), (30, 25, 60), 40),
          ("spine", (0, 300, 205), (140, 16, 16), 600), ("lesion", (40, 120, 260), (6, 6, 6), 80)]


def abdomen(slices: int = 120, side: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image HU float32, labels uint8)``, both ``(Z, Y, X)`` at 2.5 x 0.8 x 0.8 mm."""
    sz, sxy = 2.5, 0.8
    zz = (np.arange(slices) * sz)[:, None, None]
    yy = (np.arange(side) * sxy)[None, :, None]
    xx = (np.arange(side) * sxy)[None, None, :]
    image = np.full((slices, side, side), -1000.0, np.float32)
    half = side * sxy / 2
    body = ((yy - half) / (side * sxy * 0.42)) ** 2 + ((xx - half) / (side * sxy * 0.47)) ** 2 < 1
    image[np.broadcast_to(body, image.shape)] = 30.0
    labels = np.zeros(image.shape, np.uint8)
    middle = slices * sz / 2
    for value, (_, (cz, cy, cx), (rz, ry, rx), hu) in enumerate(ORGANS, start=1):
        inside = ((zz - middle - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        inside &= body
        labels[inside] = value
        image[inside] = hu
    image += np.random.default_rng(seed).normal(0, 15, image.shape).astype(np.float32)
    return image, labels


def write_case(out: Path, sagittal: bool = False) -> str:
    """Write the case under ``out`` (``imagesTr``, ``labelsTr``, ``dataset.json``); returns its id."""
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(exist_ok=True)
    image, labels = abdomen()
    spacing = (0.8, 0.8, 2.5)  # ITK order (x, y, z)
    name = "sag_001" if sagittal else "abd_001"
    if sagittal:  # the thick axis becomes the array's last one
        image, labels = (np.ascontiguousarray(np.transpose(a, (2, 1, 0))) for a in (image, labels))
        spacing = (2.5, 0.8, 0.8)
    save_case(out, name, image, labels, spacing)
    names = {"background": 0, **{organ[0]: v for v, organ in enumerate(ORGANS, start=1)}}
    (out / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": names}, indent=1))
    return name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="folder to write (imagesTr/, labelsTr/, dataset.json)")
    ap.add_argument("--sagittal", action="store_true", help="the thick axis as the array's last axis")
    args = ap.parse_args(argv)
    refuse_written(args.out)
    print(f"wrote {write_case(args.out, args.sagittal)} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
