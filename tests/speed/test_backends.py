"""Backends behind the PromptableModel API: same masks as torch through the Predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.errors import ModelError
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.models.backends import choose_auto, resolve_threads, write_speed_profile
from medisam.models.promptable import DecoderOutput, PromptableModel
from medisam.models.upscale_window import FILL_LOGIT, exact_logits
from medisam.predict import Predictor, VolumeSession
from tests.conftest import disk_image

pytest.importorskip("onnxruntime")


def _all_prompts(model):
    image, _ = disk_image(128, radius=30)
    pred = Predictor(model).set_image(image)
    with exact_logits():  # its logits go back as a mask prompt below: the model's on the whole grid
        first = pred.predict(box=(30, 30, 100, 100))
    return [first,
            pred.predict(points=[(64, 64, 1), (5, 5, 0)], multimask=True),
            pred.predict(box=(30, 30, 100, 100), points=[(64, 64, 1)]),
            pred.predict(mask=first.low_res_logits[0]),
            pred.predict(box=(30, 30, 100, 100), multimask="all"),
            pred.predict_batch([(30, 30, 100, 100), (0, 0, 60, 60), (50, 40, 127, 127)])]


def _assert_same_masks(results, reference, min_dice=0.999, atol=1e-3):
    for got, ref in zip(results, reference):
        assert got.masks.shape == ref.masks.shape
        for a, b in zip(got.masks, ref.masks):
            if b.any() or a.any():
                assert dice(a, b) >= min_dice
        upscaled = got.low_res_logits != FILL_LOGIT  # the fast backends upscale a box's window only
        assert np.abs(got.low_res_logits - ref.low_res_logits)[upscaled].max() < atol
        assert np.allclose(got.scores, ref.scores, atol=atol)


def test_onnx_backend_is_a_promptable_model(tiny_onnx):
    assert isinstance(tiny_onnx, PromptableModel)
    assert tiny_onnx.backend == "onnx" and tiny_onnx.precision == "fp32"
    assert "|onnx|fp32" in tiny_onnx.cache_signature
    assert tiny_onnx.mask_input_size == 256
    x, _ = tiny_onnx.preprocess(np.zeros((40, 50, 3), np.float32))
    emb = tiny_onnx.encode(x.repeat(2, 1, 1, 1))  # batches run image by image
    assert emb.shape == (2, 256, 64, 64)
    out = tiny_onnx.decode(emb[:1], boxes=torch.tensor([[1.0, 1.0, 30.0, 30.0]]))
    assert isinstance(out, DecoderOutput) and out.low_res_logits.shape == (1, 1, 256, 256)


def test_onnx_predictor_masks_equal_torch(tiny_model, tiny_onnx):
    _assert_same_masks(_all_prompts(tiny_onnx), _all_prompts(tiny_model))


def test_openvino_predictor_masks_equal_torch(tiny_model):
    pytest.importorskip("openvino")
    model = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    assert model.backend == "openvino"
    _assert_same_masks(_all_prompts(model), _all_prompts(tiny_model))


def test_openvino_decoders_compile_without_snippets_even_over_a_cached_blob(tiny_model):
    """The decoders run plain MatMul/Softmax (DECODER_CONFIG), also when the model cache holds
    a blob of the same graph compiled with snippets (OpenVINO's cache key ignores the option)."""
    import collections

    ov = pytest.importorskip("openvino")
    from medisam.models.float_mode import float_mode_kept
    from medisam.models.openvino_backend import DECODER_CONFIG
    from medisam.models.runtime import cache_root

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    fast = next(model.export_dir.glob("decoder.fast.v*.onnx"))
    core = ov.Core()
    core.set_property({"CACHE_DIR": str(cache_root() / "openvino")})
    with float_mode_kept():  # the denormals option would leave FTZ/DAZ set on this test's thread
        with_snippets = core.compile_model(str(fast), "CPU", {**model._config, "SNIPPETS_MODE": "ENABLE"})  # cached

    def layer_types(compiled) -> collections.Counter:  # noqa: ANN001 - an openvino CompiledModel
        return collections.Counter(op.get_rt_info()["layerType"].astype(str)
                                   for op in compiled.get_runtime_model().get_ops())

    assert layer_types(with_snippets)["Subgraph"] > 0  # what the decoders would run with snippets
    fresh = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    assert DECODER_CONFIG == {"SNIPPETS_MODE": "DISABLE"}
    assert layer_types(fresh._fast_decoder.dynamic.compiled)["Subgraph"] == 0
    assert layer_types(fresh._decoder.dynamic.compiled)["Subgraph"] == 0
    assert layer_types(fresh._fast_decoder.dynamic.compiled)["MatMul"] > 0
    _assert_same_masks(_all_prompts(fresh), _all_prompts(tiny_model))


def test_openvino_model_serves_several_threads_at_once(tiny_model):
    """The server runs model calls of several sessions at once: one shared OpenVINO model must not
    fail with 'Infer Request is busy' and must give each thread its own, correct masks."""
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("openvino")
    model = load_model("litemedsam-tiny", device="cpu", backend="openvino")
    images = [disk_image(64, radius=10 + 2 * i, center=(32, 32))[0] for i in range(4)]

    def run(image):  # noqa: ANN001, ANN202
        return [Predictor(model).set_image(image).predict(box=(8, 8, 56, 56)) for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, images))
    for image, got in zip(images, results):
        ref = Predictor(tiny_model).set_image(image).predict(box=(8, 8, 56, 56))
        _assert_same_masks(got[-1:], [ref])


