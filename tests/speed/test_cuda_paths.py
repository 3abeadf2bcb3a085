"""CUDA code paths checked without a GPU: precisions, autocast, ONNX Runtime providers, auto choice."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from medisam.errors import ModelError
from medisam.models import backends as B
from medisam.models import precision as P

CUDA = torch.device("cuda")


@pytest.mark.parametrize("bf16, expected", [(True, ("fp32", "bf16", "fp16")), (False, ("fp32", "fp16"))])
def test_cuda_precisions_follow_the_gpu(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert B.supported_precisions("torch", CUDA) == expected
    assert P.torch_autocast_dtype("fp16", CUDA) is torch.float16
    if bf16:
        assert P.torch_autocast_dtype("bf16", CUDA) is torch.bfloat16
    else:
        with pytest.raises(ModelError, match="no bf16"):
            P.torch_autocast_dtype("bf16", CUDA)
    with pytest.raises(ModelError, match="int8"):
        P.torch_autocast_dtype("int8", CUDA)


def test_autocast_enters_torch_autocast_for_cuda(monkeypatch):
    calls = []

    @contextlib.contextmanager
    def fake_autocast(device_type, dtype):
        calls.append((device_type, dtype))
        yield

    monkeypatch.setattr(torch, "autocast", fake_autocast)
    with P.autocast(CUDA, torch.float16):
        pass
    with P.autocast(CUDA, None):  # fp32: no autocast at all
        pass
    assert calls == [("cuda", torch.float16)]


def test_torch_model_encodes_under_autocast_and_returns_fp32(monkeypatch, tiny_model):
    calls = []

    @contextlib.contextmanager
    def recording(device, dtype):
        calls.append((device.type, dtype))
        yield

    model = B.TorchModel(tiny_model, "fp32")
    model._dtype = torch.float16  # what precision="fp16" on a CUDA device sets
    monkeypatch.setattr(B, "autocast", recording)
    x, _ = model.preprocess(torch.zeros(32, 32, 3).numpy())
    emb = model.encode(x)
    assert calls == [("cpu", torch.float16)] and emb.dtype == torch.float32


def test_onnx_cuda_provider_selection(monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    from medisam.models.onnx_backend import providers_for

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers_for(CUDA) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for(torch.device("cpu")) == ["CPUExecutionProvider"]
    assert B._accelerated("onnx", CUDA) and B._accelerated("torch", CUDA)
    assert not B._accelerated("openvino", CUDA)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        providers_for(CUDA)
    assert not B._accelerated("onnx", CUDA)


def test_auto_on_cuda_is_torch_and_ignores_the_cpu_profile(medisam_cache):
    B.write_speed_profile({"auto": {"backend": "onnx", "precision": "int8"}})
    try:
        assert B.choose_auto(CUDA) == ("torch", "fp32")
    finally:
        (medisam_cache / B.PROFILE_FILE).unlink()


def test_openvino_refuses_cuda(tiny_model):
    pytest.importorskip("openvino")
    from medisam.models.openvino_backend import OpenVinoModel

    with pytest.raises(ModelError, match="CPU"):
        OpenVinoModel(tiny_model, CUDA)


def _speed_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("medisam_speed_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("medisam_speed_bench", module)
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_throughput_and_targets(tiny_model, capsys):
    speed = _speed_module()
    x, _ = tiny_model.preprocess(torch.zeros(64, 64, 3).numpy())
    ips = speed.images_per_second(tiny_model.encode, x.repeat(2, 1, 1, 1), torch.device("cpu"), seconds=0.0,
                                  min_iters=2)
    assert ips > 0
    assert speed.targets_met(8.0, 9.0, 14.0, 100) == ("yes", "yes", "yes")
    assert speed.targets_met(7.0, 9.0, 14.0, 100)[0] == "floor"  # between the 5x floor and the 8x target
    assert speed.targets_met(4.9, 10.1, 16.0, 100) == ("NO", "NO", "NO")
    assert speed.targets_met(9.0, 5.0, 3.0, 20) == ("yes", "yes", "yes (est. 15.0)")
    assert speed.targets_met(9.0, 5.0, None, 100)[2] == "-"
    if not torch.cuda.is_available():
        speed.cuda_table(None, [], 2, 0.0)
        assert "no GPU" in capsys.readouterr().out
