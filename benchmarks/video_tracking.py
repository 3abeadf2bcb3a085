"""Video object tracking: mean Dice over frames and time, per sequence, model and object.

Sequences:
  * ``ctc_gowt1_01``: real time-lapse microscopy (Cell Tracking Challenge Fluo-N2DH-GOWT1,
    sequence 01, read in place from ``$MEDISAM_DATA``/../shared/data; not redistributable).
    Truth: the CTC TRA reference markers (approximate nucleus outlines, same id on every
    frame). Each object is prompted with a box around its frame-0 mask (3 px margin).
  * ``synthetic_disk``: an H.264 MP4 of a disk moving 4 px per frame, written with PyAV
    into a temporary folder and read back (codec round trip included).

Every model tracks all objects of a sequence in one session (frames are encoded once);
``seconds`` is that session's wall time (prompting + propagation, all objects).
SAM 2 models are listed only when their checkpoint is found (``$MEDISAM_WEIGHTS``).

Usage::

    python benchmarks/video_tracking.py [--frames 48] [--objects 3 23 34] [--models litemedsam]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medisam.io import read_image
from medisam.io.video import write_video
from medisam.metrics_basic import dice
from medisam.models import find_checkpoint, get_spec, load_model
from medisam.predict.video import VideoSession
from medisam.prompts import Box

DATA = Path(os.environ.get("MEDISAM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def gowt1(frames: int, objects: list[int]):
    seq = DATA / "ctc_gowt1_01"
    if not seq.is_dir():
        return None
    video = read_image(seq / "frames" / "01")
    truth = read_image(seq / "masks" / "01").array[:frames]
    return "ctc_gowt1_01", video.with_array(video.array[:frames]), truth, objects


def synthetic_disk(folder: Path, frames: int = 24):
    h, w = 128, 160
    yy, xx = np.mgrid[:h, :w]
    masks = np.stack([(yy - 64) ** 2 + (xx - 30 - 4 * t) ** 2 <= 18 ** 2 for t in range(frames)])
    rng = np.random.default_rng(0)
    grey = np.clip(np.where(masks, 190, 50) + rng.normal(0, 8, masks.shape), 0, 255).astype(np.uint8)
    path = write_video(np.repeat(grey[..., None], 3, axis=-1), folder / "disk.mp4", fps=10)
    return "synthetic_disk", read_image(path), masks.astype(np.uint8), [1]


def track(model, video, truth, objects):
    start = time.perf_counter()
    session = VideoSession(model, video)
    for obj in objects:
        session.add_box(0, Box.from_mask(truth[0] == obj, margin=3), obj_id=obj)
    labels = session.propagate("forward", progress=False).array
    seconds = time.perf_counter() - start
    rows = []
    for obj in objects:
        scores = [dice(labels[t] == obj, truth[t] == obj) for t in range(len(truth))]
        rows.append((obj, len(truth), float(np.mean(scores)), float(np.min(scores)), seconds))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--objects", type=int, nargs="+", default=[3, 23, 34])
    parser.add_argument("--models", nargs="+", default=["litemedsam", "medsam2", "sam2.1-hiera-tiny"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    models = []
    for name in args.models:
        spec = get_spec(name)
        if not spec.is_test_model and find_checkpoint(spec) is None:
            print(f"# skipped {name}: no checkpoint ({spec.checkpoint_file}) in $MEDISAM_WEIGHTS", file=sys.stderr)
            continue
        models.append(load_model(name, device=args.device))

    with tempfile.TemporaryDirectory() as tmp:
        sequences = [s for s in (gowt1(args.frames, args.objects), synthetic_disk(Path(tmp))) if s]
        print(f"{'sequence':<16} {'model':<20} {'object':>6} {'frames':>6} {'mean Dice':>9} "
              f"{'min Dice':>8} {'seconds':>8}")
        for name, video, truth, objects in sequences:
            for model in models:
                for obj, n, mean, low, seconds in track(model, video, truth, objects):
                    print(f"{name:<16} {model.name:<20} {obj:>6} {n:>6} {mean:>9.3f} {low:>8.3f} {seconds:>8.1f}",
                          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
