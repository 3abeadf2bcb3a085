"""Fixtures for the session-contract tests: one small volume and every session implementation."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig, open_session

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


@pytest.fixture(scope="session")
def sam2_tiny():
    pytest.importorskip("sam2")
    from medisam.models import load_model

    return load_model("sam2-tiny", device="cpu")


#: The implementations every contract test runs: name -> (model fixture, open_session keywords).
IMPLEMENTATIONS = {
    "volume-views1": ("tiny_model", {"config": FAST}),
    "volume-views3": ("tiny_model", {"config": PropagationConfig(min_area_px=0, extra_margins_mm=(), views=3)}),
    "sam2": ("sam2_tiny", {}),
    "tracking-video": ("tiny_model", {}),  # a video: TrackingSession (frames as slices)
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def session(request):
    """``(name, session)``: a fresh session of each implementation over :func:`disk_volume`."""
    fixture, kw = IMPLEMENTATIONS[request.param]
    image, _ = disk_volume()
    if request.param == "tracking-video":
        image = MedicalImage(image.array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), is_video=True)
    return request.param, open_session(request.getfixturevalue(fixture), image, **kw)
