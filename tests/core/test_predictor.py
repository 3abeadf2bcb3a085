import numpy as np
import pytest

from medisam.errors import InputError, PromptError
from medisam.io.medical_image import MedicalImage
from medisam.metrics_basic import dice
from medisam.predict import EmbeddingCache, Predictor
from tests.conftest import disk_image


def test_predict_shapes_and_cache_reuse(tiny_model):
    image, _ = disk_image(96)
    pred = Predictor(tiny_model)
    pred.set_image(image)
    r = pred.predict(box=(20, 20, 80, 80))
    assert r.masks.shape == (1, 96, 96) and r.masks.dtype == bool
    assert r.scores.shape == (1,) and r.low_res_logits.shape == (1, 256, 256)
    multi = pred.predict(box=(20, 20, 80, 80), multimask=True)
    assert multi.masks.shape == (3, 96, 96)
    both = pred.predict(box=(20, 20, 80, 80), multimask="all")  # one pass: single output, then the 3
    np.testing.assert_array_equal(both.low_res_logits, np.concatenate([r.low_res_logits, multi.low_res_logits]))
    np.testing.assert_array_equal(both.scores, np.concatenate([r.scores, multi.scores]))
    with pytest.raises(PromptError, match="multimask"):
        pred.predict(box=(20, 20, 80, 80), multimask="some")
    refined = pred.predict(points=[(50, 50, 1), (5, 5, 0)], mask=r.low_res_logits[0])
    assert refined.masks.shape == (1, 96, 96)
    pred.set_image(image.copy())
    assert pred.cache.hits == 1 and len(pred.cache) == 1
    batch = pred.predict_batch([(0, 0, 40, 40), (30, 30, 90, 90)])
    assert batch.masks.shape == (2, 96, 96)
    single = pred.predict(box=(30, 30, 90, 90))
    assert np.array_equal(batch.masks[1], single.masks[0])


def test_cache_is_bounded(tiny_model):
    cache = EmbeddingCache(max_bytes=2 * 256 * 64 * 64 * 4)
    pred = Predictor(tiny_model, cache=cache)
    for i in range(4):
        pred.set_image(np.full((32, 32), i * 10 + 1, np.uint8))
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes


def test_bad_inputs(tiny_model):
    pred = Predictor(tiny_model, max_pixels=10_000)
    with pytest.raises(InputError, match="no image set"):
        pred.predict(box=(0, 0, 1, 1))
    with pytest.raises(InputError, match="NaN"):
        pred.set_image(np.full((8, 8), np.nan, np.float32))
    with pytest.raises(InputError, match="empty"):
        pred.set_image(np.zeros((0, 8), np.float32))
    with pytest.raises(InputError, match="exceeds the limit"):
        pred.set_image(np.zeros((200, 200), np.uint8))
    with pytest.raises(InputError, match="shape"):
        pred.set_image(np.zeros((8, 8, 5), np.uint8))
    pred.set_image(np.zeros((40, 50), np.uint8))
    with pytest.raises(PromptError, match="outside"):
        pred.predict(box=(0, 0, 60, 10))
    with pytest.raises(PromptError, match="at least one prompt"):
        pred.predict()
    with pytest.raises(PromptError, match="low-res"):
        pred.predict(box=(0, 0, 5, 5), mask=np.zeros((64, 64)))
    volume = MedicalImage.from_array(np.zeros((3, 20, 20), np.int16), modality="CT")
    with pytest.raises(InputError, match="needs slice="):
        pred.set_image(volume)
    with pytest.raises(InputError, match="out of range"):
        pred.set_image(volume, slice=3)


def test_sam_family_predictor_runs(tiny_sam):
    image, _ = disk_image(64)
    r = Predictor(tiny_sam).set_image(image).predict(box=(10, 10, 50, 50), points=[(30, 30)])
    assert r.masks.shape == (1, 64, 64) and np.isfinite(r.scores).all()


@pytest.mark.real_weights
def test_real_weights_segment_a_synthetic_disk(real_model):
    image, mask = disk_image(128, radius=30)
    r = Predictor(real_model).set_image(image).predict(box=(30, 30, 99, 99))
    assert dice(r.masks[0], mask) > 0.9
