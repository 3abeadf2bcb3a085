"""The ``recist`` volume strategy: a simulated RECIST line -> the lesion's 3D box -> propagation."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.prompting.shapes import recist_to_box3d
from medisam.prompting.volume import RecistStrategy, key_slice, recist_line


def _ellipse(h=60, w=80, cy=30, cx=40, ry=8, rx=20):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def test_recist_line_is_the_longest_diameter_in_mm_of_the_largest_component():
    mask = _ellipse()
    mask[2:4, 2:4] = True  # a far speck: not the lesion
    x0, y0, x1, y1 = recist_line(mask)
    assert abs(abs(x1 - x0) - 40.0) <= 1.0 and abs(y1 - y0) <= 1.0  # along the long (x) axis
    assert all(mask[int(y), int(x)] for x, y in ((x0, y0), (x1, y1)))  # ends on the lesion
    # tall pixels (3 mm high, 1 mm wide): the 16-pixel vertical diameter (48 mm) beats the 40 mm one
    x0, y0, x1, y1 = recist_line(_ellipse(), pixel_mm=(1.0, 3.0))
    assert abs(x1 - x0) <= 1.0 and abs(abs(y1 - y0) - 16.0) <= 1.0
    one = np.zeros((5, 5), bool)
    one[2, 3] = True
    x0, y0, x1, y1 = recist_line(one)
    assert np.hypot(x1 - x0, y1 - y0) == pytest.approx(1.0) and (x0 + x1) / 2 == 3.5 and (y0 + y1) / 2 == 2.5
    with pytest.raises(PromptError, match="non-empty"):
        recist_line(np.zeros((4, 4), bool))


def test_recist_strategy_prompts_the_clients_box_and_propagates(tiny_model):
    from medisam.io.medical_image import MedicalImage
    from medisam.predict import Predictor

    truth = np.zeros((9, 60, 80), bool)
    for z, scale in zip(range(2, 7), (0.5, 0.8, 1.0, 0.8, 0.5)):
        truth[z] = _ellipse(ry=max(1, int(8 * scale)), rx=int(20 * scale))
    rng = np.random.default_rng(0)
    array = (truth * 150.0 + rng.normal(0, 5, truth.shape)).astype(np.float32)
    spacing_zyx = (4.0, 1.0, 1.0)
    image = MedicalImage(array, (1.0, 1.0, 4.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "CT")
    assert tuple(image.spacing_zyx) == spacing_zyx
    [outcome] = RecistStrategy().run_volume(Predictor(tiny_model), image, truth, np.random.default_rng(0))
    k = key_slice(truth)
    line = recist_line(truth[k])
    b = recist_to_box3d(line, k, truth.shape, spacing_zyx)
    assert outcome.prompt == {"slice": k, "recist": [round(v, 2) for v in line],
                              "box3d": [b.x0, b.y0, b.z0, b.x1, b.y1, b.z1]}
    assert k == 4 and (b.z0, b.z1) == (0, 8)  # depth 0.8 x the 40 mm long axis, over 4 mm slices
    assert outcome.mask.shape == truth.shape and outcome.mask.dtype == bool
