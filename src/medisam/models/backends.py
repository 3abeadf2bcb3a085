"""Inference backends behind the one :class:`PromptableModel` API.

``load_model(name)`` lands here with the default ``backend="auto"`` (and for anything but
plain fp32 torch). Every backend returns a ``PromptableModel`` subclass, so ``Predictor``,
``VolumeSession`` and the server use it unchanged:

- ``torch``: the PyTorch network; ``bf16`` (CPU with AVX512_BF16/AMX, or CUDA) and
  ``fp16`` (CUDA) run the image encoder under ``torch.autocast``.
- ``onnx``: ONNX Runtime sessions on graphs exported once per weights into the cache
  folder (``$MEDISAM_CACHE``, default ``~/.cache/medisam``) under
  ``onnx/<model>-<weights sha>-op<opset>-v<format>/``; ``int8`` quantises the encoder's
  MatMuls dynamically (VNNI). CUDA via ONNX Runtime's CUDA provider when installed.
- ``openvino``: OpenVINO on the same ONNX files; ``bf16`` uses its bf16 inference hint;
  compiled blobs are cached under ``<cache>/openvino/``.
- ``auto`` (the default): on CUDA/MPS torch fp32; on the CPU the fastest (backend,
  precision) measured on this machine whose masks pass the Dice guard against torch fp32
  (:func:`medisam.models.precision.precision_guard`), read from
  ``<cache>/speed_profile.json``. That profile is written by ``benchmarks/speed.py
  --save-profile`` (the full measurement) or, when absent, by a one-off calibration on the
  first ``auto`` load (:func:`calibrate`: encoder time and the Dice guard on the bundled
  CT samples, a few seconds, shown on stderr). ``$MEDISAM_BACKEND=torch|onnx|openvino``
  overrides what ``auto`` means (fp32). Families without an export (SAM 2) and failed
  exports fall back to torch fp32.

Threads: ``threads=`` or ``$MEDISAM_THREADS``, default all CPUs this process may use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medisam.errors import ModelError
from medisam.models.precision import (autocast, check_precision, cpu_has_bf16, cpu_has_vnni,
                                      torch_autocast_dtype)
from medisam.models.promptable import DecoderOutput, PromptableModel
from medisam.models.spec import ModelSpec

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
#: Used by ``auto`` when no measured profile exists (fastest first, as measured by the benchmark).
AUTO_ORDER = ("openvino", "onnx", "torch")
PROFILE_FILE = "speed_profile.json"
#: Families with an ONNX export (the others always run on torch).
EXPORTABLE_FAMILIES = ("litemedsam", "sam")
#: Environment variable that pins what ``backend="auto"`` means (tests set it to torch).
BACKEND_ENV = "MEDISAM_BACKEND"


# ------------------------------------------------------------------ environment
def cache_root() -> Path:
    """``$MEDISAM_CACHE`` or ``~/.cache/medisam``: exported graphs and the speed profile."""
    return Path(os.environ.get("MEDISAM_CACHE", Path.home() / ".cache" / "medisam")).expanduser()


def resolve_threads(threads: int | None = None) -> int:
    """Thread count: the argument, else ``$MEDISAM_THREADS``, else the CPUs this process may use."""
    if threads is None:
        env = os.environ.get("MEDISAM_THREADS")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ModelError(f"MEDISAM_THREADS={env!r} is not an integer") from None
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS/Windows
            threads = os.cpu_count() or 1
    if threads < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")
    return int(threads)


def backend_available(backend: str) -> bool:
    """True when the backend's runtime is importable (torch always is)."""
    module = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}.get(backend)
    return module is not None and importlib.util.find_spec(module) is not None


def backend_versions() -> dict[str, str | None]:
    """Backend name -> runtime version (None when not installed)."""
    versions: dict[str, str | None] = {}
    for backend, module in (("torch", "torch"), ("onnx", "onnxruntime"), ("openvino", "openvino")):
        if not backend_available(backend):
            versions[backend] = None
            continue
        try:
            versions[backend] = str(__import__(module).__version__)
        except Exception as exc:  # a broken install reads as unavailable
            log.warning("%s is installed but fails to import: %s", module, exc)
            versions[backend] = None
    return versions


