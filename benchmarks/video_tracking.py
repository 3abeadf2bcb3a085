"""Video tracking of every object: medisam's multi-object tracker against LiteMedSAM's box chain.

Protocol (the same for every method, one run):
  * each track is prompted once, with the tight box around its truth mask on the frame
    where it begins (``tracks_01.txt``: label, first frame, last frame, parent);
  * ``reference``: LiteMedSAM's box chain, each track on its own -- every next frame is
    prompted with the box of the previous mask grown by 3 px at the model's 256 scale;
  * ``medisam``: one :class:`~medisam.predict.video.VideoSession` with all tracks,
    ``propagate("forward")`` (frame-synchronous, one label per pixel); named variants of
    :class:`~medisam.predict.tracking.TrackingConfig` are rows of their own.
Scores per track over its own frames: mean Dice (then the mean over tracks), lost (Dice <
0.2 on its last frame), identity switches (frames where the mask overlaps another track's
truth more than its own, counted once per run of such frames), and seconds per frame
(encoder: each frame once, shared by all rows; plus each method's decoder passes). Columns
``vs ref`` (mean Dice minus the box chain's, same run) and ``w/o prompts`` (the mean over
tracks of more than one frame of their Dice after the prompt frame: what tracking adds,
without the prompt frame's own mask).

Sequences:
  * ``ctc_gowt1_01``: real time-lapse microscopy (Cell Tracking Challenge Fluo-N2DH-GOWT1,
    sequence 01, read in place from ``$MEDISAM_DATA``, default ../shared/data; not
    redistributable). Truth: CTC TRA markers (about 57% of a nucleus: compare methods on
    this protocol only, not with segmentation Dice elsewhere).
  * ``ctc_gowt1_01_rev`` (only when asked for): the same frames played backwards, each track
    prompted on its last frame (divisions become merges): the rules on a second sequence.
  * ``synthetic_mp4``: an H.264 MP4 (PyAV) of two disks, the second entering on frame 6,
    written to a temporary folder and read back (codec round trip).
  * ``synthetic_vanish`` (only when asked for): three disks in noise, one leaving the frame, one
    vanishing, one staying on the edge, each scored to the last frame (an object that ends).
  * ``synthetic_hue`` (only when asked for): two red disks on pink noise of the same grey level
    (they differ only in hue, as a polyp on mucosa), one vanishing, one staying; scored the same way.

Usage::

    python benchmarks/video_tracking.py [--frames 48] [--variants default mask-prompt ...]
        [--embeddings /tmp/gowt1_emb] [--per-track] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from medisam.io import read_image
from medisam.io.video import write_video
from medisam.metrics_basic import dice
from medisam.models import find_checkpoint, get_spec, load_model
from medisam.predict.cache import EmbeddingCache
from medisam.predict.predictor import Predictor
from medisam.predict.propagation import box_around
from medisam.predict.tracking import TrackingConfig
from medisam.predict.video import VideoSession, video_of
from medisam.prompts import Box

DATA = Path(os.environ.get("MEDISAM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

#: Named tracking variants (rows); "default" is what VideoSession uses.
VARIANTS = {
    "default": TrackingConfig(),
    "prompt-box": TrackingConfig(candidates=("box",)),
    "no-motion": TrackingConfig(motion=False),
    "no-flow": TrackingConfig(flow=False),
    "prompt-mask+chain": TrackingConfig(extent="prompt-mask"),
    "prompt-mask+3px": TrackingConfig(extent="prompt-mask", margin=3.0, candidates=("box",)),
    "previous+multimask+motion": TrackingConfig(extent="previous", margin=3.0, candidates=("multimask",), motion=True),
    "box-chain+rules": TrackingConfig(extent="previous", margin=3.0, candidates=("box",)),
    "mask-prompt": TrackingConfig(extent="previous", margin=3.0, candidates=("mask-prompt",)),
    "multimask": TrackingConfig(extent="previous", margin=3.0, candidates=("multimask",)),
    "box+multimask": TrackingConfig(extent="previous", margin=3.0, candidates=("box", "multimask")),
    "box+multimask+mask-prompt": TrackingConfig(extent="previous", margin=3.0,
                                                candidates=("box", "multimask", "mask-prompt")),
    "margin0+motion": TrackingConfig(extent="previous", margin=0.0, candidates=("box",), motion=True),
    "no-divide": TrackingConfig(divide=False),
    "box+chain+mask-prompt": TrackingConfig(candidates=("box", "chain", "mask-prompt")),
    "box+chain+multimask": TrackingConfig(candidates=("box", "chain", "multimask")),
    "centre-previous": TrackingConfig(centre="previous"),
    "centre-chain": TrackingConfig(centre="chain"),
    "no-clip": TrackingConfig(clip=None, size="prompt", fit=False),
    "no-fit": TrackingConfig(fit=False),
    "size-prompt": TrackingConfig(size="prompt"),
    "no-lost": TrackingConfig(lost_area=None, lost_contrast=None),
}


@dataclass(frozen=True)
class Sequence:
    name: str
    video: object  # MedicalImage
    truth: np.ndarray  # (T, H, W) track ids
    tracks: list[tuple[int, int, int]]  # (label, first frame, last frame)


class LayeredCache(EmbeddingCache):
    """In-memory embeddings over an optional on-disk store (reruns skip the encoder)."""

    def __init__(self, disk=None):
        super().__init__(max_bytes=8 << 30)
        self.disk = disk

    def get(self, key):
        item = super().get(key)
        if item is None and self.disk is not None:
            item = self.disk.get(key)
            if item is not None:
                self.misses -= 1
                super().put(key, item)
        return item

    def put(self, key, item):
        super().put(key, item)
        if self.disk is not None:
            self.disk.put(key, item)


def gowt1(frames: int) -> Sequence | None:
    seq = DATA / "ctc_gowt1_01"
    if not seq.is_dir():
        print(f"# skipped ctc_gowt1_01: not found under {DATA}", file=sys.stderr)
        return None
    video = read_image(seq / "frames" / "01")
    truth = read_image(seq / "masks" / "01").array[:frames]
    tracks = []
    for line in (seq / "tracks_01.txt").read_text().split("\n"):
        if line.strip():
            label, first, last, _parent = (int(v) for v in line.split())
            if first < frames:
                tracks.append((label, first, min(last, frames - 1)))
    return Sequence("ctc_gowt1_01", video.with_array(video.array[:frames]), truth, tracks)


def reversed_in_time(seq: Sequence | None) -> Sequence | None:
    """The same sequence played backwards: each track prompted on its last frame and tracked
    to its first; divisions become merges (a check of the rules on a second sequence of the
    same kind, not new data)."""
    if seq is None:
        return None
    n = len(seq.truth)
    tracks = [(label, n - 1 - last, n - 1 - first) for label, first, last in seq.tracks]
    return Sequence(f"{seq.name}_rev", seq.video.with_array(seq.video.array[::-1].copy()), seq.truth[::-1].copy(),
                    sorted(tracks, key=lambda tr: (tr[1], tr[0])))


def synthetic_mp4(folder: Path, frames: int = 16) -> Sequence:
    """Two disks in an H.264 MP4: object 1 from frame 0, object 2 enters on frame 6."""
    h, w = 128, 160
    yy, xx = np.mgrid[:h, :w]
    truth = np.zeros((frames, h, w), dtype=np.uint8)
    for t in range(frames):
        truth[t][(yy - 40) ** 2 + (xx - 30 - 4 * t) ** 2 <= 16 ** 2] = 1
        if t >= 6:
            truth[t][(yy - 95) ** 2 + (xx - 150 + 6 * (t - 6)) ** 2 <= 14 ** 2] = 2
    rng = np.random.default_rng(0)
    grey = np.clip(np.where(truth > 0, 190, 50) + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
    path = write_video(np.repeat(grey[..., None], 3, axis=-1), folder / "disks.mp4", fps=10)
    return Sequence("synthetic_mp4", read_image(path), truth, [(1, 0, frames - 1), (2, 6, frames - 1)])


def synthetic_vanish(frames: int = 24) -> Sequence:
    """Three disks in noise (rule 6, an object that ends): disk 1 moves right 7 px a frame and leaves
    the frame (gone from frame 20), disk 2 vanishes on frame 12, disk 3 stays on the left edge. Every
    track is scored to the last frame: where its disk is gone, an empty mask scores 1, any mask 0."""
    h = w = 160
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    grey, truth = rng.normal(40, 8, (frames, h, w)), np.zeros((frames, h, w), np.uint8)
    for t in range(frames):
        for label, (cy, cx, r, level, shown) in enumerate([(50, 40 + 7 * t, 15, 200, True),
                                                           (120, 110, 12, 180, t < 12),
                                                           (110, 5, 14, 160, True)], start=1):
            disk = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2) & shown
            grey[t][disk], truth[t][disk] = level, label
    video = video_of(np.clip(grey, 0, 255).astype(np.uint8))
    return Sequence("synthetic_vanish", video, truth, [(label, 0, frames - 1) for label in (1, 2, 3)])


#: ``synthetic_hue``'s colours: pink background and red disks of the same grey level (channel mean
#: 150; luminance 0.299 R + 0.587 G + 0.114 B 147.9 and 145.9), which differ only in hue.
PINK, RED = (190, 130, 130), (230, 110, 110)


def synthetic_hue(frames: int = 24) -> Sequence:
    """Two red disks on pink in colour noise, the grey level of the background (rule 6 on colour frames: a
    polyp on mucosa): disk 1 vanishes on frame 12, disk 2 moves right 2 px a frame and stays. On the grey
    frame (the channel mean) neither disk stands out. Every track is scored to the last frame, as in
    :func:`synthetic_vanish`."""
    h = w = 160
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    rgb = np.asarray(PINK, np.float64) + rng.normal(0, 8, (frames, h, w, 3))
    truth = np.zeros((frames, h, w), np.uint8)
    for t in range(frames):
        for label, (cy, cx, r, shown) in enumerate([(50, 50, 15, t < 12), (110, 40 + 2 * t, 14, True)], start=1):
            disk = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2) & shown
            rgb[t][disk] += np.asarray(RED, np.float64) - PINK
            truth[t][disk] = label
    video = video_of(np.clip(rgb, 0, 255).astype(np.uint8))
    return Sequence("synthetic_hue", video, truth, [(label, 0, frames - 1) for label in (1, 2)])


# ----------------------------------------------------------------- methods
def box_chain(predictor: Predictor, session: VideoSession, seq: Sequence) -> dict[int, dict[int, np.ndarray]]:
    """LiteMedSAM's reference: per track, tight box on its first frame, then the previous
    mask's box + 3 px (at the model's input scale) on every next frame."""
    out: dict[int, dict[int, np.ndarray]] = {}
    for label, first, last in seq.tracks:
        masks = {}
        box = Box.from_mask(seq.truth[first] == label, margin=0)
        for t in range(first, last + 1):
            if box is None:
                masks[t] = np.zeros(seq.truth.shape[1:], dtype=bool)
                continue
            session.session._encode(t)  # the session's frame pixels: same embeddings as medisam's
            mask = predictor.predict(box=box).masks[0]
            masks[t] = mask
            sx, sy = predictor._require_image().transform.scale_xy
            box = box_around(mask, (3.0 / sx, 3.0 / sy))
        out[label] = masks
    return out


def medisam_tracks(model, predictor: Predictor | None, seq: Sequence,
                   config: TrackingConfig) -> dict[int, dict[int, np.ndarray]]:
    session = VideoSession(model, seq.video, tracking=config, predictor=predictor)
    for label, first, _ in sorted(seq.tracks, key=lambda tr: tr[1]):
        session.add_box(first, Box.from_mask(seq.truth[first] == label, margin=0), obj_id=label)
    labels = session.propagate("forward", progress=False).array
    return {label: {t: labels[t] == label for t in range(first, last + 1)} for label, first, last in seq.tracks}


# ----------------------------------------------------------------- scores
class TrackScore(NamedTuple):
    """One track's scores."""

    mean: float  # mean Dice over its frames
    last: float  # Dice on its last frame (lost: < LOST_DICE)
    switches: int  # identity switches
    later: float | None  # mean Dice over its frames after the prompt frame (None: a one-frame track)


