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
    def fake_autocast(device_type, dtype, cache_enabled=True):
        calls.append((device_type, dtype, cache_enabled))
        yield

    monkeypatch.setattr(torch, "autocast", fake_autocast)
    with P.autocast(CUDA, torch.float16):
        pass
    with P.autocast(CUDA, torch.float16, cache_enabled=False):  # what a CUDA graph capture needs
        pass
    with P.autocast(CUDA, None):  # fp32: no autocast at all
        pass
    assert calls == [("cuda", torch.float16, True), ("cuda", torch.float16, False)]


def test_torch_model_encodes_under_autocast_and_returns_fp32(monkeypatch, tiny_model):
    calls = []

    @contextlib.contextmanager
    def recording(device, dtype, cache_enabled=True):
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


def test_auto_on_cuda_is_torch_fp16_with_tensor_cores_and_ignores_the_cpu_profile(medisam_cache, monkeypatch):
    B.write_speed_profile({"auto": {"backend": "onnx", "precision": "int8"}})
    monkeypatch.delenv("MEDISAM_BACKEND", raising=False)
    try:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))  # H100/H200
        assert B.choose_auto(CUDA) == ("torch", "fp16")
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (6, 1))  # Pascal: no tensor cores
        assert B.choose_auto(CUDA) == ("torch", "fp32")
        monkeypatch.setenv("MEDISAM_BACKEND", "torch")  # pinned: fp32, as everywhere
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
        assert B.choose_auto(CUDA) == ("torch", "fp32")
    finally:
        (medisam_cache / B.PROFILE_FILE).unlink()


def test_auto_on_cuda_keeps_fp32_for_families_not_measured(monkeypatch):
    from medisam.models.registry import get_spec

    monkeypatch.delenv("MEDISAM_BACKEND", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    assert B._auto_choice(get_spec("litemedsam"), CUDA, None) == ("torch", "fp16")
    assert B._auto_choice(get_spec("sam-vit-b"), CUDA, None) == ("torch", "fp32")
    assert B._auto_choice(get_spec("litemedsam"), CUDA, "fp32") == ("torch", "fp32")  # asked for: kept
    assert B._auto_choice(get_spec("sam-vit-b"), CUDA, "bf16") == ("torch", "bf16")  # asked for: kept


def test_openvino_refuses_cuda(tiny_model):
    pytest.importorskip("openvino")
    from medisam.models.openvino_backend import OpenVinoModel

    with pytest.raises(ModelError, match="CPU"):
        OpenVinoModel(tiny_model, CUDA)


def _bench_module(name: str):
    """A benchmark script as a module (``benchmarks/`` on the path: speed_cuda imports speed)."""
    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"medisam_bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(f"medisam_bench_{name}", module)
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_throughput_and_targets(tiny_model, capsys):
    speed, speed_cuda = _bench_module("speed"), _bench_module("speed_cuda")
    x, _ = tiny_model.preprocess(torch.zeros(64, 64, 3).numpy())
    cpu = torch.device("cpu")
    ips = speed_cuda.images_per_second(tiny_model.encode, x.repeat(2, 1, 1, 1), cpu, seconds=0.0, min_iters=2)
    assert ips > 0
    assert speed_cuda.batch1_ms(tiny_model.encode, x, cpu, repeats=2) > 0
    assert speed.targets_met(8.0, 9.0, 14.0, 100) == ("yes", "yes", "yes")
    assert speed.targets_met(7.0, 9.0, 14.0, 100)[0] == "floor"  # between the 5x floor and the 8x target
    assert speed.targets_met(4.9, 10.1, 16.0, 100) == ("NO", "NO", "NO")
    assert speed.targets_met(9.0, 5.0, 3.0, 20) == ("yes", "yes", "yes (est. 15.0)")
    assert speed.targets_met(9.0, 5.0, None, 100)[2] == "-"
    if not torch.cuda.is_available():
        assert speed_cuda.main([]) == 0
        assert "no GPU" in capsys.readouterr().out


class _FakeCudaInput:
    """Stands in for a CUDA tensor where there is no GPU (GraphedEncoder reads these fields only)."""

    is_cuda = True
    dtype = torch.float32
    device = CUDA

    def __init__(self, *shape: int):
        self.shape = shape


def test_graphed_encoder_keeps_at_most_max_graphs_shapes_and_can_be_turned_off(monkeypatch):
    from medisam.models import cuda_graph

    captured = []

    class FakeCapture:
        def __init__(self, fn, example):
            captured.append(example.shape)

        def __call__(self, x):
            return ("graph", x.shape)

    monkeypatch.setattr(cuda_graph, "CapturedCall", FakeCapture)
    graphed = cuda_graph.GraphedEncoder(lambda x: ("eager", x.shape), max_graphs=2)
    with torch.no_grad():
        assert graphed(_FakeCudaInput(1, 3, 8, 8)) == ("graph", (1, 3, 8, 8))
        graphed(_FakeCudaInput(1, 3, 8, 8))  # replayed, not captured again
        graphed(_FakeCudaInput(2, 3, 8, 8))
        graphed(_FakeCudaInput(1, 3, 8, 8))  # now the most recently used
        graphed(_FakeCudaInput(4, 3, 8, 8))  # evicts batch 2, the least recently used
        assert captured == [(1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8)]
        assert [k[0] for k in graphed.graphs] == [(1, 3, 8, 8), (4, 3, 8, 8)]
        monkeypatch.setenv("MEDISAM_CUDA_GRAPHS", "0")
        assert graphed(_FakeCudaInput(1, 3, 8, 8)) == ("eager", (1, 3, 8, 8))
    assert graphed(_FakeCudaInput(1, 3, 8, 8))[0] == "eager"  # with gradients: never a graph


def test_graphed_encoder_falls_back_to_eager_when_capture_fails(monkeypatch):
    from medisam.models import cuda_graph

    def failing(fn, example):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(cuda_graph, "CapturedCall", failing)
    graphed = cuda_graph.GraphedEncoder(lambda x: "eager")
    with torch.no_grad():
        assert graphed(_FakeCudaInput(1, 3, 8, 8)) == "eager"
    assert graphed.failed and not graphed.graphs


def test_cpu_torch_model_has_no_graphs(tiny_model):
    assert B.TorchModel(tiny_model, "fp32").graphed_encoder is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_encoder_matches_eager_on_the_real_model(precision):
    from medisam.models import load_model

    model = load_model("litemedsam", device="cuda", precision=precision)
    assert model.graphed_encoder is not None
    gen = torch.Generator(device="cuda").manual_seed(0)
    images = [torch.rand(1, 3, 256, 256, device="cuda", generator=gen) for _ in range(3)]
    graphed = [model.encode(x) for x in images]  # the first call captures, the others replay
    assert len(model.graphed_encoder.graphs) == 1
    eager = [model._encode_eager(x) for x in images]
    for g, e in zip(graphed, eager):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-3 if precision == "fp16" else 1e-5)
    assert not torch.equal(graphed[0], graphed[1])  # each call's output is its own, not the graph's buffer


def test_backend_table_says_what_auto_is_on_cuda(monkeypatch):
    from rich.console import Console

    monkeypatch.delenv("MEDISAM_BACKEND", raising=False)
    monkeypatch.setattr(B, "resolve_device", lambda *a, **k: CUDA)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    console = Console(width=400, record=True)
    console.print(B.backend_table())
    text = console.export_text()
    assert "auto = torch fp16" in text and "compute capability 9.0" in text and "CUDA graphs" in text
    assert "calibrat" not in text  # the CPU's calibration does not decide on a GPU