def supported_precisions(backend: str, device: torch.device) -> tuple[str, ...]:
    """Precisions a backend can run on ``device`` on this machine."""
    if backend == "torch":
        if device.type == "cuda":
            return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
        return ("fp32", "bf16") if device.type == "cpu" and cpu_has_bf16() else ("fp32",)
    if backend == "onnx":
        return ("fp32", "int8")
    if backend == "openvino":  # int8: NNCF-quantised encoder, on CPUs with int8 dot products
        floats = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
        return floats + (("int8",) if cpu_has_vnni() and importlib.util.find_spec("nncf") else ())
    raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or auto")


# ----------------------------------------------------------------- auto choice
def profile_path() -> Path:
    return cache_root() / PROFILE_FILE


def read_speed_profile() -> dict | None:
    """The measured profile written by ``benchmarks/speed.py --save-profile`` (None if absent/bad)."""
    path = profile_path()
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable speed profile %s: %s", path, exc)
        return None
    return profile if isinstance(profile, dict) else None


def write_speed_profile(profile: dict) -> Path:
    """Store the benchmark's choice for ``backend="auto"`` (atomic replace)."""
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(profile, indent=2))
    os.replace(tmp, path)
    return path


def progress(message: str) -> None:
    """One progress line on stderr (first-use exports and calibration; never on stdout,
    which may carry a command's output)."""
    print(f"medisam: {message}", file=sys.stderr, flush=True)


def env_backend() -> str | None:
    """``$MEDISAM_BACKEND`` (checked), or None when unset/empty."""
    value = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in BACKENDS:
        raise ModelError(f"{BACKEND_ENV}={value!r}: choose one of {', '.join(BACKENDS)} or auto")
    return value


def choose_auto(device: torch.device) -> tuple[str, str]:
    """(backend, precision) for ``backend="auto"`` without calibrating.

    ``$MEDISAM_BACKEND`` first (fp32). On CUDA/MPS: torch fp32 (cuDNN is already fast;
    fp16 needs the Dice guard, see the benchmark). On CPU: the profile's ``auto`` entry
    when its backend is installed and its precision passed the Dice guard, else the first
    installed backend of AUTO_ORDER, fp32 (what :func:`calibrate` starts from).
    """
    pinned = env_backend()
    if pinned is not None:
        return pinned, "fp32"
    if device.type != "cpu":
        return "torch", "fp32"
    profile = read_speed_profile()
    if profile:
        choice = profile.get("auto") or {}
        backend, precision = choice.get("backend"), choice.get("precision", "fp32")
        if backend in BACKENDS and backend_available(backend) and precision in supported_precisions(backend, device):
            return backend, precision
    for backend in AUTO_ORDER:
        if backend_available(backend):
            return backend, "fp32"
    return "torch", "fp32"  # pragma: no cover - torch is always there


def _sample_cases() -> list[tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]]:
    """(display image, ground-truth mask, tight box) of the bundled CT samples."""
    from medisam.demo import sample_pairs
    from medisam.io import read_image
    from medisam.io.intensity import to_display
    from medisam.prompts import Box

    cases = []
    for _, image_path, mask_path in sample_pairs():
        image = read_image(image_path, modality="CT")
        truth = np.asarray(read_image(mask_path).array) > 0
        truth = truth[..., 0] if truth.ndim == 3 else truth
        box = Box.from_mask(truth, margin=0)
        cases.append((to_display(image.array, image.modality, None), truth, tuple(box.as_array().tolist())))
    return cases


def calibration_candidates(device: torch.device) -> list[tuple[str, str]]:
    """(backend, precision) pairs :func:`calibrate` measures: installed runtimes, the
    precisions this CPU runs natively (no int8: it needs the wider guard of the benchmark)."""
    pairs = [("openvino", "bf16"), ("openvino", "fp32"), ("onnx", "fp32")]
    return [(b, p) for b, p in pairs if backend_available(b) and p in supported_precisions(b, device)]


