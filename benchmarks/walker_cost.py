"""Cost of one corrective 3D click as the object grows: the walker's crop bounded (default) vs not.

A 3D click (``session.add_click``, :func:`medisam.predict.refine3d.walker_click`) solves a random
walker on a crop around the object's 3D box. Its memory (~0.4 GiB per million voxels: the
grid Laplacian, CG vectors, distance maps) and time grow with that crop, so a click on a
liver- or lung-sized box could take minutes and gigabytes. ``RefineParams.max_voxels`` (default
2 million) bounds it: a larger crop is solved on a window of that many voxels around the
click (``click_layer.window_around``); both 3D sets of ``../shared/data`` stay below the
budget (largest BraTS crop ~0.8 M voxels), so their results do not change.

Each row is a fresh child process: a synthetic ``Z x 512 x 512`` CT (a bright ellipsoid in
noise), the ellipsoid's 3D box propagated along z with the tiny random model (the walker's
cost depends on the crop, not on the model), then one negative click inside the object.
Prints, per box size: the crop's voxels, the voxels solved, seconds for the click and the
peak RSS the click added (MiB), bounded (default) against unbounded (the reference) in the same run.

Usage::

    python benchmarks/walker_cost.py                    # boxes 40x120x120 .. 120x300x300, ~3 min
    python benchmarks/walker_cost.py --boxes 60x200x200 --no-reference
    python benchmarks/walker_cost.py --positive       # a foreground click (the size cap counts the object)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from speed import peak_rss_self_mib  # noqa: E402

UNBOUNDED = 10 ** 12


def one_click(box: tuple[int, int, int], max_voxels: int, positive: bool = False) -> dict:
    """Child process: the click on a ``box`` (z, y, x voxels) object, with the walker's budget
    (``positive``: a foreground click, whose size cap counts the whole object, ``session.object_size``)."""
    import torch

    from medisam.io.medical_image import MedicalImage
    from medisam.models import load_model
    from medisam.predict import PropagationConfig, VolumeSession
    from medisam.predict.click_refine import RefineParams
    from medisam.predict.refine3d import walker_click

    torch.set_num_threads(2)
    bz, by, bx = box
    shape = (bz + 20, 512, 512)
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    c = [s // 2 for s in shape]
    inside = (((zz - c[0]) / (bz / 2)) ** 2 + ((yy - c[1]) / (by / 2)) ** 2 + ((xx - c[2]) / (bx / 2)) ** 2) <= 1
    rng = np.random.default_rng(0)
    array = (inside * 200.0 + rng.normal(0, 30, shape)).astype(np.float32)
    image = MedicalImage(array, (0.8, 0.8, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "CT")
    session = VolumeSession(load_model("litemedsam-tiny", device="cpu"), image,
                            config=PropagationConfig(views=1, min_area_px=0))
    z0, y0, x0 = c[0] - bz // 2, c[1] - by // 2, c[2] - bx // 2
    session.add_box3d((x0, y0, z0, x0 + bx - 1, y0 + by - 1, z0 + bz - 1), obj_id=1)
    session.propagate(progress=False)
    t0 = time.perf_counter()
    session.object_size(1)  # what a positive click on a cut window adds (timed alone)
    size_s = time.perf_counter() - t0
    before = peak_rss_self_mib()
    click = (c[0], c[1] + by // 4, c[2])
    t0 = time.perf_counter()
    walker_click(session, click, positive, 1, RefineParams(max_voxels=max_voxels))
    seconds = time.perf_counter() - t0
    layer = session.object_state(1).edit
    return {"seconds": seconds, "solved": int(layer.mask.size), "peak_added_mib": max(0.0, peak_rss_self_mib() - before),
            "size_s": size_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boxes", default="40x120x120,80x200x200,120x300x300", help="object boxes, ZxYxX voxels")
    ap.add_argument("--no-reference", action="store_true", help="skip the unbounded walker")
    ap.add_argument("--positive", action="store_true", help="a foreground click (default: a background one)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        box, budget, positive = json.loads(args.child)
        print(json.dumps(one_click(tuple(box), budget, positive)))
        return 0
    from medisam.predict.click_refine import RefineParams

    default, pad = RefineParams().max_voxels, RefineParams().pad
    runs = [("bounded (default)", default)] + ([] if args.no_reference else [("unbounded (reference)", UNBOUNDED)])
    kind = "positive" if args.positive else "negative"
    print(f"one {kind} 3D click, walker budget {default:,} voxels; each row a fresh process", flush=True)
    print("| object box (z x y x x) | crop voxels | walker | voxels solved | click s | peak RSS added, MiB | object_size s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.boxes.split(","):
        box = [int(v) for v in spec.split("x")]
        crop = int(np.prod([v + 2 * pad for v in box]))  # the box and the walker's pad each side
        for name, budget in runs:
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps([box, budget, args.positive])],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {spec} | {crop / 1e6:.2f} M | {name} | {r['solved'] / 1e6:.2f} M | {r['seconds']:.1f} | "
                  f"{r['peak_added_mib']:.0f} | {r['size_s']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
