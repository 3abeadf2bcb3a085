"""Predictor's public per-image state: the transform callers used to reach through ``_require_image``."""

from __future__ import annotations

import pytest

from medisam.errors import InputError
from medisam.predict import Predictor
from tests.conftest import disk_image


def test_transform_is_public_and_needs_an_image(tiny_model):
    pred = Predictor(tiny_model)
    with pytest.raises(InputError, match="no image set"):
        pred.transform
    image, _ = disk_image(96)
    pred.set_image(image)
    assert pred.transform is pred._require_image().transform
    assert pred.transform.original_hw == (96, 96)
