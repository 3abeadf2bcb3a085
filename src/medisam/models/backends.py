"""Backend choice and loading: ``load_backend`` puts a model on torch, ONNX Runtime or OpenVINO.

``load_model(name)`` lands here with the default ``backend="auto"`` (and for anything but
plain fp32 torch). For 2D-promptable models every backend returns a ``PromptableModel``
subclass, so ``Predictor``, ``VolumeSession`` and the server use it unchanged; SAM 2 models
(no ONNX export) stay the torch fp32 :class:`~medisam.models.sam2_model.Sam2Model`:

- ``torch``: the PyTorch network; ``bf16`` (CPU with AVX512_BF16/AMX, or CUDA) and
  ``fp16`` (CUDA) run the image encoder under ``torch.autocast``.
- ``onnx``: ONNX Runtime sessions on graphs exported once per weights into the cache
  folder (``$MEDISAM_CACHE``, default ``~/.cache/medisam``) under
  ``onnx/<model>-<weights sha>-op<opset>-v<format>/``; ``int8`` quantises the encoder's
  MatMuls dynamically (VNNI). CUDA via ONNX Runtime's CUDA provider when installed.
- ``openvino``: OpenVINO on the same ONNX files; ``bf16`` uses its bf16 inference hint;
  compiled blobs are cached under ``<cache>/openvino/``.
- ``auto`` (the default): on CUDA torch, fp16 for LiteMedSAM on GPUs with tensor cores
  (encoder replayed as CUDA graphs, :mod:`medisam.models.cuda_graph`), else fp32; on MPS
  torch fp32; on the CPU the fastest (backend,
  precision) measured on this machine whose masks pass the Dice guard against torch fp32
  (:func:`medisam.models.precision.precision_guard`), read from
  ``<cache>/speed_profile.json``. That profile is written by ``benchmarks/speed.py
  --save-profile`` (the full measurement) or, when absent, by a one-off calibration on the
  first ``auto`` load (:func:`calibrate`: encoder time and the Dice guard on the bundled
  CT samples, announced on stderr with the time it took). ``$MEDISAM_BACKEND=torch|onnx|openvino``
  overrides what ``auto`` means (fp32). Families without an export
  (``spec.capabilities.onnx_export`` false: SAM 2) and failed exports fall back to torch fp32.

Which of them is fastest depends on the machine: it is measured here (the calibration, or
``benchmarks/speed.py``), never assumed. Threads: ``threads=`` or ``$MEDISAM_THREADS``,
default all CPUs this process may use.

The other concerns live in their own modules and are re-exported here for old imports:
:mod:`~medisam.models.runtime` (installed runtimes, precisions, threads, cache folder),
:mod:`~medisam.models.speed_profile` (the measured profile and ``choose_auto``),
:mod:`~medisam.models.calibration`, :mod:`~medisam.models.export_cache` (exported graphs) and
:mod:`~medisam.models.decoder_feeds` (inputs/outputs of the exported decoders).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from medisam.errors import CheckpointError, ModelError
from medisam.models import calibration
from medisam.models.calibration import calibration_candidates  # noqa: F401 - re-export
from medisam.models.cuda_graph import GraphedEncoder
from medisam.models.decoder_feeds import (FastDecoderInputs, decode_fast, decoder_feeds,  # noqa: F401
                                          prompts_to_points, select_masks)
from medisam.models.device import resolve_device
from medisam.models.export_cache import (FAST_DECODER_VERSION, cached_export, fast_decoder,  # noqa: F401
                                         fast_decoder_enabled, is_exported, quantized_encoder, weights_key)
from medisam.models.loaded import LoadedModel
from medisam.models.loading import load_torch
from medisam.models.precision import autocast, check_precision, cpu_has_bf16, cpu_has_vnni, torch_autocast_dtype
from medisam.models.promptable import PromptableModel
from medisam.models.runtime import (AUTO_ORDER, BACKEND_ENV, BACKENDS, backend_available,  # noqa: F401
                                    backend_versions, cache_root, env_backend, install_hint, progress,
                                    resolve_threads, supported_precisions)
from medisam.models.runtime import accelerated as _accelerated
from medisam.models.spec import ModelSpec
from medisam.models.speed_profile import (PROFILE_FILE, calibration_lock, choose_auto, profile_path,  # noqa: F401
                                          read_speed_profile, write_speed_profile)

log = logging.getLogger(__name__)

#: Families with an ONNX export (kept for old imports; the code reads ``spec.capabilities.onnx_export``).
EXPORTABLE_FAMILIES = ("litemedsam", "sam")


def calibrate(base: PromptableModel, threads: int, repeats: int = 3) -> tuple[dict, PromptableModel]:
    """:func:`medisam.models.calibration.calibrate` with this module's backends."""
    return calibration.calibrate(base, threads, _make_backend, repeats)