#: A track whose Dice on its last frame is below this is lost.
LOST_DICE = 0.2


def score(seq: Sequence, masks: dict[int, dict[int, np.ndarray]]) -> dict[int, TrackScore]:
    """Every track's :class:`TrackScore`."""
    out = {}
    for label, first, last in seq.tracks:
        dices, switches, switched = [], 0, False
        for t in range(first, last + 1):
            pred, truth = masks[label][t], seq.truth[t]
            dices.append(dice(pred, truth == label))
            hits = np.bincount(truth[pred].ravel(), minlength=int(truth.max()) + 1)
            hits[0] = 0
            other = hits.max() > hits[label] if label < len(hits) else hits.max() > 0
            switches += other and not switched
            switched = other
        out[label] = TrackScore(float(np.mean(dices)), dices[-1], switches,
                                float(np.mean(dices[1:])) if len(dices) > 1 else None)
    return out


def row(seq: Sequence, method: str, scores: dict[int, TrackScore], seconds_per_frame: float,
        reference: dict[int, TrackScore] | None = None) -> str:
    """One table row; ``reference``: the box chain's scores, for the difference column."""
    mean = np.mean([s.mean for s in scores.values()])
    lost = sum(s.last < LOST_DICE for s in scores.values())
    switches = sum(s.switches for s in scores.values())
    later = [s.later for s in scores.values() if s.later is not None]
    versus = "-" if reference is None else f"{mean - np.mean([s.mean for s in reference.values()]):+.4f}"
    return (f"{seq.name:<15} {method:<28} {len(scores):>6} {mean:>9.4f} {versus:>8} "
            f"{np.mean(later) if later else float('nan'):>12.4f} {lost:>5} {switches:>8} {seconds_per_frame:>9.2f}")