def test_torch_bf16_or_clear_error(tiny_model):
    from medisam.models.precision import cpu_has_bf16

    if not cpu_has_bf16():
        with pytest.raises(ModelError, match="bf16"):
            load_model("litemedsam-tiny", device="cpu", precision="bf16")
        return
    model = load_model("litemedsam-tiny", device="cpu", precision="bf16")
    assert model.cache_signature.endswith("|torch|bf16")
    image, _ = disk_image(64, radius=15, center=(32, 32))
    got = Predictor(model).set_image(image).predict(box=(10, 10, 54, 54))
    ref = Predictor(tiny_model).set_image(image).predict(box=(10, 10, 54, 54))
    # logits move by ~1e-3 in bf16; masks stay nearly the same
    _assert_same_masks([got], [ref], min_dice=0.98, atol=0.05)


def test_onnx_int8_runs_and_is_labelled(tiny_model):
    model = load_model("litemedsam-tiny", device="cpu", backend="onnx", precision="int8")
    assert model.cache_signature.endswith("|onnx|int8")
    assert (model.export_dir / "encoder.int8.onnx").is_file()
    image, _ = disk_image(128)
    result = Predictor(model).set_image(image).predict(box=(30, 30, 100, 100))
    assert result.masks.shape == (1, 128, 128) and np.isfinite(result.low_res_logits).all()


def test_volume_session_runs_on_onnx(tiny_model, tiny_onnx):
    vol = np.zeros((3, 64, 64), np.float32)
    vol[:, 20:44, 20:44] = 100.0
    labels = []
    for model in (tiny_model, tiny_onnx):
        session = VolumeSession(model, vol)
        session.add_box(1, (18, 18, 46, 46))
        labels.append(session.propagate(progress=False).array)
    assert labels[0].shape == labels[1].shape == vol.shape
    assert dice(labels[0] > 0, labels[1] > 0) >= 0.999 or not labels[0].any()


def test_bad_backend_precision_threads_are_model_errors(monkeypatch):
    with pytest.raises(ModelError, match="unknown backend"):
        load_model("litemedsam-tiny", device="cpu", backend="tensorrt")
    with pytest.raises(ModelError, match="unknown precision"):
        load_model("litemedsam-tiny", device="cpu", precision="fp8")
    with pytest.raises(ModelError, match="not available for backend onnx"):
        load_model("litemedsam-tiny", device="cpu", backend="onnx", precision="bf16")
    monkeypatch.setenv("MEDISAM_THREADS", "three")
    with pytest.raises(ModelError, match="MEDISAM_THREADS"):
        resolve_threads()
    monkeypatch.setenv("MEDISAM_THREADS", "1")
    assert resolve_threads() == 1 and resolve_threads(3) == 3


