"""Shared fixtures: tiny random models, the real bundled model and ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Unit tests use tiny random models on torch: `backend="auto"` (the default) would export
# and compile graphs for each. tests/speed covers the auto path with this unset.
os.environ.setdefault("MEDISAM_BACKEND", "torch")


def split_threads_between_workers() -> None:
    """Under pytest-xdist (``scripts/test.sh`` runs ``-n``), give each worker its share of the
    CPUs (``MEDISAM_THREADS`` and the OpenMP pool, set before torch is imported), so that
    the workers do not oversubscribe the cores; a plain ``pytest`` keeps every CPU."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS
        share = str(max(1, cpus // workers))
        os.environ.setdefault("MEDISAM_THREADS", share)
        os.environ.setdefault("OMP_NUM_THREADS", share)


split_threads_between_workers()


@pytest.fixture(autouse=True)
def float_mode_restored():
    """Each test starts with the worker thread's float mode as the process began (denormals kept):
    a test that compiles an OpenVINO graph itself with the denormals option (the product wraps its
    compiles in ``float_mode_kept``) must not change the numerics of the tests after it."""
    yield
    from medisam.models.float_mode import denormals_flushed

    if denormals_flushed():
        import torch

        torch.set_flush_denormal(False)


def shared_data_dir() -> Path:
    """``$MEDISAM_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("MEDISAM_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set MEDISAM_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_model():
    from medisam.models import load_model

    return load_model("litemedsam-tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_sam():
    from medisam.models import load_model

    return load_model("sam-tiny", device="cpu")


@pytest.fixture(scope="session")
def real_model():
    """The bundled LiteMedSAM on the fast CPU backend a default install runs (OpenVINO fp32,
    what ``auto`` picks on a CPU without bf16; the first load exports the graphs once into the
    cache), torch where OpenVINO is missing."""
    from medisam.models import load_model
    from medisam.models.runtime import backend_available

    if backend_available("openvino"):
        return load_model("litemedsam", device="cpu", backend="openvino", precision="fp32")
    return load_model("litemedsam", device="cpu", backend="torch")


@pytest.fixture(scope="session")
def real_torch_model():
    """The bundled LiteMedSAM on torch fp32: the reference the fast backends are checked against."""
    from medisam.models import load_model

    return load_model("litemedsam", device="cpu", backend="torch")


def disk_image(size: int = 128, radius: int = 30, center: tuple[int, int] = (64, 64)):
    """A bright disk on a dark, slightly noisy background and its mask (uint8 RGB, bool)."""
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - center[1]) ** 2 + (xx - center[0]) ** 2 <= radius ** 2
    rng = np.random.default_rng(0)
    grey = np.where(mask, 200, 40).astype(np.float32) + rng.normal(0, 5, (size, size))
    image = np.clip(grey, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=-1), mask


@pytest.fixture()
def made_sessions(monkeypatch) -> list[dict]:
    """The slicing ``axis`` and the ``window`` argument of every ``VolumeSession`` made during the
    test, in order (both import paths, ``medisam.predict`` and ``medisam.predict.session``, give the
    recording class)."""
    import medisam.predict as predict
    import medisam.predict.session as session_module

    made: list[dict] = []

    class Recording(session_module.VolumeSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append({"axis": self.axis, "window": kwargs.get("window")})

    monkeypatch.setattr(predict, "VolumeSession", Recording)
    monkeypatch.setattr(session_module, "VolumeSession", Recording)
    return made


@pytest.fixture(scope="session")
def sam2_tiny():
    """The tiny random-weight SAM 2 (skips the test where the sam2 package is not installed)."""
    pytest.importorskip("sam2")
    from medisam.models import load_model

    return load_model("sam2-tiny", device="cpu")


@pytest.fixture()
def moving_disk(frames: int = 6, h: int = 48, w: int = 64, step: int = 4):
    """``(T, H, W)`` float32 frames of a disk moving right, and its boolean masks."""
    yy, xx = np.mgrid[:h, :w]
    masks = np.stack([(yy - h // 2) ** 2 + (xx - 16 - step * t) ** 2 < 64 for t in range(frames)])
    rng = np.random.default_rng(0)
    volume = np.where(masks, 100.0, 10.0) + rng.normal(0, 2, masks.shape)
    return volume.astype(np.float32), masks
