"""Everything mode's crop layers: the grid re-run on zoomed crops (small objects such as nuclei),
crop masks placed back on the full image, masks cut by an inner crop edge dropped, bad values refused."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.predict import Predictor
from medisam.prompting import automatic
from medisam.prompting.automatic import AutoMaskConfig, AutoMasks, generate_masks, label_map
from medisam.prompting.crops import CropMasks, crop_boxes, encodings, place
from medisam.prompting.strategies import parse_strategy
from tests.cli.cli_helpers import SAMPLE, TINY, run_cli


def test_crops_tile_the_image_layer_by_layer_with_overlap():
    h, w = 90, 150
    boxes = crop_boxes(h, w, 2, 512 / 1500)
    assert len(boxes) == 1 + 4 + 16 == encodings(2) and encodings(0) == 1 and encodings(3) == 85
    assert boxes[0] == (0, 0, w, h)
    for layer in (boxes[1:5], boxes[5:]):
        covered = np.zeros((h, w), int)
        for x0, y0, x1, y1 in layer:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            covered[y0:y1, x0:x1] += 1
        assert covered.min() >= 1 and covered.max() >= 2  # every pixel in a crop; neighbours overlap
    first, second = boxes[1:5], boxes[5:]
    assert max(x1 - x0 for x0, _, x1, _ in second) < min(x1 - x0 for x0, _, x1, _ in first) < w


def test_a_crop_mask_lands_at_its_crop_on_the_full_image():
    crop_mask = np.zeros((1, 20, 30), bool)
    crop_mask[0, 5:8, 10:14] = True  # rows 5-7, columns 10-13 of the crop
    found = AutoMasks.from_dense(crop_mask, np.array([0.9], np.float32), np.array([0.8], np.float32),
                                 np.array([[10.0, 6.0]], np.float32), "boxes")
    merged = place([CropMasks(found, (50, 40, 80, 60))], 70, 100, 0.7, "boxes")
    assert len(merged) == 1 and merged.shape == (70, 100) and merged.mask(0).shape == (70, 100)
    np.testing.assert_allclose(merged.points[0], [60.0, 46.0])  # the prompt moved with the mask
    ys, xs = np.nonzero(merged.mask(0))
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (45, 47, 60, 63)


def test_duplicates_keep_the_smaller_crops_mask():
    """The same object from the whole image and from a crop: the crop (higher zoom) wins the NMS."""
    whole = np.zeros((1, 70, 100), bool)
    whole[0, 45:48, 60:64] = True
    zoomed = whole[:, 40:60, 50:80].copy()
    zoomed[0, 5, 9] = True  # one pixel more: tells the two apart
    one = np.ones(1, np.float32)
    no_point = np.zeros((1, 2), np.float32)
    merged = place([CropMasks(AutoMasks.from_dense(whole, one, one, no_point), (0, 0, 100, 70)),
                    CropMasks(AutoMasks.from_dense(zoomed, one * 0.5, one, no_point), (50, 40, 80, 60))],
                   70, 100, 0.7, "boxes")
    assert len(merged) == 1 and merged.mask(0)[45, 59] and merged.scores[0] == 0.5


def _square_image(h: int = 90, w: int = 150, box: tuple[int, int, int, int] = (97, 21, 109, 31)):
    """A dark image with one bright rectangle (x0, y0, x1, y1 exclusive) and its mask."""
    image = np.full((h, w, 3), 20, np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 230
    truth = np.zeros((h, w), bool)
    truth[y0:y1, x0:x1] = True
    return image, truth


def _bright_parts(predictor: Predictor, config: AutoMaskConfig) -> AutoMasks:
    """A stand-in grid: on any image or crop, one mask of its bright pixels (centre as the prompt)."""
    mask = predictor.display_image[..., 0] > 128
    if not mask.any():
        h, w = mask.shape
        return AutoMasks.empty((h, w), "boxes")
    ys, xs = np.nonzero(mask)
    centre = np.array([[xs.mean(), ys.mean()]], np.float32)
    return AutoMasks.from_dense(mask[None], np.array([0.9], np.float32), np.array([0.9], np.float32), centre, "boxes")


def test_crops_find_the_object_once_in_place(tiny_model, monkeypatch):
    """Every crop holding the whole rectangle finds it where it is; crops cutting it are dropped
    (their part touches an inner crop edge); the duplicates merge into one mask."""
    image, truth = _square_image()
    real = automatic.generate_masks
    seen = []

    def fake(predictor, config=AutoMaskConfig()):
        if config.crop_layers:
            return real(predictor, config)
        seen.append(predictor.image_size)
        return _bright_parts(predictor, config)

    monkeypatch.setattr(automatic, "generate_masks", fake)
    pred = Predictor(tiny_model).set_image(image)
    found = automatic.generate_masks(pred, AutoMaskConfig(points_per_side=4, crop_layers=2))
    assert len(seen) == encodings(2) and seen[0] == (90, 150) and max(seen[1:]) < (90, 150)
    assert len(found) == 1 and found.shape == (90, 150)
    assert np.array_equal(found.mask(0), truth)
    np.testing.assert_allclose(found.points[0], [102.5, 25.5])


def test_tiny_model_with_crop_layers_gives_full_image_masks(tiny_model):
    image, _ = _square_image()
    pred = Predictor(tiny_model).set_image(image)
    loose = dict(points_per_side=4, grid="boxes", pred_iou_thresh=-1e9, stability_score_thresh=-1e9)
    found = generate_masks(pred, AutoMaskConfig(crop_layers=1, **loose))
    plain = generate_masks(pred, AutoMaskConfig(**loose))
    assert found.shape == (90, 150) and len(found) >= len(plain)
    assert pred.image_size == (90, 150)  # the crops did not replace the caller's image


@pytest.mark.parametrize("bad, message", [
    (dict(crop_layers=4), "crop_layers must be an integer from 0 to 3"),
    (dict(crop_layers=-1), "crop_layers"),
    (dict(crop_layers=1.5), "crop_layers"),
    (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
    (dict(crop_overlap_ratio=float("nan")), "crop_overlap_ratio"),
])
def test_bad_crop_settings_are_refused(bad, message):
    with pytest.raises(PromptError, match=message):
        AutoMaskConfig(**bad)


def test_strategy_names_say_the_crop_layers():
    crops = parse_strategy("everything8-crops2")
    assert (crops.name, crops.config.crop_layers) == ("everything8-crops2", 2)
    assert parse_strategy("everything8-boxes-crops1-iou0.6").name == "everything8-boxes-crops1-iou0.6"
    assert parse_strategy("everything8").config.crop_layers == 0
    with pytest.raises(PromptError, match="crop_layers"):
        parse_strategy("everything8-crops9")


def test_label_map_keeps_small_masks_on_top():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 4:6, 4:6] = True  # small, first
    masks[1] = True  # whole image
    labels = label_map(AutoMasks.from_dense(masks, np.ones(2, np.float32), np.ones(2, np.float32), np.zeros((2, 2))))
    assert labels[5, 5] == 1 and labels[0, 0] == 2 and labels.dtype == np.uint8
    none = AutoMasks.empty((10, 10))
    assert not label_map(none).any() and label_map(none).shape == (10, 10)
    n = 65536
    many = AutoMasks(np.zeros((n, 4), np.int64), (np.zeros((0, 0), bool),) * n, (1, 2), np.ones(n), np.ones(n),
                     np.zeros((n, 2)))
    with pytest.raises(PromptError, match="65536 masks, more than a label map holds"):  # uint16 wrapped to 0
        label_map(many)


@pytest.mark.parametrize("args, expected", [
    (["--everything", "--crop-layers", "7"], "crop_layers must be an integer from 0 to 3"),
    (["--crop-layers", "1", "--box", "1,1,20,20"], "--crop-layers and --points-per-side go with --everything"),
    (["--everything", "--box", "1,1,20,20"], "--everything takes no prompt"),
])
def test_segment_refuses_bad_everything_flags_in_one_line(tmp_path, args, expected):
    out = tmp_path / "m.png"
    proc = run_cli(["segment", SAMPLE, "-o", out, *TINY, *args])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr
    assert not out.exists()


def test_cli_grid_default_is_the_everything_mode_default():
    """The CLI cannot import AutoMaskConfig (torch) to read its default, so it keeps its own: they must agree,
    or a plain ``segment --box`` would be refused as if --points-per-side had been given."""
    from medisam.cli.common import POINTS_PER_SIDE

    assert POINTS_PER_SIDE == AutoMaskConfig().points_per_side


def test_segment_everything_writes_a_label_map(tmp_path):
    out = tmp_path / "m.png"
    proc = run_cli(["segment", SAMPLE, "--everything", "--crop-layers", "1", "--points-per-side", "2", "-o", out,
                    *TINY])
    assert proc.returncode == 0, proc.stderr
    assert "5 image encodings" in proc.stderr and out.exists() and "object(s)" in proc.stdout