def test_auto_uses_measured_profile_then_default_order(auto_env):
    cpu = torch.device("cpu")
    profile = auto_env / "speed_profile.json"
    default = choose_auto(cpu)
    assert default[1] == "fp32"  # no reduced precision without a measured, accepted guard
    write_speed_profile({"auto": {"backend": "onnx", "precision": "int8"}})
    assert choose_auto(cpu) == ("onnx", "int8")
    write_speed_profile({"auto": {"backend": "onnx", "precision": "bf16"}})  # not runnable: ignored
    assert choose_auto(cpu) == default
    profile.write_text("{broken")
    assert choose_auto(cpu) == default
    profile.unlink()
    model = load_model("litemedsam-tiny", device="cpu", backend="auto")
    assert model.backend == default[0]


def test_models_backends_cli_lists_backends(capsys):
    from medisam.cli import main

    assert main(["models", "--backends"]) == 0
    out = capsys.readouterr().out
    assert "onnx" in out and "auto =" in out and "litemedsam" in out


@pytest.mark.real_weights
def test_real_weights_onnx_matches_torch(real_torch_model):
    """Real LiteMedSAM weights: ONNX backend (export on first use) vs torch on a bundled CT sample."""
    from pathlib import Path

    from medisam.export import read_export_metadata
    from medisam.io import read_image
    from medisam.models.litemedsam import LITEMEDSAM_SHA256
    from medisam.samples import __file__ as samples_init

    model = load_model("litemedsam", device="cpu", backend="onnx")
    sample = Path(samples_init).parent / "ct_liver_chaos_101_1045.jpg"
    image = read_image(sample)
    truth = read_image(sample.with_name(sample.stem + "_mask.png")).array > 0
    truth = truth[..., 0] if truth.ndim == 3 else truth
    ys, xs = np.nonzero(truth)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    got = Predictor(model).set_image(image).predict(box=box)
    ref = Predictor(real_torch_model).set_image(image).predict(box=box)
    assert dice(got.masks[0], ref.masks[0]) >= 0.999
    upscaled = got.low_res_logits != FILL_LOGIT  # the box's window (the rest was not upscaled)
    assert 0.05 < upscaled.mean() < 1.0
    assert np.abs(got.low_res_logits - ref.low_res_logits)[upscaled].max() < 1e-2
    assert dice(got.masks[0], truth) > 0.8
    meta = read_export_metadata(model.export_dir)  # the export the backend made on first use
    assert meta["checkpoint_sha256"] == real_torch_model.checkpoint_sha256 == LITEMEDSAM_SHA256


def test_fast_backend_on_a_cached_export_never_builds_the_torch_network(real_torch_model):
    """The second load of a fast backend reads the exported graphs only: the torch network (and
    the timm/torchvision imports it needs) is built lazily, on first use of ``model.net``."""
    from medisam.models.loading import load_torch
    from medisam.models.registry import get_spec

    first = load_model("litemedsam", device="cpu", backend="onnx")  # exports on first use (shared cache)
    again = load_model("litemedsam", device="cpu", backend="onnx")
    assert not again.net_built and again.export_dir == first.export_dir
    assert again.mask_input_size == real_torch_model.mask_input_size == 256
    image = np.zeros((64, 80), np.uint8)
    image[20:40, 30:60] = 200
    got = Predictor(again).set_image(image).predict(box=(28, 18, 62, 42))
    ref = Predictor(first).set_image(image).predict(box=(28, 18, 62, 42))
    assert np.array_equal(got.masks, ref.masks) and not again.net_built
    lazy = load_torch(get_spec("litemedsam"), device="cpu", lazy=True)
    assert not lazy.net_built and lazy.checkpoint_sha256 == real_torch_model.checkpoint_sha256
    a, b = lazy.net.state_dict(), real_torch_model.net.state_dict()  # built on first access, same weights
    assert lazy.net_built and a.keys() == b.keys() and all(torch.equal(a[k], b[k].cpu()) for k in a)
