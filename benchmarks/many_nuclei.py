"""Write a synthetic 3D fluorescence-microscopy case with hundreds of nuclei, as a CVPR challenge
``.npz``, to measure how the protocol's cost grows with the objects of one volume:
``medisam bench DIR -p cvpr25-box3d -o OUT -w 1``.

The 3D sets here hold at most 14 classes a case; the challenge's microscopy volumes hold hundreds
of instances, each a class of the protocol. The case: ``--nuclei`` non-overlapping ellipsoids
(radii 5-10 voxels in plane, half that across the slices) in a ``--slices`` x ``--side`` x
``--side`` uint8 volume of 0.5 x 0.5 x 1.0 um voxels, blurred and noisy; labels uint16 (ids
1..N). ``spacing`` is stored in ITK ``(x, y, z)`` order, as the challenge's preprocessing does.

    python benchmarks/many_nuclei.py runs/nuclei
    /usr/bin/time -v medisam bench runs/nuclei -p cvpr25-box3d -o runs/nuclei_out -w 1

Stop 52 found with it that a case held one whole-volume mask per object (3.8 GB for 400 nuclei
before any work), docs/interactive3d.md, "Hundreds of objects in one volume".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage


def nuclei(count: int = 400, slices: int = 48, side: int = 448, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8, labels uint16)``, both ``(Z, Y, X)``; fewer than ``count`` nuclei where they do not fit."""
    rng = np.random.default_rng(seed)
    shape = (slices, side, side)
    labels = np.zeros(shape, np.uint16)
    zz, yy, xx = np.ogrid[:slices, :side, :side]
    placed = 0
    for _ in range(50 * count):
        if placed == count:
            break
        radii = rng.uniform(5, 10, 3) * np.array([0.5, 1.0, 1.0])
        centre = rng.uniform(radii, np.array(shape) - radii)
        box = tuple(slice(max(0, int(c - r - 1)), int(c + r + 2)) for c, r in zip(centre, radii))
        inside = (((zz[box[0]] - centre[0]) / radii[0]) ** 2 + ((yy[:, box[1]] - centre[1]) / radii[1]) ** 2
                  + ((xx[:, :, box[2]] - centre[2]) / radii[2]) ** 2) < 1
        if labels[box][inside].any():  # nuclei do not overlap
            continue
        placed += 1
        labels[box][inside] = placed
    image = np.where(labels > 0, 120 + rng.normal(0, 25, shape), 20.0)
    image = ndimage.gaussian_filter(image, 1.0) + rng.normal(0, 8, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="folder to write Microscopy_Nuclei_001.npz into")
    ap.add_argument("--nuclei", type=int, default=400)
    ap.add_argument("--slices", type=int, default=48)
    ap.add_argument("--side", type=int, default=448)
    args = ap.parse_args(argv)
    path = args.out / "Microscopy_Nuclei_001.npz"
    if path.exists():
        raise SystemExit(f"error: {path} exists; choose an empty folder")
    args.out.mkdir(parents=True, exist_ok=True)
    image, labels = nuclei(args.nuclei, args.slices, args.side)
    tmp = path.with_name(f".{path.name}.part.npz")
    np.savez_compressed(tmp, imgs=image, gts=labels, spacing=np.array([0.5, 0.5, 1.0]))  # ITK (x, y, z)
    tmp.replace(path)
    print(f"wrote {int(labels.max())} nuclei, {image.shape} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
