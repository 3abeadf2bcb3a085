"""Everything mode's memory as the image grows: compact masks (box + mask cut to it) against the dense
``(N, H, W)`` masks of the code before the change (commit ``ae0f680``).

One nuclei tile of miccai_dp_nuclei, upscaled x1, x2, x3 (bilinear), runs ``generate_masks`` (everything8
as ``medisam bench`` runs it, ``load_model("litemedsam")``, the default backend) with 0 and 1 crop layers,
once with the current code ("compact") and once with ``automatic.py`` and ``crops.py`` of ``--old-rev``
("dense"; ``git show`` copies under the temp folder, imported there, on today's Predictor). Each row runs
in a fresh process: the model is loaded and the image encoded, then the peak resident set is reset
(``/proc/self/clear_refs``, Linux) and ``generate_masks`` runs; "peak RSS +" is the peak (``VmHWM``) minus
the resident set before the call, so the crop layers' encodings count in both. "same" checks that both
give the same label map and scores (a digest).

    MEDISAM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/everything_memory.py [--case image10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "miccai_dp_nuclei"
OLD_REV = "ae0f680"


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _old_automatic(rev: str):  # noqa: ANN202 - the module of ``rev``
    """``automatic.py`` and ``crops.py`` of ``rev``, importable as ``old_automatic`` / ``old_crops``."""
    root = Path(tempfile.gettempdir()) / f"medisam_everything_{rev}"
    root.mkdir(exist_ok=True)
    for name in ("automatic", "crops"):
        text = subprocess.run(["git", "show", f"{rev}:src/medisam/prompting/{name}.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        text = text.replace("medisam.prompting.automatic", "old_automatic").replace("medisam.prompting.crops",
                                                                                      "old_crops")
        (root / f"old_{name}.py").write_text(text)
    sys.path.insert(0, str(root))
    import old_automatic

    return old_automatic


def _image(case: str, scale: int) -> np.ndarray:
    import cv2
    from PIL import Image

    image = np.asarray(Image.open(DATA / "images" / f"{case}.png").convert("RGB"))
    h, w = image.shape[:2]
    return image if scale == 1 else cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)


def child(impl: str, case: str, scale: int, crops: int, rev: str) -> dict:
    """One row, in this process: generate_masks' seconds and peak RSS increase."""
    from medisam.models import load_model
    from medisam.predict import Predictor

    module = _old_automatic(rev) if impl == "dense" else __import__("medisam.prompting.automatic", fromlist=["x"])
    predictor = Predictor(load_model("litemedsam")).set_image(_image(case, scale))
    config = module.AutoMaskConfig(points_per_side=8, crop_layers=crops)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the resident set now
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    found = module.generate_masks(predictor, config)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    labels = module.label_map(found)
    digest = hashlib.sha1(labels.tobytes() + np.asarray(found.scores, np.float32).tobytes()).hexdigest()[:12]
    return {"impl": impl, "hw": list(predictor.image_size), "crops": crops, "n": len(found.scores),
            "seconds": seconds, "peak_mib": (peak - before) / 1024, "digest": digest}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="image10", help="tile of miccai_dp_nuclei (image10: 1032 x 808, the largest)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--crops", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--old-rev", default=OLD_REV, help="commit of the dense code")
    ap.add_argument("--child", nargs=3, metavar=("IMPL", "SCALE", "CROPS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        impl, scale, crops = args.child
        print(json.dumps(child(impl, args.case, int(scale), int(crops), args.old_rev)))
        return 0
    print(f"tile {args.case}, everything8, litemedsam, MEDISAM_THREADS={os.environ.get('MEDISAM_THREADS')}; "
          f"dense = {args.old_rev}'s code; peak RSS + = VmHWM - VmRSS around generate_masks, fresh process per row")
    print("| image (H x W) | crop layers | masks | dense (N x H x W) MiB | dense: peak RSS + MiB / s | "
          "compact: peak RSS + MiB / s | same |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for scale in args.scales:
        for crops in args.crops:
            rows = {}
            for impl in ("dense", "compact"):
                cmd = [sys.executable, __file__, "--case", args.case, "--old-rev", args.old_rev,
                       "--child", impl, str(scale), str(crops)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows[impl] = json.loads(out.strip().splitlines()[-1])
            d, c = rows["dense"], rows["compact"]
            h, w = c["hw"]
            same = "yes" if d["digest"] == c["digest"] and d["n"] == c["n"] else "NO"
            print(f"| {h} x {w} (x{scale}) | {crops} | {c['n']} | {c['n'] * h * w / 2**20:.0f} | "
                  f"{d['peak_mib']:.0f} / {d['seconds']:.1f} | {c['peak_mib']:.0f} / {c['seconds']:.1f} | {same} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
