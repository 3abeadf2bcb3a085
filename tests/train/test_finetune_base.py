"""Fine-tuning never hands back a model worse than the one it started from on validation, and the
trainer sees what inference sees (the DRIVE decoder run that saved val Dice 0.02-0.04 against 0.21)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medisam.io import read_image
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.train import FinetuneConfig, finetune, modes
from medisam.train import trainer
from medisam.train.data import PromptedDataset, load_images
from medisam.train.distributed import DistInfo
from medisam.train.losses import SegLoss


def _config(data: Path, out: Path, **changes) -> FinetuneConfig:
    values = dict(data=str(data), output=str(out), model="litemedsam-tiny", mode="decoder", epochs=2,
                  batch_size=1, targets_per_image=1, val_fraction=0.5, device="cpu", patience=0,
                  cache_dir=str(out.parent / "cache"))
    return FinetuneConfig(**{**values, **changes})


def _decoder_of(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in state.items() if k.startswith("mask_decoder.")}


def _same_decoder(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _base_decoder() -> dict[str, torch.Tensor]:
    state = load_model("litemedsam-tiny", device="cpu").net.state_dict()
    return {k: v for k, v in state.items() if k.startswith("mask_decoder.")}


class _EmptyingLoss(SegLoss):
    """A loss whose minimum is an empty mask: training it drives validation Dice to 0."""

    def forward(self, logits, target, iou_pred=None):  # noqa: ANN001 - SegLoss's signature
        return logits.float().mean() * 100


def test_a_run_worse_than_the_base_model_writes_the_base_weights(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "SegLoss", _EmptyingLoss)
    cfg = _config(tiny_dataset, tmp_path / "w.pt", lr=1e-2)
    result = finetune(cfg, progress=False)
    assert result.base_val_dice > 0.0, "the tiny model must start above an empty mask for this test"
    assert result.best_val_dice < result.base_val_dice and result.worse_than_base
    assert result.kept_base
    checkpoint = torch.load(tmp_path / "w.pt", weights_only=True)
    assert checkpoint["medisam"]["kept_base"] and checkpoint["medisam"]["epoch"] == 0
    assert checkpoint["medisam"]["val_dice"] == pytest.approx(result.base_val_dice)
    assert _same_decoder(_decoder_of(tmp_path / "w.pt"), _base_decoder())
    state = torch.load(tmp_path / "w.state.pt", weights_only=True)  # --resume trains on from the last epoch
    assert not _same_decoder({k: v for k, v in state["net"].items() if k.startswith("mask_decoder.")},
                             _base_decoder())


def test_a_forced_run_worse_than_the_base_model_replaces_an_old_output_with_the_base_weights(
        tiny_dataset, tmp_path, monkeypatch):
    """force=True over an earlier run's checkpoint: no epoch beats the base model, so the output is the
    base weights, not the earlier run's file left in place."""
    old = tmp_path / "w.pt"
    trainer.save_checkpoint(old, {"mask_decoder.stale": torch.ones(1)}, {"epoch": 7})
    monkeypatch.setattr(trainer, "SegLoss", _EmptyingLoss)
    result = finetune(_config(tiny_dataset, old, lr=1e-2), force=True, progress=False)
    assert result.kept_base
    assert torch.load(old, weights_only=True)["medisam"]["kept_base"]
    assert _same_decoder(_decoder_of(old), _base_decoder())


def _scripted_val(monkeypatch, values: list[float]) -> None:
    """``trainer._val_dice`` answers ``values`` in turn: the base model's, then each epoch's."""
    answers = iter(values)
    monkeypatch.setattr(trainer, "_val_dice", lambda *a, **k: next(answers))


def test_only_an_epoch_above_the_base_model_replaces_the_output(tiny_dataset, tmp_path, monkeypatch):
    _scripted_val(monkeypatch, [0.5, 0.3, 0.45, 0.6, 0.55])  # base, then epochs 1-4
    written = []
    save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint", lambda path, state, meta, **k: (
        written.append(meta["epoch"]), save(path, state, meta, **k))[1])
    result = finetune(_config(tiny_dataset, tmp_path / "b.pt", epochs=4), progress=False)
    assert written == [3]  # epochs 1 and 2 improved on each other, never on the model as loaded
    meta = torch.load(tmp_path / "b.pt", weights_only=True)["medisam"]
    assert (meta["epoch"], meta["val_dice"], meta.get("kept_base", False)) == (3, 0.6, False)
    assert not result.kept_base and not result.worse_than_base and result.best_val_dice == 0.6
    assert not _same_decoder(_decoder_of(tmp_path / "b.pt"), _base_decoder())


def test_no_validation_set_keeps_the_last_epoch(tiny_dataset, tmp_path):
    result = finetune(_config(tiny_dataset, tmp_path / "n.pt", epochs=1, val_fraction=0.0), progress=False)
    assert result.base_val_dice is None and not result.kept_base
    assert not _same_decoder(_decoder_of(tmp_path / "n.pt"), _base_decoder())


def test_the_trainer_encodes_an_image_as_the_predictor_does(tiny_dataset, tmp_path):
    """Decoder mode's cached embedding of an image is the Predictor's, bit for bit (same display
    pixels, normalisation, resize and pad): training and inference see the same input."""
    model = load_model("litemedsam-tiny", device="cpu", backend="torch")
    images = load_images(tiny_dataset, max_cases=2)
    inputs, _ = trainer.prepare_inputs(model, images, True, tmp_path / "emb", DistInfo(), False)
    predictor = Predictor(model)
    for image, path in zip(images, inputs):
        predictor.set_image(read_image(tiny_dataset / "images" / f"{image.case_id}.png"))
        cached = torch.load(path, weights_only=True)
        assert torch.equal(cached, predictor.get_image_embedding()[0].cpu())


def test_a_training_step_at_learning_rate_0_leaves_validation_unchanged(tiny_dataset, tmp_path):
    """Train mode, a forward/backward pass and an optimiser step that cannot move the weights change
    nothing that validation measures (no dropout or normalisation statistics drift in decoder mode)."""
    cfg = _config(tiny_dataset, tmp_path / "z.pt")
    model = load_model("litemedsam-tiny", device="cpu", backend="torch")
    images = load_images(tiny_dataset)
    inputs, transforms = trainer.prepare_inputs(model, images, True, tmp_path / "emb", DistInfo(), False)
    data = PromptedDataset(images, inputs, transforms, cfg.strategies(), 2, 0, deterministic=True)
    net = modes.prepare(model.net, cfg)
    segmenter = modes.PromptedSegmenter(net, from_embeddings=True)
    net.eval()
    before = trainer.evaluate(segmenter, data, range(len(data)), torch.device("cpu"), False)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.0, weight_decay=0.01)
    modes.set_train_mode(net, cfg.mode)
    items = [data[i] for i in range(len(data))]
    outputs = segmenter(torch.stack([item["input"] for item in items]), items)
    loss = torch.stack([trainer._item_loss(SegLoss(), item, low, iou)[0] for item, (low, iou) in zip(items, outputs)])
    loss.mean().backward()
    optimizer.step()
    net.eval()
    assert trainer.evaluate(segmenter, data, range(len(data)), torch.device("cpu"), False) == before
