"""Overlay PNG for people: the image with coloured, semi-transparent labels and contours."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from medisam.errors import InputError
from medisam.io.atomic import atomic_write

log = logging.getLogger(__name__)

#: RGB colours for labels 1, 2, ... (cycled); chosen to stay distinct on grey images.
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
    ],
    dtype=np.float32,
)


def label_colours(labels: np.ndarray) -> np.ndarray:
    """RGB float32 colour for every pixel's label (background 0 -> black)."""
    idx = (labels.astype(np.int64) - 1) % len(PALETTE)
    out = PALETTE[idx]
    out[labels == 0] = 0
    return out


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Boolean map of labelled pixels that touch a different label (4-neighbourhood)."""
    lab = labels.astype(np.int64)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    return edge & (lab > 0)


def render_overlay(image2d_display: np.ndarray, labels2d: np.ndarray, alpha: float = 0.4,
                   opacity: Mapping[int, float] | None = None) -> np.ndarray:
    """Blend labels over an ``(H, W, 3)`` (or ``(H, W)``) display image; returns uint8 RGB.

    ``opacity`` maps a label to its own fill alpha (0 hides it, contour included); others use ``alpha``.
    """
    img = np.asarray(image2d_display, dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    labels = np.asarray(labels2d)
    if img.ndim != 3 or img.shape[-1] != 3 or labels.shape != img.shape[:2]:
        raise InputError(f"overlay needs an (H, W, 3) image and (H, W) labels, got {img.shape} and {labels.shape}")
    colours = label_colours(labels)
    a = np.full(labels.shape, float(alpha), np.float32)
    for value, o in (opacity or {}).items():
        a[labels == value] = min(max(float(o), 0.0), 1.0)
    a = np.where(labels > 0, a, 0.0)[..., None]
    out = (1 - a) * img + a * colours
    edge = label_boundaries(labels) & (a[..., 0] > 0)
    out[edge] = colours[edge]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_overlay_png(
    image2d_display: np.ndarray,
    labels2d: np.ndarray,
    path: str | Path,
    force: bool = False,
    alpha: float = 0.4,
) -> Path:
    """Write an RGB PNG of ``image2d_display`` ([0, 255], e.g. from ``to_display``) with labels.

    Filled regions are blended with ``alpha``; one-pixel contours are drawn opaque.
    Atomic, and refuses an existing ``path`` unless ``force``.
    """
    rgb = render_overlay(image2d_display, labels2d, alpha)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"{path}: PNG encoding failed")
    path = Path(path).expanduser()
    with atomic_write(path, force=force) as tmp:
        tmp.write_bytes(buf.tobytes())
    log.info("wrote overlay %s", path)
    return path
