"""A points-only prompt to a box-trained model is answered with a box searched around the points."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import PromptError
from medisam.metrics_basic import dice
from medisam.predict import Predictor
from medisam.predict.point_box import (BOX_SEARCH, answer_box, border_share, candidate_boxes, pick_candidate,
                                       stability)
from medisam.prompting.strategies import PointsStrategy, parse_strategy
from medisam.prompts import Points
from tests.conftest import disk_image


def test_candidates_grow_from_the_points_to_the_whole_image():
    boxes = candidate_boxes(Points(np.array([[40.0, 30.0]]), np.array([1])), (100, 200), 2.0)
    half = (40.0 - boxes[:, 0])[:3]
    assert half.tolist() == pytest.approx([6.0, 8.4, 11.76])  # 3 low-res px of 2 px, then 1.4x apart
    assert tuple(boxes[-1]) == (0.0, 0.0, 200.0, 100.0) and tuple(boxes[-2]) != tuple(boxes[-1])
    assert (boxes[:, 0] <= 40).all() and (boxes[:, 2] >= 41).all() and (boxes[:, 1] <= 30).all()
    two = candidate_boxes(Points(np.array([[40.0, 30.0], [90.0, 35.0], [5.0, 5.0]]), np.array([1, 1, 0])),
                          (100, 200), 2.0)
    assert tuple(two[0]) == (34.0, 24.0, 97.0, 42.0)  # around both positive points; the negative one is ignored


def test_border_share_and_stability():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:10] = True
    assert border_share(mask, np.array([2.0, 2.0, 15.0, 15.0])) == 0.0  # enclosed
    assert border_share(mask, np.array([5.0, 5.0, 10.0, 10.0])) == 1.0  # the box is the mask's own
    assert 0 < border_share(mask, np.array([7.0, 2.0, 15.0, 15.0])) < 0.2  # cuts it on one side
    logits = np.where(mask, 3.0, -3.0)
    logits[5, 5] = 0.5
    assert stability(logits) == pytest.approx(24 / 25) and stability(np.full((4, 4), -5.0)) == 0.0


def test_a_whole_image_box_is_read_on_the_image_not_on_the_padding():
    from medisam.models.transform import InputTransform
    from medisam.predict.point_box import low_res_boxes

    t = InputTransform.for_image(531, 570, 256, "longest")  # 256 x 238 of the 256 x 256 grid is image
    low = low_res_boxes(t, np.array([[0.0, 0.0, 570.0, 531.0], [10.0, 20.0, 100.0, 200.0]]), 1.0)
    assert low[0].tolist() == pytest.approx([0.0, 0.0, 256.0, 238.0])
    assert low[1].tolist() == pytest.approx(t.coords_to_model(np.array([10.0, 20.0, 100.0, 200.0])).tolist())
    grid = np.zeros((256, 256), dtype=bool)
    grid[100:238, :] = True  # an object running off the image's bottom edge
    assert border_share(grid, low[0]) > 0.3  # not enclosed: its last row is the image's


def _square(lo: int, hi: int, size: int = 32) -> np.ndarray:
    out = np.full((size, size), -4.0, dtype=np.float32)
    out[lo:hi, lo:hi] = 4.0
    return out


def test_the_enclosed_candidate_holding_the_point_wins():
    # 0: a small box cutting the object (its mask fills it); 1: enclosing the object; 2: a mask elsewhere
    logits = np.stack([_square(12, 20), _square(8, 24), _square(0, 4)])
    boxes = np.array([[12, 12, 20, 20], [4, 4, 28, 28], [0, 0, 32, 32]], dtype=float)
    point = np.array([[15.0, 15.0]])
    none = np.zeros((0, 2))
    assert pick_candidate(logits, np.array([0.99, 0.8, 0.99]), boxes, point, none) == 1
    # a negative point inside the object rules out every mask holding it
    assert pick_candidate(logits, np.array([0.99, 0.8, 0.1]), boxes, point, np.array([[10.0, 10.0]])) == 0
    # nothing enclosed: the best of those holding the point; nothing holds it: the enclosed one of all
    assert pick_candidate(logits[:1], np.array([0.5]), boxes[:1], point, none) == 0
    assert pick_candidate(logits, np.array([0.2, 0.3, 0.9]), boxes, np.array([[30.0, 2.0]]), none) == 1


def test_a_point_no_candidate_holds_leaves_those_holding_the_others():
    """A scribble crossing the object's edge: its last point lies where no mask is. The candidates
    holding the other points decide (the enclosed one wins), not every candidate, whose best was
    a mask as large as its box (it flooded a small MR slice)."""
    logits = np.stack([_square(12, 20), _square(8, 24), _square(0, 29)])
    boxes = np.array([[12, 12, 20, 20], [4, 4, 28, 28], [0, 0, 29, 29]], dtype=float)
    points = np.array([[15.0, 15.0], [15.0, 30.5]])  # (y, x): inside the object; beyond every mask
    assert pick_candidate(logits, np.array([0.5, 0.5, 0.99]), boxes, points, np.zeros((0, 2))) == 1


def test_answer_box_is_the_mask_box_grown_and_clipped():
    mask = np.zeros((50, 60), dtype=bool)
    mask[10:30, 0:20] = True
    assert answer_box(mask) == pytest.approx((0.0, 7.0, 23.0, 33.0))  # 5 % + 2 px, clipped at x = 0
    assert answer_box(np.zeros((5, 5), dtype=bool)) is None
    assert BOX_SEARCH.border == 0.05


@pytest.mark.parametrize("name", ["tiny_model", "tiny_sam"])
def test_predictor_answers_points_with_the_box_it_found(name, request):
    model = request.getfixturevalue(name)
    image, _ = disk_image(96, radius=20, center=(48, 48))
    pred = Predictor(model).set_image(image)
    assert not model.spec.box_from_points
    raw = pred.predict(points=[(48, 48, 1)])
    assert raw.box is None  # a model trained with points answers them itself
    found = pred.predict(points=[(48, 48, 1)], box_search=True)
    assert found.box is not None and found.masks.shape == (1, 96, 96)
    x0, y0, x1, y1 = found.box
    assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
    again = pred.predict(box=found.box)
    assert np.array_equal(found.masks, again.masks) and found.scores == pytest.approx(again.scores)
    with pytest.raises(PromptError, match="positive point"):
        pred.predict(points=[(48, 48, 0)], box_search=True)
    with pytest.raises(PromptError):
        pred.predict(points=[(480, 48, 1)], box_search=True)  # outside the image: refused as any point


def test_the_box_trained_models_search_and_the_others_do_not():
    import medisam.models.registry  # noqa: F401 - registers the models
    from medisam.models.catalog import get_spec

    assert get_spec("litemedsam").box_from_points and get_spec("medsam-vit-b").box_from_points
    assert not get_spec("sam-vit-b").box_from_points


def test_the_strategies_keep_the_published_point_prompt_and_name_the_search():
    assert isinstance(parse_strategy("point"), PointsStrategy) and not parse_strategy("point").box_search
    assert parse_strategy("point-box").box_search and parse_strategy("point-box").name == "point-box"
    assert parse_strategy("points3neg1-box").name == "points3neg1-box"
    assert parse_strategy("points5").box_search is False


def test_a_click_on_a_real_disk_and_a_real_polyp(real_model, data_dir):
    """The bundled LiteMedSAM: its own point prompt misses, the box search finds the object."""
    image, truth = disk_image(128, radius=30)
    pred = Predictor(real_model).set_image(image)
    found = pred.predict(points=[(64, 64, 1)])
    assert found.box is not None and dice(found.masks[0], truth) > 0.9
    from medisam.bench.datasets import discover_cases
    from medisam.prompting.sampling import interior_point

    case = discover_cases(data_dir / "kvasir_seg")[1].load()
    truth = case.targets[0].mask
    pred.set_image(case.image)
    x, y = interior_point(truth)
    own = pred.predict(points=[(x, y, 1)], multimask=True, box_search=False)
    found = pred.predict(points=[(x, y, 1)])
    assert max(dice(m, truth) for m in own.masks) < 0.3 < 0.9 < dice(found.masks[0], truth)


@pytest.mark.parametrize("search", [True, False])
def test_a_click_seeds_a_volume_as_the_box_it_found(tiny_model, search):
    """A volume's seed of points alone: the box found is kept with the seed and its runs take it as a
    drawn box (the chain clipped to it, the stop rules' box); without the search the seed has no box."""
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession
    from medisam.predict.axis_runs import run_clip, seed_box

    zz, yy, xx = np.mgrid[:9, :48, :48]
    vol = np.where((zz - 4) ** 2 * 4 + (yy - 24) ** 2 + (xx - 24) ** 2 < 15 ** 2, 200.0, 20.0).astype(np.float32)
    image = MedicalImage.from_array(vol, spacing=(1.0, 1.0, 2.0))
    session = VolumeSession(tiny_model, image)
    session.predictor.box_search = search
    seed = session.add_points(4, [(24, 24, 1)])
    found = session.found_box(4)
    clip = run_clip(session, session.store.objects[1], 4, None, False)
    assert (found is not None) is search and (clip is not None) is search
    assert seed_box(session, 1, 4) == found
    if search:
        assert found.x0 <= 24 <= found.x1 and found.y0 <= 24 <= found.y1
        ref = Predictor(tiny_model).set_display_image(session.plane_display(4))
        assert np.array_equal(seed.mask, ref.predict(box=found).masks[0])  # the seed is the found box's mask
    labels = session.propagate(progress=False).array
    assert labels.shape == vol.shape and labels.any()
    if search:  # a click and the box it found give the same 3D result
        drawn = VolumeSession(tiny_model, image)
        drawn.add_box(4, found)
        assert np.array_equal(drawn.propagate(progress=False).array, labels)
    session.add_box(4, (10, 10, 38, 38))  # a drawn box replaces the points' box
    assert session.found_box(4) is None and seed_box(session, 1, 4).as_array().tolist() == [10, 10, 38, 38]
