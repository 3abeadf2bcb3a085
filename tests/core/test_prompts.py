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


@pytest.mark.parametrize("label", [0.5, 0.9999999, float("nan"), float("inf"), 1e308, 2, -1, "1"])
def test_a_point_label_other_than_0_or_1_is_one_prompt_error(label):
    """``int()`` made 0.5 a negative click and NaN or 1e308 a ValueError/OverflowError traceback (server: a 500)."""
    with pytest.raises(PromptError, match="point labels must be 0 .negative. or 1 .positive."):
        Points.of([(10.0, 12.0, label)])


def test_labels_0_and_1_in_any_number_type_are_kept():
    assert Points.of([(1, 2, 1.0), (3, 4, 0), (5, 6, True), (7, 8, np.int64(0))]).labels.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("text", ["1e-300,0", "5e-324,0", "1e308,1e308", "400,1e308"])
def test_a_window_the_float32_display_cannot_compute_is_refused_everywhere(text):
    """A width float32 rounds to 0 made every pixel NaN and a level of 1e308 inf: a NaN score, an empty mask."""
    from medisam.errors import InputError
    from medisam.io.intensity import resolve_window
    from medisam.io.window import parse_window

    with pytest.raises(InputError, match="outside what the display can compute"):
        parse_window(text, "--window")
    with pytest.raises(InputError, match="outside what the display can compute"):
        resolve_window(tuple(float(v) for v in text.split(",")))


def test_labels_json_nested_past_the_recursion_limit_is_one_input_error():
    from medisam.errors import InputError
    from medisam.io.segment_meaning import parse_labels

    with pytest.raises(InputError, match="--labels: the JSON is nested too deeply"):
        parse_labels("[" * 100_000, "--labels")


def test_array_data_that_is_not_zlib_is_a_value_error():
    import base64

    from medisam.client import decode_array

    with pytest.raises(ValueError, match="not zlib-compressed"):
        decode_array({"dtype": "uint8", "shape": [2, 2], "data": base64.b64encode(b"not zlib").decode()})
