"""Propagation on the default path: planes encoded one at a time (the default) vs in pairs.

``PropagationConfig(encode_batch=2)`` makes a propagation run encode the next two planes it
needs in one batch, which OpenVINO (``auto`` on a CPU) runs on two single-thread streams side
by side instead of one image over both threads
(:meth:`medisam.models.openvino_backend.OpenVinoModel.encode`). The embeddings are the same,
so the masks are the same; a run that a stop rule ends (a prompt on one slice, no 3D box)
may encode one plane past its end, a 3D box's runs never stop early. This script decides
whether pairs should be the default (stop 33, quiet 2-core AVX2 CPU: no, see docs/speed.md).

One process, the default model (``load_model("litemedsam")``), both batch sizes interleaved
for ``--rounds`` rounds on these cases (each session has its own predictor: nothing cached):

- ``slice100``: the 100-slice BraTS FLAIR volume and middle-slice box of ``benchmarks/speed.py``
  (stop rules end the runs);
- ``lung``: the CT lung mass 3D box of ``benchmarks/speed.py`` (tri-planar, view budget);
- ``dcmqi``: the 3-slice CT series of ``dcmqi_ct3slice_seg`` with issue 12's 3D box;
- ``brats:LABEL``: the 3D box (voxel extent) of label LABEL of the first BraTS case
  (``--brats-labels 1,2,3,4``; minutes each on 2 cores).

Prints the encoder alone (ms per image, one at a time vs pairs), then per case: wall seconds of the default and of the other batch size (fastest round),
their ratio, planes encoded by each and whether the label volumes are identical.

Usage::

    python benchmarks/encode_batch.py --rounds 2      # ~12 min on 2 cores
    python benchmarks/encode_batch.py --cases slice100,lung,dcmqi --brats-labels 1,2 --rounds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from speed import DATA, lung_lesion_case, volume_100  # noqa: E402


def cases(names: list[str], brats_labels: list[int]):
    """``(name, image, window, add_prompt)`` per case; ``add_prompt(session)`` prompts it."""
    from medisam.bench.datasets import DatasetOptions, iter_cases
    from medisam.io import read_image
    from medisam.prompting import clicks3d

    if "slice100" in names:
        vol, _, mid, box = volume_100(100)  # an array, as speed.py propagates it
        yield f"slice100 (box on slice {mid})", vol, None, lambda s: s.add_box(mid, box)
    if "lung" in names:
        image, box = lung_lesion_case()
        yield "lung mass 3D box", image, "lung", lambda s: s.add_box3d(box)
    if "dcmqi" in names:
        image = read_image(DATA / "dcmqi_ct3slice_seg" / "series")
        yield "dcmqi 3-slice 3D box", image, "abdomen", lambda s: s.add_box3d((74, 140, 0, 355, 371, 2))
    if brats_labels:
        case = next(iter_cases(DATA / "brats2015_deepmedic", DatasetOptions()))
        for label in brats_labels:
            box = clicks3d.extent_box(case.labels.array == label)
            yield f"{case.case_id} label {label} 3D box", case.image, None, lambda s, b=box: s.add_box3d(b)


def run_once(model, image, window, add_prompt, batch: int) -> tuple[float, int, np.ndarray]:
    """Wall seconds, planes encoded and labels of one propagation with ``encode_batch=batch``."""
    from medisam.predict import PropagationConfig, VolumeSession

    config = replace(PropagationConfig(), encode_batch=batch)
    t0 = time.perf_counter()
    session = VolumeSession(model, image, window=window, config=config)
    add_prompt(session)
    labels = session.propagate(progress=False).array
    return time.perf_counter() - t0, len(session.encoded_planes), labels


def encoder_per_image(model, images: int, rounds: int) -> dict[int, float]:
    """Fastest ms per image of the encoder alone, one image at a time vs pairs, interleaved
    (random images; the embeddings must be identical)."""
    import torch

    rng = np.random.default_rng(0)
    x = torch.cat([model.preprocess(rng.uniform(0, 255, (240, 240, 3)).astype(np.float32))[0]
                   for _ in range(images)])
    best = {1: float("inf"), 2: float("inf")}
    for _ in range(rounds):
        out = {}
        for batch in (1, 2):
            t0 = time.perf_counter()
            out[batch] = torch.cat([model.encode(x[i:i + batch]) for i in range(0, images, batch)])
            best[batch] = min(best[batch], (time.perf_counter() - t0) / images * 1000)
        if not torch.equal(out[1], out[2]):
            raise SystemExit("pairs changed the embeddings")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="slice100,lung,dcmqi", help="comma list of slice100, lung, dcmqi")
    ap.add_argument("--brats-labels", default="", help="comma list of BraTS labels (3D boxes of the first case)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--encoder-images", type=int, default=8, help="images of the encoder-only table (0: skip it)")
    args = ap.parse_args()
    from medisam.models import load_model
    from medisam.predict import PropagationConfig

    model = load_model("litemedsam")
    default = PropagationConfig().encode_batch
    other = 2 if default == 1 else 1
    print(f"default path: {getattr(model, 'backend', 'torch')} {getattr(model, 'precision', 'fp32')}; "
          f"default encode_batch={default} against encode_batch={other}", flush=True)
    if args.encoder_images:
        ms = encoder_per_image(model, args.encoder_images, max(2, args.rounds))
        print(f"\n| encoder alone | one at a time ms/image | pairs ms/image | pairs / one |\n| --- | --- | --- | --- |\n"
              f"| {args.encoder_images} images, fastest of {max(2, args.rounds)} rounds | {ms[1]:.0f} | {ms[2]:.0f} "
              f"| {ms[2] / ms[1]:.3f} |\n", flush=True)
    labels = [int(v) for v in args.brats_labels.split(",") if v]
    rows = []
    for name, image, window, add_prompt in cases(args.cases.split(","), labels):
        best: dict[int, tuple[float, int, np.ndarray]] = {}
        for r in range(args.rounds):
            for batch in (default, other):
                seconds, planes, lab = run_once(model, image, window, add_prompt, batch)
                print(f"  {name} round {r} batch {batch}: {seconds:.1f} s, {planes} planes", flush=True)
                if batch not in best or seconds < best[batch][0]:
                    best[batch] = (seconds, planes, lab)
        (b_s, b_n, b_lab), (a_s, a_n, a_lab) = best[default], best[other]
        rows.append((name, f"{b_s:.1f}", f"{a_s:.1f}", f"{a_s / b_s:.2f}", f"{b_n} / {a_n}",
                     "yes" if np.array_equal(b_lab, a_lab) else "NO"))
    print(f"\n| case | default s (batch {default}) | batch {other} s | ratio | planes encoded default / {other} "
          "| labels identical |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
