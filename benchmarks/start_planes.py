"""Encoded planes of the CVPR25 ``cvpr25-box3d`` start per 3D set, now and under two sharing
variants, counted with the planner's own arithmetic (``plan_views``; no model runs).

    python benchmarks/start_planes.py ../shared/data/brats2015_deepmedic ../shared/data/msd_task04_hippocampus

Per set: cases, cases whose plan changes under each variant and the unique (axis, plane)
encodings of every class's tri-planar 3D box (a plane encoded for one class is cached for the
others). Variants: ``abs`` anchors the encode stride on absolute plane indices (every object's
view of an axis interpolates between the same planes); ``lattice`` puts sampled views on a
power-of-two lattice of planes plus the box's end planes; ``both``. The start's time is its
encodings (80 % on a 2-core CPU, ``docs/interactive3d.md``), so this is its cost model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import nibabel as nib
import numpy as np

from medisam.predict.propagation import PropagationConfig
from medisam.predict.view_plan import ViewPlan, plan_for
from medisam.prompting.clicks3d import class_boxes

VARIANTS = ("now", "abs", "lattice", "both")


def _view_planes(grid, stride: int) -> dict[str, frozenset]:
    idx = grid.indices
    relative = frozenset(p for _, p in ViewPlan((grid,), 0, None, (), (stride,)).encoded_planes())  # the planner's
    seed = idx[(len(idx) - 1) // 2]  # each view's box prompts its middle plane, encoded whatever the variant
    ends = (0, len(idx) - 1)
    absolute = frozenset(p for t, p in enumerate(idx) if stride == 1 or p % stride == 0 or t in ends) | {seed}
    if grid.planes is None:
        return {"now": relative, "abs": absolute, "lattice": relative, "both": absolute}
    need = (grid.hi - grid.lo) / max(len(idx) - 1, 1)
    step = 2 ** math.ceil(math.log2(max(need, 1.0)))
    lattice = frozenset({p for p in range(grid.lo, grid.hi + 1) if p % step == 0} | {grid.lo, grid.hi, seed})
    return {"now": frozenset(idx), "abs": frozenset(idx), "lattice": lattice, "both": lattice}


def count(data: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    config = PropagationConfig()
    cases, changed, total = 0, dict.fromkeys(VARIANTS, 0), dict.fromkeys(VARIANTS, 0)
    for path in sorted((data / "labelsTr").glob("*.nii.gz")):
        img = nib.load(path)
        labels = np.asarray(img.dataobj).transpose(2, 1, 0)
        spacing = tuple(float(v) for v in img.header.get_zooms()[:3][::-1])
        per = {v: [] for v in VARIANTS}
        for box in class_boxes(labels).values():  # the bench's own boxes
            plan = plan_for(config, labels.shape, spacing, 0, box)
            for grid, stride in zip(plan.grids, plan.grid_strides):
                for v, planes in _view_planes(grid, stride).items():
                    per[v].append((grid.axis, planes))
        cases += 1
        for v in VARIANTS:
            changed[v] += per[v] != per["now"]
            total[v] += len({(axis, p) for axis, planes in per[v] for p in planes})
    return cases, changed, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path, help="nnU-Net-style 3D sets (labelsTr/*.nii.gz)")
    args = parser.parse_args()
    print("| set | cases | " + " | ".join(f"encodings {v}" for v in VARIANTS) + " | cases changed (abs / lattice / both) |")
    print("| --- " * (len(VARIANTS) + 3) + "|")
    for data in args.data:
        cases, changed, total = count(data)
        print(f"| {data.name} | {cases} | " + " | ".join(str(total[v]) for v in VARIANTS)
              + f" | {changed['abs']} / {changed['lattice']} / {changed['both']} |")


if __name__ == "__main__":
    main()
