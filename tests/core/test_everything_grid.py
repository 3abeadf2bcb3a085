"""Everything mode's grid of prompts: boxes for box-trained models (LiteMedSAM), points otherwise,
each with its own filters, so the default finds masks with the bundled model."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.predict import Predictor
from medisam.prompting.automatic import AutoMaskConfig, generate_masks, grid_boxes
from medisam.prompting.strategies import parse_strategy
from tests.conftest import disk_image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_the_grid_follows_what_the_model_was_trained_with():
    from medisam.models.registry import get_spec

    auto = AutoMaskConfig()
    assert auto.grid_for(get_spec("litemedsam")) == "boxes" == auto.grid_for(get_spec("medsam-vit-b"))
    assert auto.grid_for(get_spec("sam-vit-b")) == "points"
    assert AutoMaskConfig(grid="points").grid_for(get_spec("litemedsam")) == "points"
    assert auto.thresholds("points") == (0.88, 0.95) and auto.thresholds("boxes") == (0.8, 0.7)
    assert AutoMaskConfig(pred_iou_thresh=0.5).thresholds("boxes") == (0.5, 0.7)


def test_box_tiles_shrink_to_two_over_the_density():
    assert AutoMaskConfig().scales() == (1.0, 0.5, 0.25, 0.125)
    assert AutoMaskConfig(points_per_side=8).scales() == (1.0, 0.5, 0.25)
    assert AutoMaskConfig(points_per_side=1).scales() == (1.0,)
    assert len(grid_boxes(100, 200, AutoMaskConfig().scales())) == 1 + 9 + 49 + 225
    boxes = grid_boxes(100, 200, (0.5,))
    assert boxes.min() >= 0 and boxes[:, 2].max() == 200 and boxes[:, 3].max() == 100


@pytest.mark.parametrize("bad, message", [
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(grid="hexagons"), "grid"),
    (dict(points_per_side=0), "points per side"),
    (dict(points_per_side=257), "needs 1..256 points per side"),  # 100000: numpy's MemoryError (74.5 GiB)
    (dict(pred_iou_thresh=float("nan")), "finite"),
    (dict(box_scales=(1.0, 0.0)), "box_scales"),
    (dict(min_mask_area=-1), "min_mask_area"),
    (dict(pred_iou_thresh=2.0), "keeps no mask"),
    (dict(stability_score_thresh=1.0), "keeps no mask"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(PromptError, match=message):
        AutoMaskConfig(**bad)


def test_strategy_names_say_the_grid_and_the_filters():
    assert parse_strategy("everything").name == "everything"
    boxes = parse_strategy("everything8-boxes-iou0.6")
    assert (boxes.name, boxes.config.grid, boxes.config.pred_iou_thresh) == ("everything8-boxes-iou0.6", "boxes", 0.6)
    points = parse_strategy("everything-single-points-stab0.8")
    assert (points.config.grid, points.config.multimask, points.config.stability_score_thresh) == ("points", False, 0.8)
    assert points.name == "everything-single-points-stab0.8"


def test_box_grid_on_a_tiny_model_decodes_every_tile(tiny_model):
    image, _ = disk_image(96)
    pred = Predictor(tiny_model).set_image(image)
    loose = dict(points_per_side=4, pred_iou_thresh=-1e9, stability_score_thresh=-1e9, box_nms_thresh=1.0)
    found = generate_masks(pred, AutoMaskConfig(grid="boxes", **loose))
    assert found.grid == "boxes" and 0 < len(found) <= 1 + 9
    assert found.shape == (96, 96) and found.mask(0).shape == (96, 96)


def test_the_bundled_model_finds_the_polyp_by_default(real_model, data_dir):
    """LiteMedSAM's point grid keeps nothing (its point masks score IoU < 0.25 or stability 0);
    the default box grid finds the polyp."""
    from medisam.bench.datasets import discover_cases

    case = discover_cases(data_dir / "kvasir_seg")[0].load()
    truth = case.targets[0].mask
    pred = Predictor(real_model).set_image(case.image)
    points = generate_masks(pred, AutoMaskConfig(points_per_side=8, grid="points"))
    default = generate_masks(pred, AutoMaskConfig(points_per_side=8))
    assert len(points) == 0
    assert default.grid == "boxes" and len(default) >= 3
    assert max(dice(default.mask(i), truth) for i in range(len(default))) > 0.7