HEADER = (f"{'sequence':<15} {'method':<28} {'tracks':>6} {'mean Dice':>9} {'vs ref':>8} {'w/o prompts':>12} "
          f"{'lost':>5} {'id swaps':>8} {'s/frame':>9}")


def run_sequence(model, seq: Sequence, variants: list[str], embeddings: Path | None, per_track: bool) -> None:
    if model.spec.family == "sam2":  # memory tracker: no box chain, no shared predictor
        start = time.perf_counter()
        scores = score(seq, medisam_tracks(model, None, seq, TrackingConfig()))
        print(row(seq, f"{model.name} memory", scores, (time.perf_counter() - start) / len(seq.truth)), flush=True)
        return
    disk = None
    if embeddings is not None:
        from medisam.models.embedding_store import DiskEmbeddingCache

        disk = DiskEmbeddingCache(embeddings / seq.name, model.cache_signature)
    predictor = Predictor(model, cache=LayeredCache(disk))
    session = VideoSession(model, seq.video, predictor=predictor)
    start = time.perf_counter()
    for t in range(len(seq.truth)):
        session.session._encode(t)
    encode = (time.perf_counter() - start) / len(seq.truth)
    note = " (cached)" if disk is not None and not session.session.encoded_slices else ""
    print(f"# {seq.name}: encoder {encode:.2f} s/frame{note}; {len(seq.tracks)} tracks", flush=True)
    methods = [("reference (box chain)", lambda: box_chain(predictor, session, seq))]
    methods += [(f"medisam {name}", lambda name=name: medisam_tracks(model, predictor, seq, VARIANTS[name]))
                for name in variants]
    table = {}
    for method, run in methods:
        start = time.perf_counter()
        masks = run()
        seconds = time.perf_counter() - start
        table[method] = score(seq, masks)
        reference = None if method == methods[0][0] else table[methods[0][0]]
        print(row(seq, method, table[method], encode + seconds / len(seq.truth), reference), flush=True)
    if per_track:
        print(f"# per track mean Dice: {'track':>5} {'frames':>6} " + " ".join(f"{m[:14]:>14}" for m in table))
        for label, first, last in seq.tracks:
            print(f"#                      {label:>5} {last - first + 1:>6} "
                  + " ".join(f"{table[m][label].mean:>14.3f}" for m in table))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--models", nargs="+", default=["litemedsam"])
    parser.add_argument("--sequences", nargs="+", default=["ctc_gowt1_01", "synthetic_mp4"])
    parser.add_argument("--embeddings", type=Path, help="folder to keep frame embeddings in across runs")
    parser.add_argument("--per-track", action="store_true", help="also print each track's mean Dice")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    models = []
    for name in args.models:
        spec = get_spec(name)
        if not spec.is_test_model and find_checkpoint(spec) is None:
            print(f"# skipped {name}: no checkpoint ({spec.checkpoint_file}) in $MEDISAM_WEIGHTS", file=sys.stderr)
            continue
        models.append(load_model(name, device=args.device))

    with tempfile.TemporaryDirectory() as tmp:
        makers = {"ctc_gowt1_01": lambda: gowt1(args.frames), "synthetic_mp4": lambda: synthetic_mp4(Path(tmp)),
                  "ctc_gowt1_01_rev": lambda: reversed_in_time(gowt1(args.frames)),
                  "synthetic_vanish": synthetic_vanish, "synthetic_hue": synthetic_hue}
        sequences = [s for s in (makers[n]() for n in args.sequences) if s is not None]
        print(HEADER)
        for seq in sequences:
            for model in models:
                run_sequence(model, seq, args.variants, args.embeddings, args.per_track)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
