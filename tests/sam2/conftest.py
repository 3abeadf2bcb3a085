"""Fixtures for SAM 2 tests: the tiny random-weight SAM 2 and a moving-disk volume."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sam2")


@pytest.fixture(scope="session")
def sam2_tiny():
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
