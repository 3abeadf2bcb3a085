"""Propagation decodes its margin boxes in one batch and upsamples only the winner (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.predict import Predictor, PropagationConfig, VolumeSession
from medisam.predict.predictor import Prediction
from medisam.prompts import Box
from tests.conftest import disk_image


def _loop_best(pred: Predictor, boxes) -> tuple[int, Prediction]:  # noqa: ANN001
    """What propagation did before: one ``predict`` per box, the first best score kept."""
    preds = [pred.predict(box=box) for box in boxes]
    scores = [float(p.scores[0]) for p in preds]
    index = scores.index(max(scores))
    return index, preds[index]


@pytest.mark.parametrize("boxes", [
    [(20, 15, 80, 75), (10, 5, 90, 90), (30, 30, 60, 60)],
    [(0, 0, 40, 40), (50, 50, 96, 96)],
    [(20, 15, 80, 75), (20, 15, 80, 75), (20, 15, 80, 75)],  # a tie: the first box wins
])
def test_predict_best_equals_the_loop(tiny_model, boxes):
    image, _ = disk_image(97, radius=25, center=(50, 45))
    pred = Predictor(tiny_model).set_image(image)
    index, best = pred.predict_best(boxes)
    ref_index, ref = _loop_best(pred, boxes)
    assert index == ref_index
    assert best.masks.shape == (1, 97, 97) and best.low_res_logits.shape[0] == 1
    np.testing.assert_allclose(best.scores, ref.scores, atol=1e-5)
    np.testing.assert_allclose(best.low_res_logits, ref.low_res_logits, atol=1e-4)
    assert (best.masks != ref.masks).mean() <= 1e-4
    if len(set(boxes)) == 1:
        assert index == 0


def test_predict_best_needs_a_box(tiny_model):
    from medisam.errors import PromptError

    pred = Predictor(tiny_model).set_image(disk_image(64)[0])
    with pytest.raises(PromptError):
        pred.predict_best([])


def test_propagation_with_batched_margins_equals_the_loop(tiny_model, monkeypatch):
    """A whole propagation (three margins per slice) gives the same masks with the batched
    decoder call as with the per-box loop it replaces."""
    from tests.volume.test_volume_session import ball_volume

    image, _ = ball_volume(shape=(8, 40, 48))
    config = PropagationConfig(min_area_px=0, views=1)

    def run() -> dict[int, np.ndarray]:
        session = VolumeSession(tiny_model, image, config=config)
        session.add_box(4, Box(10, 8, 38, 32))
        session.propagate(progress=False)
        return {z: r.mask for z, r in session.results(1).items()}

    calls = []
    original = Predictor.predict_best

    def counting(self, boxes):  # noqa: ANN001, ANN202
        calls.append(len(boxes))
        return original(self, boxes)

    monkeypatch.setattr(Predictor, "predict_best", counting)
    batched = run()
    assert calls and max(calls) == 3  # the batched path ran, with the three margins
    monkeypatch.setattr(Predictor, "predict_best", _loop_best)
    looped = run()
    assert batched.keys() == looped.keys() and len(batched) > 1
    for z in batched:
        assert (batched[z] != looped[z]).mean() <= 1e-4, z