def load_backend(spec: ModelSpec, checkpoint: str | Path | None, device: str | torch.device,
                 backend: str, precision: str | None = None, threads: int | None = None) -> LoadedModel:
    """Load ``spec`` on ``backend`` (see the module docstring); the one entry from ``load_model``.

    ``precision`` None: with ``backend="auto"`` the measured profile's precision (only ever one
    that passed the Dice guard), else fp32. A precision given is kept, ``auto`` then picking a
    backend that runs it. ``device="auto"`` falls back to the CPU for runtimes without GPU support here.
    """
    if precision is not None:
        check_precision(precision)
    dev = resolve_device(device)
    n_threads = resolve_threads(threads)
    auto = backend == "auto"
    measured = auto and precision is None  # auto's own choice of precision: calibrated on first use
    if auto:
        backend, precision = _auto_choice(spec, dev, precision)
    elif precision is None:
        precision = "fp32"
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or auto")
    if device == "auto" and dev.type != "cpu" and not _accelerated(backend, dev):
        dev = torch.device("cpu")  # e.g. OpenVINO, or onnxruntime without its CUDA provider
    if not backend_available(backend):
        raise ModelError(f"backend {backend!r} is not installed: {install_hint(backend)}")
    if not spec.capabilities.onnx_export and (backend != "torch" or precision != "fp32"):
        raise ModelError(f"{spec.name}: backends and reduced precision cover the litemedsam and "
                         f"sam families; use backend torch, precision fp32")
    if precision not in supported_precisions(backend, dev):
        raise ModelError(f"precision {precision} is not available for backend {backend} on {dev.type} "
                         f"here; available: {', '.join(supported_precisions(backend, dev))}")
    # a fast backend reads its exported graphs: the torch network is built only if they must be made
    base = load_torch(spec, checkpoint, dev if backend == "torch" else "cpu", lazy=backend != "torch")
    if not base.net_built and not is_exported(base):
        # the export needs the network: read and check the checkpoint now, so a bad file is one error line,
        # not a "calibrating"/"exporting" line and then the error
        base.net  # noqa: B018
    calibrated = None
    if (measured and backend != "torch" and precision == "fp32" and not spec.is_test_model
            and read_speed_profile() is None and env_backend() is None):
        # processes that start together calibrate once: the others wait and read its profile
        with calibration_lock():
            profile = read_speed_profile()
            if profile is None:
                profile, calibrated = calibrate(base, n_threads)
        backend, precision = profile["auto"]["backend"], profile["auto"]["precision"]
    try:
        model = calibrated or _make_backend(base, backend, precision, dev, n_threads)
    except Exception as exc:
        if not auto or backend == "torch" or isinstance(exc, CheckpointError):  # a bad file fails on torch too
            raise
        # auto never fails where torch works (e.g. an export a runtime cannot compile)
        log.warning("backend %s failed for %s (%s); auto falls back to torch fp32", backend, spec.name, exc)
        progress(f"backend {backend} unavailable for {spec.name} ({exc}); using torch")
        base = load_torch(spec, checkpoint, resolve_device(device))
        backend, precision = "torch", "fp32"
        model = _make_backend(base, backend, precision, base.device, n_threads)
    log.info("model %s: backend=%s precision=%s threads=%d device=%s", spec.name, backend,
             precision, n_threads, model.device)
    return model


