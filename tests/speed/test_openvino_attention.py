"""OpenVINO's copy of the encoder with attention's K transposes as Einsum: same outputs, made once."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

ov = pytest.importorskip("openvino")


def _attention_blocks(net) -> int:  # noqa: ANN001
    return sum(type(m).__name__ == "Attention" and hasattr(m, "qkv") for m in net.modules())


def test_every_window_attention_is_rewritten_and_the_encoder_computes_the_same(tiny_model, tmp_path):
    from medisam.models.export_cache import cached_export
    from medisam.models.openvino_attention import REWRITTEN_ENCODER, rewrite_k_transposes, rewritten_encoder

    folder = tmp_path / "export"
    shutil.copytree(cached_export(tiny_model), folder)
    model = ov.Core().read_model(str(folder / "encoder.onnx"))
    assert rewrite_k_transposes(model) == _attention_blocks(tiny_model.net) > 0
    path = rewritten_encoder(folder)
    assert path.name == REWRITTEN_ENCODER and path.with_suffix(".bin").is_file()
    assert not list(folder.glob(".*"))  # no temporary file left behind
    rewritten = ov.Core().read_model(str(path))
    kinds = [op.get_type_name() for op in rewritten.get_ordered_ops()]
    assert kinds.count("Einsum") == _attention_blocks(tiny_model.net)
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    core = ov.Core()
    before = core.compile_model(str(folder / "encoder.onnx"), "CPU", config)([x])[0]
    after = core.compile_model(str(path), "CPU", config)([x])[0]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    mtime = path.stat().st_mtime_ns
    assert rewritten_encoder(folder) == path and path.stat().st_mtime_ns == mtime  # made once, then reused


def test_a_graph_without_the_pattern_keeps_its_onnx_file(tmp_path):
    import torch

    from medisam.models.openvino_attention import REWRITTEN_ENCODER, rewritten_encoder

    class Plain(torch.nn.Module):  # a 4D MatMul whose second input is not a (0, 2, 3, 1) transpose
        def forward(self, a, b):
            return a @ b.transpose(-2, -1)

    a = torch.rand(1, 2, 3, 4)
    torch.onnx.export(Plain(), (a, a), str(tmp_path / "encoder.onnx"), opset_version=17, dynamo=False)
    assert rewritten_encoder(tmp_path) == tmp_path / "encoder.onnx"
    assert not (tmp_path / REWRITTEN_ENCODER).exists()


def test_the_openvino_backend_compiles_the_rewritten_encoder():
    from medisam.models import load_model
    from medisam.models.openvino_attention import REWRITTEN_ENCODER

    model = load_model("litemedsam-tiny", device="cpu", backend="openvino", precision="fp32")
    assert model._encoder_path.name == REWRITTEN_ENCODER
