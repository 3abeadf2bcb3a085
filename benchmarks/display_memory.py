"""Peak memory of a 3D-box propagation as the CT grows: the display mapped where it is read (the
default since stop 54) against a whole float32 display held by the session (the path before).

The volume: the first pyradiomics lung CT here (512 x 512, real HU) tiled along z to Z slices; a
30-slice 3D box around its lesion, centred; the default session (no window given, so each 3D box
gets its own CT window, ``VolumeSession.box_windows``), default backend. Each row is a fresh
process: the RSS before the session (model loaded, volume read) and the peak above it, wall
seconds, and whether the label map equals the other path's (a hash of its voxels).

    python benchmarks/display_memory.py                  # Z = 300, 600, 900
    python benchmarks/display_memory.py --slices 300 1500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from session_memory import rss_mib  # noqa: E402 - the resident set now
from speed import lung_lesion_case, peak_rss_self_mib  # noqa: E402 - the speed table's lung CT, this process's peak

BOX_SLICES = 30


def one_run(slices: int, whole: bool) -> dict:
    """Child process: the propagation on a ``slices``-slice CT; ``whole``: the session holds the
    whole display, as before stop 54."""
    from medisam.models import load_model
    from medisam.predict import VolumeSession
    from medisam.predict.volume import volume_to_display

    image, box = lung_lesion_case()
    reps = -(-slices // image.array.shape[0])
    image = image.with_array(np.ascontiguousarray(np.tile(image.array, (reps, 1, 1))[:slices]))
    mid = slices // 2
    box3d = (box[0], box[1], mid - BOX_SLICES // 2, box[3], box[4], mid - BOX_SLICES // 2 + BOX_SLICES - 1)
    model = load_model("litemedsam")
    before = rss_mib()
    t0 = time.perf_counter()
    extra = {"display": volume_to_display(image.array, image.modality), "box_windows": True} if whole else {}
    session = VolumeSession(model, image, **extra)
    session.add_box3d(box3d)
    labels = session.propagate(progress=False).array
    seconds = time.perf_counter() - t0
    return {"before": before, "peak": peak_rss_self_mib(), "seconds": seconds,
            "labels": hashlib.sha1(np.ascontiguousarray(labels).tobytes()).hexdigest(), "voxels": int(labels.sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, nargs="+", default=[300, 600, 900], help="CT lengths (slices)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(one_run(int(args.child[0]), args.child[1] == "whole")))
        return 0
    rows = []
    for z in args.slices:
        got = {}
        for path in ("lazy", "whole"):
            out = subprocess.run([sys.executable, __file__, "--child", str(z), path], check=True, capture_output=True,
                                 text=True).stdout
            got[path] = json.loads(out.strip().splitlines()[-1])
        same = got["lazy"]["labels"] == got["whole"]["labels"]
        for path, name in (("lazy", "default: mapped where read"), ("whole", "whole display (before)")):
            g = got[path]
            rows.append((str(z), name, f"{g['before']:.0f}", f"{g['peak'] - g['before']:.0f}", f"{g['seconds']:.1f}",
                         str(same)))
        ratio = (got["lazy"]["peak"] - got["lazy"]["before"]) / (got["whole"]["peak"] - got["whole"]["before"])
        rows.append((str(z), "ratio default / before", "", f"{ratio:.2f}", "", ""))
        print(" | ".join(rows[-3]), flush=True)
    header = ("slices", "session", "RSS before (MiB)", "peak above it (MiB)", "s", "label maps equal")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
