"""Prompt simulation and strategies: determinism, geometry of prompts, click signs, box == segment."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.prompting import (correction_click, interior_point, jitter_box, parse_strategies, parse_strategy,
                               sample_points, tight_box)
from medisam.prompts import Box


def _blob(h=64, w=80):
    m = np.zeros((h, w), bool)
    m[10:40, 20:60] = True
    m[40:50, 20:30] = True
    return m


def test_parse_names_round_trip():
    names = ["box", "box-jitter10", "point", "points5", "points5neg5", "clicks10", "box-clicks3", "everything",
             "everything8", "box3d", "keyslice", "recist"]
    assert [s.name for s in parse_strategies(",".join(names))] == names
    assert parse_strategy("BOX-JITTER2.5").jitter == pytest.approx(0.025)
    assert parse_strategy("clicks4").interactive
    with pytest.raises(PromptError, match="unknown prompt strategy"):
        parse_strategy("lasso")


@pytest.mark.parametrize("name", ["box-jitter20", "points5", "points3neg4"])
def test_simulation_is_deterministic_for_a_seed(name):
    s = parse_strategy(name)
    mask = _blob()
    a = s.simulate(mask, np.random.default_rng(7)).describe()
    b = s.simulate(mask, np.random.default_rng(7)).describe()
    c = s.simulate(mask, np.random.default_rng(8)).describe()
    assert a == b
    assert a != c


def test_centre_point_is_inside_even_for_a_ring():
    yy, xx = np.mgrid[:101, :101]
    r = np.hypot(yy - 50, xx - 50)
    ring = (r > 20) & (r < 35)
    x, y = interior_point(ring)
    assert ring[y, x]
    # the disc's centre is the farthest pixel from its boundary
    x, y = interior_point(r < 30)
    assert (x, y) == (50, 50)


def test_tight_box_and_jitter_bounds():
    mask = _blob()
    box = tight_box(mask)
    assert (box.x0, box.y0, box.x1, box.y1) == (20, 10, 60, 50)
    rng = np.random.default_rng(0)
    for _ in range(200):
        j = jitter_box(box, 0.1, rng, 64, 80)
        assert abs(j.x0 - box.x0) <= 0.1 * 40 + 1e-6 and abs(j.x1 - box.x1) <= 0.1 * 40 + 1e-6
        assert abs(j.y0 - box.y0) <= 0.1 * 40 + 1e-6 and abs(j.y1 - box.y1) <= 0.1 * 40 + 1e-6
        assert 0 <= j.x0 < j.x1 <= 80 and 0 <= j.y0 < j.y1 <= 64
    edge = Box(0, 0, 80, 64)  # a box at the image border stays inside the image
    for _ in range(50):
        j = jitter_box(edge, 0.5, rng, 64, 80)
        assert 0 <= j.x0 < j.x1 <= 80 and 0 <= j.y0 < j.y1 <= 64
    assert jitter_box(box, 0.0, rng, 64, 80) == box


def test_points_positive_inside_negative_outside():
    mask = _blob()
    pts = sample_points(mask, 5, 5, np.random.default_rng(3))
    pos = pts.coords[pts.labels == 1].astype(int)
    neg = pts.coords[pts.labels == 0].astype(int)
    assert len(pos) == 5 and len(neg) == 5
    assert mask[pos[:, 1], pos[:, 0]].all()
    assert not mask[neg[:, 1], neg[:, 0]].any()


def test_correction_click_sign_and_place():
    truth = np.zeros((50, 50), bool)
    truth[10:30, 10:30] = True
    pred = truth.copy()
    pred[10:30, 20:30] = False          # a 20x10 miss
    x, y, label = correction_click(pred, truth)
    assert label == 1 and truth[y, x] and not pred[y, x]
    pred = truth.copy()
    pred[35:48, 35:48] = True          # a 13x13 false positive, larger than any miss
    x, y, label = correction_click(pred, truth)
    assert label == 0 and pred[y, x] and not truth[y, x]
    assert (x, y) == (41, 41)
    assert correction_click(truth, truth) is None


def test_box_strategy_equals_segment_image(tiny_model):
    """The benchmark's box masks are exactly what `medisam segment --box` writes."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import disk_image

    from medisam.io import MedicalImage
    from medisam.predict import Predictor
    from medisam.predict.segment import segment_image

    rgb, mask = disk_image(96, 25, (40, 50))
    image = MedicalImage.from_array(rgb)
    pred = Predictor(tiny_model).set_image(image)
    outcome = parse_strategy("box").run(pred, mask, np.random.default_rng(0))[0]
    box = tight_box(mask)
    labels = segment_image(Predictor(tiny_model), image, [box])
    np.testing.assert_array_equal(outcome.mask, labels.array == 1)
    assert outcome.prompt["box"] == [box.x0, box.y0, box.x1, box.y1]


def test_clicks_and_everything_run_on_a_model(tiny_model):
    from medisam.predict import Predictor
    from medisam.prompting import EverythingStrategy

    rng_img = np.random.default_rng(0)
    img = (rng_img.random((64, 64, 3)) * 255).astype(np.uint8)
    mask = _blob(64, 64)
    pred = Predictor(tiny_model).set_image(img)
    outs = parse_strategy("clicks4").run(pred, mask, np.random.default_rng(0))
    assert [o.click for o in outs] == [1, 2, 3, 4]
    assert all(o.mask.shape == mask.shape for o in outs)
    box_first = parse_strategy("box-clicks2").run(pred, mask, np.random.default_rng(0))
    assert [o.click for o in box_first] == [0, 1, 2]
    every = EverythingStrategy(4, pred_iou_thresh=-1e9, stability_score_thresh=-1e9, box_nms_thresh=1.0)
    out = every.run(pred, mask, np.random.default_rng(0))[0]
    assert out.prompt["candidates"] > 0
    assert out.mask.shape == mask.shape
    single = EverythingStrategy(4, multimask=False, pred_iou_thresh=-1e9, stability_score_thresh=-1e9,
                                box_nms_thresh=1.0)
    n_single = single.run(pred, mask, np.random.default_rng(0))[0].prompt["candidates"]
    assert 0 < n_single <= 16  # at most one mask per grid point (4 x 4)


def test_everything_thresholds_from_the_name():
    s = parse_strategy("everything8-iou0.5-stab0.8")
    assert (s.config.points_per_side, s.config.pred_iou_thresh, s.config.stability_score_thresh) == (8, 0.5, 0.8)
    assert s.name == "everything8-iou0.5-stab0.8"
    assert parse_strategy("everything-stab.7").config.stability_score_thresh == 0.7
    single = parse_strategy("everything4-single-iou0.3")
    assert (single.config.multimask, single.name) == (False, "everything4-single-iou0.3")
    assert parse_strategy("everything").config.thresholds("points") == (0.88, 0.95)  # SAM's defaults kept
    with pytest.raises(PromptError):
        parse_strategy("everything-iou")
