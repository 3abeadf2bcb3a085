"""Real LiteMedSAM weights: 3D-box propagation through a synthetic anisotropic sphere."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.io.medical_image import MedicalImage
from medisam.metrics_basic import dice
from medisam.predict import PropagationConfig, VolumeSession


@pytest.mark.real_weights
def test_sphere_dice(real_model):
    # 3 mm slices, 1 mm pixels: a 12 mm sphere spans 9 slices and 25 pixels across
    zz, yy, xx = np.mgrid[:11, :64, :64]
    sphere = ((zz - 5) * 3.0) ** 2 + (yy - 30.0) ** 2 + (xx - 34.0) ** 2 <= 12.5 ** 2
    rng = np.random.default_rng(0)
    array = (np.where(sphere, 180.0, 60.0) + rng.normal(0, 8, sphere.shape)).astype(np.float32)
    image = MedicalImage(array, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), "MR")
    zs, ys, xs = np.nonzero(sphere)
    box = (xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max())
    session = VolumeSession(real_model, image)  # tri-planar: j and i views stretched to 1 mm pixels
    session.add_box3d(box)
    labels = session.propagate(progress=False)
    assert dice(labels.array > 0, sphere) > 0.8
    assert session.encoded_slices <= set(range(zs.min(), zs.max() + 1))
    ranges = {0: (zs.min(), zs.max()), 1: (ys.min(), ys.max()), 2: (xs.min(), xs.max())}
    assert all(ranges[a][0] <= t <= ranges[a][1] for a, t in session.encoded_planes)
    single = VolumeSession(real_model, image, predictor=session.predictor, config=PropagationConfig(views=1))
    single.add_box3d(box)
    assert dice(single.propagate(progress=False).array > 0, sphere) > 0.8