def _auto_choice(spec: ModelSpec, device: torch.device, precision: str | None) -> tuple[str, str]:
    """What ``auto`` resolves to for ``spec``: the measured (backend, precision) for ``precision``
    None; a precision given is kept, on the measured backend where it runs there, else on the
    first installed backend that runs it (``--precision fp32`` was read as "not given" and ran bf16)."""
    if not spec.capabilities.onnx_export:
        return "torch", precision or "fp32"
    backend, auto_precision = choose_auto(device)
    if device.type == "cuda" and not spec.capabilities.cuda_fast_path:
        auto_precision = "fp32"  # fp16 on CUDA is measured only where the family says so
    if precision is None:
        return backend, auto_precision
    if device.type != "cpu":  # a GPU's backend is torch: a precision it lacks is told by load_backend
        return backend, precision
    candidates = list(dict.fromkeys((backend, *AUTO_ORDER, "torch")))  # the measured one first
    for candidate in candidates:
        if backend_available(candidate) and precision in supported_precisions(candidate, device):
            return candidate, precision
    offered = sorted({p for b in candidates if backend_available(b) for p in supported_precisions(b, device)})
    raise ModelError(f"precision {precision} is not available on {device.type} here with any installed backend "
                     f"({', '.join(b for b in candidates if backend_available(b))}); available: {', '.join(offered)}")


def make_backend(base: LoadedModel, backend: str, precision: str, device: torch.device,
                  threads: int) -> LoadedModel:
    """Wrap a loaded torch model in ``backend`` (the torch network is shared, not copied)."""
    if backend == "torch":
        torch.set_num_threads(threads)
        if not base.spec.capabilities.prompting_2d:
            return base  # SAM 2: its own model type, torch fp32 only (checked by load_backend)
        return TorchModel(base, precision)
    if backend == "onnx":
        from medisam.models.onnx_backend import OnnxModel

        return OnnxModel(base, device, precision, threads)
    from medisam.models.openvino_backend import OpenVinoModel

    return OpenVinoModel(base, device, precision, threads)


class TorchModel(PromptableModel):
    """The torch network with the image encoder under autocast (bf16/fp16); fp32 output.

    The prompt encoder and decoder stay fp32: they are cheap, and keeping them exact
    keeps mask borders stable.
    """

    def __init__(self, base: PromptableModel, precision: str):
        super().__init__(base.spec, base.net, base.device, base.checkpoint, base.checkpoint_sha256)
        self.precision = precision
        self._dtype = torch_autocast_dtype(precision, base.device)
        #: on CUDA the encoder replays CUDA graphs (one per input shape; see medisam.models.cuda_graph)
        graphs = base.device.type == "cuda" and base.spec.capabilities.cuda_fast_path
        self.graphed_encoder = GraphedEncoder(self._encode_eager) if graphs else None

    @property
    def cache_signature(self) -> str:
        """fp32 keeps the plain torch signature, so it shares caches with ``load_model(name)``."""
        base = super().cache_signature
        return base if self.precision == "fp32" else f"{base}|{self.precision}"

    @torch.no_grad()
    def encode(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.graphed_encoder is not None:
            return self.graphed_encoder(tensor.to(self.device))
        return self._encode_eager(tensor)

    def _encode_eager(self, tensor: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self._dtype, cache_enabled=self.device.type != "cuda"):
            return self.net.image_encoder(tensor).float()


def backend_table():
    """A rich Table of backends: installed version, precisions here, and what ``auto`` picks."""
    from rich.markup import escape
    from rich.table import Table


    device = resolve_device("auto")
    auto_backend, auto_precision = choose_auto(device)
    profile = read_speed_profile()
    if env_backend() is not None:
        source = f"${BACKEND_ENV}"
    elif device.type == "cuda":
        source = (f"on CUDA auto is torch, fp16 on GPUs with tensor cores (this one: compute capability "
                  f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}), its encoder as CUDA graphs")
    elif device.type != "cpu":
        source = f"on {device.type} auto is torch fp32"
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




#: Old private name (tests patch it to simulate a failing runtime).
_make_backend = make_backend
