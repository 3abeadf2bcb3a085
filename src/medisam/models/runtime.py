"""Runtimes on this machine: which backends are installed, their precisions, threads, cache folder."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import torch

from medisam.errors import ModelError
from medisam.models.precision import cpu_has_bf16, cpu_has_vnni

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
#: What ``auto`` tries when nothing was measured on this machine yet (a starting order, not a
#: speed claim: the first ``auto`` load calibrates and stores the measured choice).
AUTO_ORDER = ("openvino", "onnx", "torch")
#: Environment variable that pins what ``backend="auto"`` means (tests set it to torch).
BACKEND_ENV = "MEDISAM_BACKEND"


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
    if backend == "openvino":
        floats = ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)
        return floats + (("int8",) if cpu_has_vnni() and importlib.util.find_spec("nncf") else ())
    raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or auto")


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


def install_hint(backend: str) -> str:
    """How to install a backend's runtime (now core dependencies; the extras still exist)."""
    extra = "onnx" if backend == "onnx" else backend
    return f"pip install 'medisam[{extra}]'"


def accelerated(backend: str, device: torch.device) -> bool:
    """Whether ``backend`` can run on the non-CPU ``device`` (else ``device="auto"`` means CPU)."""
    if backend == "torch":
        return True
    if backend == "onnx" and device.type == "cuda":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return False
