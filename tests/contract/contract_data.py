"""Shared data of the session-contract tests: one small volume and a fast propagation config."""

from __future__ import annotations

import numpy as np

from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig

#: Random tiny-model masks may vanish: keep going; one margin only (fewer decoder passes).
FAST = PropagationConfig(min_area_px=0, extra_margins_mm=(), views=1)
SHAPE = (6, 32, 40)


def disk_volume() -> tuple[MedicalImage, np.ndarray]:
    """``(6, 32, 40)`` MR-like volume of a disk moving right, and its masks."""
    t, h, w = SHAPE
    yy, xx = np.mgrid[:h, :w]
    masks = np.stack([(yy - 16) ** 2 + (xx - 14 - 2 * k) ** 2 < 49 for k in range(t)])
    rng = np.random.default_rng(0)
    array = (np.where(masks, 200.0, 20.0) + rng.normal(0, 3, masks.shape)).astype(np.float32)
    return MedicalImage(array, (0.8, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), modality="MR"), masks
