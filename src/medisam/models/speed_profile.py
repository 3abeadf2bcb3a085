"""The measured speed profile behind ``backend="auto"`` (``<cache>/speed_profile.json``)."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from medisam.models.precision import cuda_auto_precision
from medisam.models.runtime import (AUTO_ORDER, BACKENDS, backend_available, cache_root, env_backend,
                                    supported_precisions)

log = logging.getLogger(__name__)

PROFILE_FILE = "speed_profile.json"


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


@contextmanager
def calibration_lock(timeout_s: float = 1800.0) -> Iterator[None]:
    """An inter-process lock beside the profile: processes that start together (bench workers,
    a server and a CLI run) calibrate once; the others wait for the profile (``filelock``,
    which torch installs). A lock that cannot be taken (timeout, read-only cache) only costs
    a second calibration, so the caller goes on without it."""
    from filelock import FileLock, Timeout

    path = profile_path()
    lock = FileLock(str(path.with_suffix(".lock")))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=timeout_s)
    except (Timeout, OSError) as exc:
        log.warning("calibration lock %s unavailable (%s); calibrating without it", lock.lock_file, exc)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def write_speed_profile(profile: dict) -> Path:
    """Store the benchmark's choice for ``backend="auto"`` (atomic replace)."""
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(profile, indent=2))
    os.replace(tmp, path)
    return path


def encoding_time(encodings: int, model_name: str, backend: str | None = None,
                  precision: str | None = None, timed_ms: float | None = None,
                  threads: int | None = None, parallel: int = 1) -> str | None:
    """``encodings`` encoder runs in words ("about 11 min at 1321 ms per encoding"). An
    estimate for a plan printed before long work.

    ``timed_ms`` (an encoding timed by the caller, e.g. a session's first plane) comes first: it
    ran on this run's threads and this machine's current load. The calibration profile of
    ``backend``/``precision`` (None: ``auto``'s choice; LiteMedSAM only, its weights do not
    change the time) was timed once, possibly on another thread count: given the run's
    ``threads``, its figure is scaled by the thread ratio and the line says so (on 2 cores a
    one-thread figure was 1.5-2x a 2-thread session's; linear scaling comes within ~25 %).
    ``parallel`` processes share the encodings (``medisam bench -w N``). None when neither is known."""
    ms, source = None, ""
    if timed_ms is not None and timed_ms > 0:
        ms, source = float(timed_ms), " (timed in this session)"
    elif model_name == "litemedsam":
        ms = _profile_encoder_ms(backend, precision)
        profiled = _profile_threads()
        if ms is not None and threads and profiled and profiled != threads:
            source = f" ({ms:.0f} ms calibrated on {_threads(profiled)}, scaled to {threads})"
            ms = ms * profiled / threads
    if ms is None:
        return None
    seconds = encodings * float(ms) / 1000.0 / max(1, parallel)
    spoken = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    workers = f" in {parallel} processes" if parallel > 1 else ""
    return f"about {spoken}{workers} at {ms:.0f} ms per encoding{source}"


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _profile_threads() -> int | None:
    """The thread count the profile's encoders were timed with, if recorded."""
    threads = (read_speed_profile() or {}).get("threads")
    return int(threads) if isinstance(threads, int) and threads > 0 else None


def _profile_encoder_ms(backend: str | None, precision: str | None) -> float | None:
    """The profile's encoder time of ``backend``/``precision`` (None: ``auto``'s), if measured."""
    profile = read_speed_profile() or {}
    if backend is None:
        auto = profile.get("auto") or {}
        backend, precision = auto.get("backend"), auto.get("precision")
    ms = ((profile.get("measured") or {}).get(f"{backend}-{precision or 'fp32'}") or {}).get("encoder_ms")
    return float(ms) if isinstance(ms, (int, float)) and ms > 0 else None


def choose_auto(device: torch.device) -> tuple[str, str]:
    """(backend, precision) for ``backend="auto"`` without calibrating.

    ``$MEDISAM_BACKEND`` first (fp32). On CUDA: torch, fp16 on GPUs with tensor cores
    (:func:`~medisam.models.precision.cuda_auto_precision`), else fp32. On MPS: torch fp32.
    On CPU: the profile's ``auto`` entry
    when its backend is installed and its precision passed the Dice guard, else the first
    installed backend of AUTO_ORDER, fp32 (what :func:`calibrate` starts from).
    """
    pinned = env_backend()
    if pinned is not None:
        return pinned, "fp32"
    if device.type == "cuda":
        return "torch", cuda_auto_precision(device)
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
