"""Fixtures for the session-contract tests: one small volume and every session implementation."""

from __future__ import annotations

import numpy as np
import pytest
from contract_data import FAST, disk_volume

from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig, open_session


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
