"""Which parameters each fine-tuning mode trains (gradient check), adapters and LoRA details."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medisam.models import adapters, load_model
from medisam.train import modes
from medisam.train.config import FinetuneConfig
from medisam.train.losses import SegLoss


def _net(mode: str, **kw):
    net = load_model("litemedsam-tiny", device="cpu").net
    cfg = FinetuneConfig(data="x", output="y.pt", mode=mode, model="litemedsam-tiny", **kw)
    return modes.prepare(net, cfg), cfg


def _step(net, from_embeddings: bool) -> None:
    seg = modes.PromptedSegmenter(net, from_embeddings)
    torch.manual_seed(0)
    x = torch.randn(1, 256, 64, 64) if from_embeddings else torch.rand(1, 3, 256, 256)
    prompts = [{"boxes": torch.tensor([[40.0, 40.0, 120.0, 130.0], [10.0, 10.0, 60.0, 50.0]]),
                "points": None, "point_labels": None}]
    (low_res, iou), = seg(x, prompts)
    target = torch.zeros_like(low_res)
    target[..., 50:100, 50:100] = 1
    SegLoss()(low_res, target, iou).backward()


def _intended(name: str, mode: str, train_decoder: bool = False) -> bool:
    if name.startswith("mask_decoder."):
        return mode in ("full", "decoder") or train_decoder
    if name.startswith("image_encoder."):
        return {"full": True, "decoder": False, "adapter": ".adapter." in name,
                "lora": "lora_" in name}[mode]
    return False  # prompt encoder is frozen in every mode


@pytest.mark.parametrize("mode,train_decoder", [("full", False), ("decoder", False), ("adapter", False),
                                                ("lora", False), ("adapter", True)])
def test_exactly_the_intended_parameters_get_gradients(mode, train_decoder):
    net, _ = _net(mode, train_decoder=train_decoder)
    modes.set_train_mode(net, mode)
    _step(net, from_embeddings=(mode == "decoder"))
    params = dict(net.named_parameters())
    intended = {n for n in params if _intended(n, mode, train_decoder)}
    assert intended, "mode trains nothing"
    assert {n for n, p in params.items() if p.requires_grad} == intended
    with_grad = {n for n, p in params.items() if p.grad is not None}
    assert with_grad == intended
    assert any(float(params[n].grad.abs().sum()) > 0 for n in intended)
    if mode == "adapter":
        assert all(".adapter." in n for n in intended if n.startswith("image_encoder."))


def test_adapters_start_as_identity_and_rebuild_from_metadata(tiny_model):
    x = torch.rand(1, 3, 256, 256)
    base = tiny_model.net.image_encoder
    with torch.no_grad():
        ref = base(x)
    net = load_model("litemedsam-tiny", device="cpu").net
    names = adapters.add_adapters(net.image_encoder, dim=8)
    net.eval()
    assert len(names) == 3  # three TinyViT stages with attention blocks in the tiny model
    with torch.no_grad():
        assert torch.allclose(net.image_encoder(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="already"):
        adapters.add_adapters(net.image_encoder)
    fresh = load_model("litemedsam-tiny", device="cpu").net
    adapters.rebuild(fresh, {"adapter": adapters.adapter_metadata(8, 0.5)})
    assert set(fresh.state_dict()) == set(net.state_dict())


def test_lora_export_is_merged_into_base_keys():
    net, cfg = _net("lora")
    for name, p in net.image_encoder.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)  # make the LoRA update non-zero
    net.eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        wrapped_out = net.image_encoder(x)
    state, extra = modes.export_state(net, cfg)
    assert extra == {}
    plain = load_model("litemedsam-tiny", device="cpu").net
    assert set(state) == set(plain.state_dict())
    plain.load_state_dict(state)
    plain.eval()
    with torch.no_grad():
        merged_out = plain.image_encoder(x)
    assert torch.allclose(merged_out, wrapped_out, atol=1e-4)
    base_out = load_model("litemedsam-tiny", device="cpu").net.eval().image_encoder(x)
    assert not torch.allclose(base_out, merged_out, atol=1e-4)


def test_frozen_batchnorm_statistics_do_not_move_in_adapter_mode():
    net, _ = _net("adapter")
    bn = [m for m in net.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    modes.set_train_mode(net, "adapter")
    _step(net, from_embeddings=False)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn))
    assert not np.any([m.training for m in bn])


def test_models_package_never_imports_train():
    """Layering: rebuilding an adapter checkpoint needs only ``medisam.models`` (no upward import)."""
    import ast
    from pathlib import Path

    import medisam.models

    offenders = []
    for path in Path(medisam.models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("medisam.train")]
    assert offenders == []
    assert adapters.rebuild.__module__ == "medisam.models.adapters"