def calibrate(base: PromptableModel, threads: int, repeats: int = 3) -> tuple[dict, PromptableModel]:
    """Measure the candidates on this machine and store the fastest guard-passing one.

    One-off (the result goes to ``<cache>/speed_profile.json``, which
    ``benchmarks/speed.py --save-profile`` replaces with its fuller measurement): every
    candidate segments the bundled CT samples from their ground-truth boxes, its mean Dice
    must stay within the guard of torch fp32's
    (:func:`~medisam.models.precision.precision_guard`), and the encoder's median time over
    ``repeats`` runs picks among those that pass. Returns the profile written and the
    chosen model (already compiled).
    """
    from medisam.metrics_basic import dice
    from medisam.models.precision import precision_guard
    from medisam.predict import Predictor

    cases = _sample_cases()
    cpu = torch.device("cpu")
    t_start = time.perf_counter()
    progress(f"calibrating backend 'auto' for this machine (one-off, result in {profile_path()})")

    def run(model: PromptableModel) -> tuple[float, list[float]]:
        scores = [dice(Predictor(model).set_display_image(img).predict(box=box).masks[0], gt)
                  for img, gt, box in cases]
        x, _ = model.preprocess(cases[0][0])
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.encode(x)
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1000.0, scores

    torch_model = TorchModel(base, "fp32")
    torch_ms, base_scores = run(torch_model)
    measured: dict[str, dict] = {"torch-fp32": {"encoder_ms": torch_ms, "dice_delta": 0.0, "accepted": True}}
    best = ("torch", "fp32", torch_ms, torch_model)
    for backend, precision in calibration_candidates(cpu):
        try:
            model = _make_backend(base, backend, precision, cpu, threads)
            ms, scores = run(model)
        except Exception as exc:  # a runtime that fails here is simply not chosen
            log.warning("calibration: %s %s failed (%s)", backend, precision, exc)
            continue
        guard = precision_guard(precision, base_scores, scores)
        measured[f"{backend}-{precision}"] = {"encoder_ms": ms, "dice_delta": guard.delta,
                                             "accepted": guard.accepted}
        if guard.accepted and ms < best[2]:
            best = (backend, precision, ms, model)
    profile = {"auto": {"backend": best[0], "precision": best[1]}, "measured": measured,
               "source": "calibration on first use (bundled CT samples)", "threads": threads,
               "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_speed_profile(profile)
    progress(f"auto = {best[0]} {best[1]} (encoder {best[2]:.0f} ms vs torch fp32 {torch_ms:.0f} ms; "
             f"calibrated in {time.perf_counter() - t_start:.0f} s)")
    return profile, best[3]


# -------------------------------------------------------------------- loading
def load_backend(spec: ModelSpec, checkpoint: str | Path | None, device: str | torch.device,
                 backend: str, precision: str = "fp32", threads: int | None = None) -> PromptableModel:
    """Load ``spec`` on ``backend`` (see the module docstring); the one entry from ``load_model``.

    With ``backend="auto"`` the default ``precision="fp32"`` is replaced by the measured
    profile's precision (only ever one that passed the Dice guard); any other precision
    is kept. ``device="auto"`` falls back to the CPU for runtimes without GPU support here.
    """
    from medisam.models.registry import load_model, resolve_device

    check_precision(precision)
    dev = resolve_device(device)
    n_threads = resolve_threads(threads)
    auto = backend == "auto"
    if auto:
        backend, precision = _auto_choice(spec, dev, precision)
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or auto")
    if device == "auto" and dev.type != "cpu" and not _accelerated(backend, dev):
        dev = torch.device("cpu")  # e.g. OpenVINO, or onnxruntime without its CUDA provider
    if not backend_available(backend):
        raise ModelError(f"backend {backend!r} is not installed: {install_hint(backend)}")
    if spec.family not in EXPORTABLE_FAMILIES and (backend != "torch" or precision != "fp32"):
        raise ModelError(f"{spec.name}: backends and reduced precision cover the litemedsam and "
                         f"sam families; use backend torch, precision fp32")
    if precision not in supported_precisions(backend, dev):
        raise ModelError(f"precision {precision} is not available for backend {backend} on {dev.type} "
                         f"here; available: {', '.join(supported_precisions(backend, dev))}")
    base = load_model(spec.name, checkpoint=checkpoint, device=dev if backend == "torch" else "cpu",
                      backend="torch")
    calibrated = None
    if (auto and backend != "torch" and precision == "fp32" and not spec.is_test_model
            and read_speed_profile() is None and env_backend() is None):
        profile, calibrated = calibrate(base, n_threads)
        backend, precision = profile["auto"]["backend"], profile["auto"]["precision"]
    try:
        model = calibrated or _make_backend(base, backend, precision, dev, n_threads)
    except Exception as exc:
        if not auto or backend == "torch":
            raise
        # auto never fails where torch works (e.g. an export a runtime cannot compile)
        log.warning("backend %s failed for %s (%s); auto falls back to torch fp32", backend, spec.name, exc)
        progress(f"backend {backend} unavailable for {spec.name} ({exc}); using torch")
        base = load_model(spec.name, checkpoint=checkpoint, device=resolve_device(device), backend="torch")
        backend, precision = "torch", "fp32"
        model = _make_backend(base, backend, precision, base.device, n_threads)
    log.info("model %s: backend=%s precision=%s threads=%d device=%s", spec.name, backend,
             precision, n_threads, model.device)
    return model


def _auto_choice(spec: ModelSpec, device: torch.device, precision: str) -> tuple[str, str]:
    """What ``auto`` resolves to for ``spec`` (an explicit non-fp32 precision is kept)."""
    if spec.family not in EXPORTABLE_FAMILIES:
        return "torch", "fp32" if precision == "fp32" else precision
    backend, auto_precision = choose_auto(device)
    if precision != "fp32":
        if precision not in supported_precisions(backend, device):
            return "torch", precision  # e.g. --precision fp16 on CUDA
        return backend, precision
    return backend, auto_precision


def _make_backend(base: PromptableModel, backend: str, precision: str, device: torch.device,
                  threads: int) -> PromptableModel:
    """Wrap a loaded torch model in ``backend`` (the torch network is shared, not copied)."""
    if backend == "torch":
        torch.set_num_threads(threads)
        return TorchModel(base, precision)
    if backend == "onnx":
        from medisam.models.onnx_backend import OnnxModel

        return OnnxModel(base, device, precision, threads)
    from medisam.models.openvino_backend import OpenVinoModel

    return OpenVinoModel(base, device, precision, threads)


def install_hint(backend: str) -> str:
    """How to install a backend's runtime (now core dependencies; the extras still exist)."""
    extra = "onnx" if backend == "onnx" else backend
    return f"pip install 'medisam[{extra}]'"


def _accelerated(backend: str, device: torch.device) -> bool:
    """Whether ``backend`` can run on the non-CPU ``device`` (else ``device="auto"`` means CPU)."""
    if backend == "torch":
        return True
    if backend == "onnx" and device.type == "cuda":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return False


class TorchModel(PromptableModel):
    """The torch network with the image encoder under autocast (bf16/fp16); fp32 output.

    The prompt encoder and decoder stay fp32: they are cheap, and keeping them exact
    keeps mask borders stable.
    """

    def __init__(self, base: PromptableModel, precision: str):
        super().__init__(base.spec, base.net, base.device, base.checkpoint, base.checkpoint_sha256)
        self.precision = precision
        self._dtype = torch_autocast_dtype(precision, base.device)

    @property
    def cache_signature(self) -> str:
        """fp32 keeps the plain torch signature, so it shares caches with ``load_model(name)``."""
        base = super().cache_signature
        return base if self.precision == "fp32" else f"{base}|{self.precision}"

    @torch.no_grad()
    def encode(self, tensor: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self._dtype):
            return self.net.image_encoder(tensor).float()


# ------------------------------------------------------- export cache (onnx/openvino)
def weights_key(model: PromptableModel) -> str:
    """Checkpoint sha256, or for seeded random test weights a hash of the state dict."""
    if model.checkpoint_sha256:
        return model.checkpoint_sha256[:16]
    digest = hashlib.sha256()
    for name, tensor in sorted(model.net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "random-" + digest.hexdigest()[:12]


def cached_export(model: PromptableModel) -> Path:
    """The cache folder holding ``model``'s ONNX export, exporting it on first use.

    Exports into a temporary folder and renames it into place, so concurrent processes
    never read a half-written graph (the loser of a race discards its copy).
    """
    from medisam.export.onnx_export import DEFAULT_OPSET, EXPORT_FORMAT_VERSION, OnnxExport, export_onnx

    folder = cache_root() / "onnx" / (f"{model.spec.name}-{weights_key(model)}-"
                                      f"op{DEFAULT_OPSET}-v{EXPORT_FORMAT_VERSION}")
    if OnnxExport(folder).is_complete():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        t0 = time.perf_counter()
        progress(f"exporting {model.spec.name} to ONNX for the fast backends (first use only) -> {folder}")
        export_onnx(model, tmp, force=True)
        progress(f"export done in {time.perf_counter() - t0:.0f} s")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not OnnxExport(folder).is_complete():
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def quantized_encoder(folder: Path) -> Path:
    """``encoder.int8.onnx``: the encoder with dynamically quantised MatMul/Gemm weights (s8).

    Only MatMul/Gemm: quantised Conv (ConvInteger) runs slower than fp32 in ONNX Runtime on
    CPU, measured here. Written once per export folder.
    """
    target = folder / "encoder.int8.onnx"
    if target.is_file():
        return target
    from medisam.errors import require

    quant = require("onnxruntime.quantization", "onnx")
    tmp = folder / f".encoder.int8.{os.getpid()}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser warns about pre-processing on the root logger
    try:
        quant.quantize_dynamic(str(folder / "encoder.onnx"), str(tmp),
                               op_types_to_quantize=["MatMul", "Gemm"],
                               weight_type=quant.QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, target)
    return target


#: Bumped whenever :mod:`medisam.models.fast_decoder` changes the graph it exports.
FAST_DECODER_VERSION = 2


def fast_decoder_enabled() -> bool:
    """False when ``$MEDISAM_FAST_DECODER=0`` (run the exported decoder graph as is)."""
    return os.environ.get("MEDISAM_FAST_DECODER", "1") != "0"


def fast_decoder(model: PromptableModel, folder: Path) -> Path | None:
    """``decoder.fast.v<N>.onnx`` in the export folder: the folded prompt decoder for box/point
    prompts (see :mod:`medisam.models.fast_decoder`), written once after checking it against
    the torch decoder. None when disabled or when the check or the export fails (the
    backends then use ``decoder.onnx`` for every prompt)."""
    if not fast_decoder_enabled():
        return None
    target = folder / f"decoder.fast.v{FAST_DECODER_VERSION}.onnx"
    if target.is_file():
        return target
    import warnings

    from medisam.models.fast_decoder import FastPromptDecoderGraph, check_equivalent

    tmp = folder / f".decoder.fast.{os.getpid()}.onnx"
    try:
        net = model.net.cpu().eval()
        size = model.spec.input_size
        worst = check_equivalent(net, size)
        side = int(net.prompt_encoder.image_embedding_size[0])
        args = (torch.zeros(1, side * side, 256), torch.tensor([[[10.0, 10.0], [50.0, 60.0]]]),
                torch.tensor([[2.0, 3.0]]))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(FastPromptDecoderGraph(net, size).eval(), args, str(tmp),
                              input_names=["image_tokens", "point_coords", "point_labels"],
                              output_names=["blocked_logits", "iou_predictions"],
                              dynamic_axes={"point_coords": {0: "num_prompts", 1: "num_points"},
                                            "point_labels": {0: "num_prompts", 1: "num_points"},
                                            "blocked_logits": {0: "num_prompts"},
                                            "iou_predictions": {0: "num_prompts"}},
                              opset_version=17, do_constant_folding=True, dynamo=False)
        os.replace(tmp, target)
        log.info("fast decoder for %s written to %s (max diff vs torch %.1e)", model.spec.name, target, worst)
        return target
    except Exception as exc:  # never fatal: the exported decoder still works
        log.warning("fast decoder unavailable for %s (%s); using decoder.onnx", model.spec.name, exc)
        return None
    finally:
        tmp.unlink(missing_ok=True)


class FastDecoderInputs:
    """Feeds of the fast decoder graph; keeps the channels-last tokens of the last embedding,
    so several prompts on one image (interactive clicks, the boxes of a propagation step)
    transpose it once."""

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._embedding: torch.Tensor | None = None  # held, so its identity cannot be reused
        self._version = -1
        self._tokens: np.ndarray | None = None

    def tokens(self, embedding: torch.Tensor) -> np.ndarray:
        from medisam.models.fast_decoder import image_tokens

        with self._lock:  # servers decode from several threads
            if embedding is not self._embedding or embedding._version != self._version:
                self._tokens = image_tokens(embedding.detach().float().cpu().numpy())
                self._embedding, self._version = embedding, embedding._version
            return self._tokens  # type: ignore[return-value]

    def feeds(self, embedding: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None,
              boxes: torch.Tensor | None) -> dict[str, np.ndarray]:
        coords, labels = prompts_to_points(points, boxes)
        return {"image_tokens": self.tokens(embedding), "point_coords": coords.numpy(),
                "point_labels": labels.numpy()}


def fast_outputs(blocked: np.ndarray, iou: np.ndarray, multimask: bool) -> DecoderOutput:
    """The fast graph's blocked logits -> :class:`DecoderOutput` of the masks asked for."""
    from medisam.models.fast_decoder import unshuffle_masks

    keep = slice(1, None) if multimask else slice(0, 1)
    return DecoderOutput(torch.from_numpy(unshuffle_masks(blocked, keep)),
                         torch.from_numpy(np.array(iou[:, keep], dtype=np.float32)))


def prompts_to_points(points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder inputs as one point list, exactly as ``PromptEncoder.forward``.

    Points first (padded with one ``(0, 0)`` label -1 point when there is no box), then
    each box as two corners with labels 2 and 3. Returns coords ``(B, N, 2)`` and float
    labels ``(B, N)`` on the model grid; N may be 0 (mask-only prompt).
    """
    parts_c, parts_l = [], []
    batch = 1
    if points is not None:
        coords, labels = points
        coords, labels = coords.float().cpu(), labels.float().cpu()
        batch = coords.shape[0]
        if boxes is None:
            coords = torch.cat([coords, torch.zeros(batch, 1, 2)], dim=1)
            labels = torch.cat([labels, -torch.ones(batch, 1)], dim=1)
        parts_c.append(coords)
        parts_l.append(labels)
    if boxes is not None:
        b = boxes.float().cpu().reshape(-1, 2, 2)
        batch = max(batch, b.shape[0])
        parts_c.append(b)
        parts_l.append(torch.tensor([[2.0, 3.0]]).expand(b.shape[0], 2))
    if not parts_c:
        return torch.zeros(batch, 0, 2), torch.zeros(batch, 0)
    if len(parts_c) == 2 and parts_c[0].shape[0] != parts_c[1].shape[0]:
        parts_c = [p.expand(batch, -1, -1) for p in parts_c]
        parts_l = [p.expand(batch, -1) for p in parts_l]
    return torch.cat(parts_c, dim=1).contiguous(), torch.cat(parts_l, dim=1).contiguous()


def select_masks(low_res: torch.Tensor, iou: torch.Tensor, multimask: bool) -> DecoderOutput:
    """Mask 0 (single) or masks 1-3 (multimask) of the exported decoder's four outputs."""
    sl = slice(1, None) if multimask else slice(0, 1)
    return DecoderOutput(low_res[:, sl], iou[:, sl])


def backend_table():
    """A rich Table of backends: installed version, precisions here, and what ``auto`` picks."""
    from rich.markup import escape
    from rich.table import Table

    from medisam.models.precision import cpu_has_bf16, cpu_has_vnni
    from medisam.models.registry import resolve_device

    device = resolve_device("auto")
    auto_backend, auto_precision = choose_auto(device)
    profile = read_speed_profile()
    if env_backend() is not None:
        source = f"${BACKEND_ENV}"
    elif profile:
        source = f"{profile.get('source', 'measured by benchmarks/speed.py')} ({profile_path()})"
    else:
        source = ("not calibrated yet: the first `auto` load measures this machine; until then "
                  + " > ".join(AUTO_ORDER))
    table = Table(title=f"medisam backends (device {device.type}, threads {resolve_threads()}, "
                        f"CPU bf16 {'yes' if cpu_has_bf16() else 'no'}, VNNI {'yes' if cpu_has_vnni() else 'no'})",
                  caption=f"auto = {auto_backend} {auto_precision}: {source}")
    for column in ("backend", "runtime", "precisions here", "auto"):
        table.add_column(column)
    for backend, version in backend_versions().items():
        precisions = ", ".join(supported_precisions(backend, device)) if version else "-"
        table.add_row(backend, version or escape(f"not installed ({install_hint(backend)})"), precisions,
                      "yes" if backend == auto_backend else "")
    return table


def decoder_feeds(embedding: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None,
                  boxes: torch.Tensor | None, mask_input: torch.Tensor | None,
                  mask_size: int) -> dict[str, np.ndarray]:
    """Inputs of the exported prompt-encoder+decoder graph (shared by ONNX Runtime and OpenVINO)."""
    coords, labels = prompts_to_points(points, boxes)
    if mask_input is None:
        mask = np.zeros((1, 1, mask_size, mask_size), dtype=np.float32)
        has_mask = np.zeros(1, dtype=np.float32)
    else:
        mask = mask_input.detach().float().cpu().numpy()
        has_mask = np.ones(1, dtype=np.float32)
    return {"image_embeddings": embedding.detach().float().cpu().numpy(),
            "point_coords": coords.numpy(), "point_labels": labels.numpy(),
            "mask_input": mask, "has_mask_input": has_mask}
