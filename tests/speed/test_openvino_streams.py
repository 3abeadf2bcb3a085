"""OpenVINO encodes a batch on single-thread streams: the same embeddings as one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")


def test_batch_on_streams_equals_one_at_a_time():
    from medisam.models import load_model

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="fp32", threads=2)
    rng = np.random.default_rng(0)
    x = torch.cat([model.preprocess(rng.uniform(0, 255, (40 + 7 * i, 50, 3)).astype(np.float32))[0]
                   for i in range(3)])
    batch = model.encode(x)  # three images, two streams
    assert model._streams is not None  # the throughput-compiled encoder ran
    single = torch.cat([model.encode(x[i:i + 1]) for i in range(3)])
    assert batch.shape == single.shape == (3, 256, 64, 64)
    assert not torch.equal(batch[0], batch[1])  # each image its own output, in order
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    again = model.encode(x[[2, 0]])  # the queue is reused; order follows the input
    torch.testing.assert_close(again, single[[2, 0]], atol=1e-5, rtol=1e-5)


def test_one_thread_keeps_the_latency_encoder():
    from medisam.models import load_model

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="fp32", threads=1)
    x = torch.rand(2, 3, 256, 256)
    out = model.encode(x)
    assert out.shape == (2, 256, 64, 64) and model._streams is None


def test_denormals_are_flushed_in_every_graph_with_the_same_embeddings():
    """Every OpenVINO graph compiles with CPU_DENORMALS_OPTIMIZATION (where the runtime knows it);
    the encoder's output equals the same graph compiled without it."""
    import openvino as ov

    from medisam.models import load_model
    from medisam.models.openvino_backend import DENORMALS_CONFIG, _supported

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="fp32", threads=1)
    core = ov.Core()
    assert _supported(core, DENORMALS_CONFIG) == DENORMALS_CONFIG  # this runtime knows it
    assert model._config["CPU_DENORMALS_OPTIMIZATION"] is True
    assert model._encoder.get_property("CPU_DENORMALS_OPTIMIZATION") is True
    assert _supported(core, {"NO_SUCH_PROPERTY": 1}) == {}
    plain = {k: v for k, v in model._config.items() if k not in DENORMALS_CONFIG}
    reference = core.compile_model(str(model._encoder_path), "CPU", plain)
    x = model.preprocess(np.random.default_rng(3).uniform(0, 255, (64, 64, 3)).astype(np.float32))[0]
    expected = reference.create_infer_request().infer({"image": x.numpy()})[0]
    np.testing.assert_array_equal(model.encode(x).numpy(), expected)
