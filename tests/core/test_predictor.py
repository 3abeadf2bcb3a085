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


def _spy_decode_batches(model, monkeypatch) -> list[int]:
    """Record the number of prompts (boxes, else point sets) of each decoder call of ``model``."""
    sizes: list[int] = []
    decode = model.decode

    def spy(embedding, **kw):
        prompts = kw["boxes"] if kw.get("boxes") is not None else kw["points"][0]
        sizes.append(len(prompts))
        return decode(embedding, **kw)

    monkeypatch.setattr(model, "decode", spy)
    return sizes


def test_many_boxes_are_decoded_a_bounded_number_per_call(tiny_model, monkeypatch):
    """Time and memory grow with the boxes in steps of ``boxes_per_call``: 10 boxes are 10 calls of one
    box on a CPU (3 calls of at most 4 with the limit at 4), and give the rows one batch gives."""
    import torch

    from medisam.models import promptable

    image, _ = disk_image(96)
    pred = Predictor(tiny_model).set_image(image)
    boxes = [(i, i, 40 + 5 * i, 40 + 5 * i) for i in range(10)]
    one_batch = tiny_model.decode(pred.get_image_embedding(), multimask=False,
                                  boxes=torch.from_numpy(pred._box_to_model(np.asarray(boxes, float), pred.transform)))
    sizes = _spy_decode_batches(tiny_model, monkeypatch)
    rows = pred.predict_batch(boxes)
    assert sizes == [1] * 10
    np.testing.assert_allclose(rows.low_res_logits, one_batch.low_res_logits[:, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(rows.scores, one_batch.iou[:, 0].numpy(), atol=1e-5)
    monkeypatch.setattr(promptable, "CPU_BOXES_PER_CALL", 4)
    sizes.clear()
    logits, scores = pred.box_logits(boxes)
    assert sizes == [4, 4, 2] and logits.shape == (10, 256, 256)
    np.testing.assert_allclose(scores, rows.scores, atol=1e-5)
    assert promptable.boxes_per_call(torch.device("cuda")) == promptable.GPU_BOXES_PER_CALL


@pytest.mark.real_weights
def test_real_weights_many_boxes_give_each_box_its_own_mask(real_model):
    """On the default CPU backend a row of ``predict_batch`` is the mask ``predict`` gives its box alone."""
    image, _ = disk_image(128, radius=30)
    pred = Predictor(real_model).set_image(image)
    boxes = [(30, 30, 99, 99), (0, 0, 60, 60), (50, 40, 128, 128)]
    rows = pred.predict_batch(boxes)
    for i, box in enumerate(boxes):
        alone = pred.predict(box=box)
        assert np.array_equal(rows.masks[i], alone.masks[0])
        assert abs(float(rows.scores[i]) - float(alone.scores[0])) < 1e-5


def test_everything_mode_decodes_a_bounded_number_of_grid_points_per_call(tiny_model, monkeypatch):
    """Everything mode's 36 grid points go 8 per decoder call on a CPU (not SAM's 64 at once), and the
    masks kept are those of one batch of all the points."""
    from medisam.prompting.automatic import AutoMaskConfig, generate_masks

    image, _ = disk_image(96)
    pred = Predictor(tiny_model).set_image(image)
    loose = dict(points_per_side=6, pred_iou_thresh=-1.0, stability_score_thresh=0.0, multimask=False)
    one_batch = generate_masks(pred, AutoMaskConfig(points_per_batch=64, **loose))
    sizes = _spy_decode_batches(tiny_model, monkeypatch)
    bounded = generate_masks(pred, AutoMaskConfig(**loose))
    assert sizes == [8, 8, 8, 8, 4]
    assert len(one_batch) > 0 and np.array_equal(bounded.boxes, one_batch.boxes)
    assert all(np.array_equal(a, b) for a, b in zip(bounded.crops, one_batch.crops))
    np.testing.assert_allclose(bounded.scores, one_batch.scores, atol=1e-5)
