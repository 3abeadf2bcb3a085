import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.prompts import Box, Box3D, MaskPrompt, Points


def test_box_validation_messages():
    Box(0, 0, 10, 10).check_inside(10, 10)
    with pytest.raises(PromptError, match="inverted"):
        Box(5, 0, 1, 10)
    with pytest.raises(PromptError, match="empty"):
        Box(5, 0, 5, 10)
    with pytest.raises(PromptError, match="finite"):
        Box(0, 0, float("nan"), 10)
    with pytest.raises(PromptError, match="outside"):
        Box(0, 0, 11, 10).check_inside(10, 10)
    with pytest.raises(PromptError, match="4 numbers"):
        Box.of([1, 2, 3])


def test_box_from_mask_is_tight_in_pixel_edges():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:15] = True
    assert Box.from_mask(mask).as_array().tolist() == [10, 5, 15, 9]
    assert Box.from_mask(mask, margin=100).as_array().tolist() == [0, 0, 30, 20]
    assert Box.from_mask(np.zeros((4, 4), bool)) is None


def test_points_labels_and_bounds():
    p = Points.of([(1, 2), (3, 4, 0)])
    assert p.labels.tolist() == [1, 0]
    with pytest.raises(PromptError, match="0 \\(negative\\) or 1"):
        Points(np.array([[1, 2]]), np.array([2]))
    with pytest.raises(PromptError, match="outside"):
        p.check_inside(4, 3)
    with pytest.raises(PromptError):
        Points.of([])


def test_mask_prompt_and_box3d():
    assert MaskPrompt(np.zeros((1, 8, 8))).logits.shape == (8, 8)
    with pytest.raises(PromptError):
        MaskPrompt(np.zeros((8, 4)))
    b = Box3D(1, 2, 3, 4, 5, 6)
    assert b.box2d().as_array().tolist() == [1, 2, 5, 6]
    with pytest.raises(PromptError, match="outside"):
        b.check_inside((6, 10, 10))
    with pytest.raises(PromptError, match=r"^3D box \(1,2,3,0,5,6\) is inverted: need x0 <= x1"):  # as a 2D box's
        Box3D(1, 2, 3, 0, 5, 6)
