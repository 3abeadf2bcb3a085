"""Test data for the server tests (imported by test modules; tests/serve is on sys.path)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from tests import dicom_factory

TOKEN = "test-token-0123456789"


def disk(size: int = 96, center: tuple[int, int] = (48, 48), radius: int = 20) -> np.ndarray:
    """A uint8 (H, W) picture: bright disk on dark background."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - center[1]) ** 2 + (xx - center[0]) ** 2 <= radius ** 2
    return np.where(inside, 200, 30).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def ct_volume(shape: tuple[int, int, int] = (6, 48, 48)) -> np.ndarray:
    """HU volume: a soft-tissue ball in air-filled background (float32)."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ball = (z - shape[0] / 2) ** 2 / 9 + (y - 24) ** 2 / 100 + (x - 24) ** 2 / 100 <= 1
    return np.where(ball, 60.0, -900.0).astype(np.float32)


def write_ct_series(folder: Path, hu: np.ndarray, spacing=(0.8, 0.8, 2.5), origin=(-100.0, -120.0, 50.0)) -> list[Path]:
    """A minimal, valid CT series (one file per slice) for DICOM upload/DICOM-SEG tests."""
    return dicom_factory.write_ct_series(folder, hu, spacing=spacing, origin=origin)[1]


def zip_bytes(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (0o120777 << 16)
            zf.writestr(info, data)
    return buf.getvalue()
