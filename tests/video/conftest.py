"""Fixtures for video tests: a small MP4 of a moving disk written with PyAV, and GOWT1 frames + track masks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")


@pytest.fixture()
def disk_frames():
    """``(T, H, W, 3)`` uint8 frames of a bright disk moving right on a dark background, and masks."""
    t, h, w = 5, 64, 96
    yy, xx = np.mgrid[:h, :w]
    masks = np.stack([(yy - 32) ** 2 + (xx - 24 - 8 * i) ** 2 <= 12 ** 2 for i in range(t)])
    frames = np.where(masks, 210, 40).astype(np.uint8)
    return np.repeat(frames[..., None], 3, axis=-1), masks


@pytest.fixture()
def disk_mp4(tmp_path, disk_frames):
    from medisam.io.video import write_video

    frames, masks = disk_frames
    path = write_video(frames, tmp_path / "disk.mp4", fps=12.5)
    return path, masks


@pytest.fixture()
def gowt1(data_dir):
    """``(frames, track masks)`` of the CTC GOWT1 sequence in ../shared/data (skips when absent)."""
    from medisam.io import read_image

    seq = data_dir / "ctc_gowt1_01"
    if not seq.is_dir():
        pytest.skip("ctc_gowt1_01 not available")
    return read_image(seq / "frames" / "01"), read_image(seq / "masks" / "01").array
