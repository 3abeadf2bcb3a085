"""`medisam finetune` end to end on a tiny model: train, save, reload, segment, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medisam.cli import main
from medisam.models import load_model

FAST = ["--model", "litemedsam-tiny", "--epochs", "1", "--batch-size", "3", "--targets-per-image", "1",
        "--val-fraction", "0.25", "--device", "cpu", "--quiet"]


def _epochs(n: int) -> list[str]:
    """FAST with ``--epochs n`` (a resume may change that, not the other settings)."""
    return [str(n) if prev == "--epochs" else a for prev, a in zip(["", *FAST], FAST)]


@pytest.mark.parametrize("mode", ["full", "decoder", "adapter", "lora"])
def test_each_mode_trains_saves_and_segments(tiny_dataset, tmp_path, mode):
    ckpt = tmp_path / f"{mode}.pt"
    # no validation: an epoch below the random tiny model on validation leaves its weights in -o
    no_val = [a if prev != "--val-fraction" else "0" for prev, a in zip(["", *FAST], FAST)]
    assert main(["finetune", str(tiny_dataset), "--mode", mode, "-o", str(ckpt), *no_val]) == 0
    saved = torch.load(ckpt, weights_only=True)
    assert saved["medisam"]["base_model"] == "litemedsam-tiny" and saved["medisam"]["mode"] == mode
    config = json.loads((tmp_path / f"{mode}.config.json").read_text())
    assert config["mode"] == mode and config["epochs"] == 1
    assert (tmp_path / f"{mode}.state.pt").is_file()
    model = load_model("litemedsam-tiny", checkpoint=ckpt, device="cpu")
    base = load_model("litemedsam-tiny", device="cpu")
    changed = [k for k, v in model.net.state_dict().items()
               if k in base.net.state_dict() and not torch.equal(v, base.net.state_dict()[k])]
    if mode == "adapter":  # base weights frozen (keys renamed .inner), adapters moved off zero
        ups = [v for k, v in model.net.state_dict().items() if k.endswith(".adapter.up.weight")]
        assert ups and any(float(v.abs().sum()) > 0 for v in ups)
    else:
        assert changed, "training changed no weights"
    if mode == "decoder":
        assert all(k.startswith("mask_decoder.") for k in changed)
    if mode == "lora":  # merged: plain keys, only encoder attention weights differ
        assert set(model.net.state_dict()) == set(base.net.state_dict())
        assert all(".attn." in k for k in changed)
    out = tmp_path / "seg.png"
    rc = main(["segment", str(tiny_dataset / "images" / "case0.png"), "--box", "10,10,32,32", "-o", str(out),
               "--model", "litemedsam-tiny", "--checkpoint", str(ckpt), "--device", "cpu"])
    assert rc == 0 and np.asarray(Image.open(out)).shape == (64, 80)


def test_wrong_base_model_and_existing_output_are_one_line_errors(tiny_dataset, tmp_path, capsys):
    ckpt = tmp_path / "d.pt"
    assert main(["finetune", str(tiny_dataset), "--mode", "decoder", "-o", str(ckpt), *FAST]) == 0
    assert main(["finetune", str(tiny_dataset), "--mode", "decoder", "-o", str(ckpt), *FAST]) == 2
    assert "exists" in capsys.readouterr().err
    with pytest.raises(Exception, match="fine-tuned from 'litemedsam-tiny'"):
        load_model("sam-tiny", checkpoint=ckpt, device="cpu")
    assert main(["finetune", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.pt"), *FAST]) == 2


def test_resume_continues_from_saved_epoch_with_yaml_config(tiny_dataset, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("mode: decoder\nlr: 0.0003\nschedule: onecycle\n")
    ckpt = tmp_path / "r.pt"
    assert main(["finetune", str(tiny_dataset), "-o", str(ckpt), "--config", str(cfg), *FAST]) == 0
    state1 = torch.load(tmp_path / "r.state.pt", weights_only=True)
    assert state1["epoch"] == 0 and len(state1["history"]) == 1
    args = _epochs(2)
    assert main(["finetune", str(tiny_dataset), "-o", str(ckpt), "--config", str(cfg), "--resume", str(ckpt),
                 *args]) == 0
    state2 = torch.load(tmp_path / "r.state.pt", weights_only=True)
    assert state2["epoch"] == 1 and len(state2["history"]) == 2
    assert state2["history"][0] == state1["history"][0]
    assert json.loads((tmp_path / "r.config.json").read_text())["schedule"] == "onecycle"
    assert main(["finetune", str(tiny_dataset), "-o", str(tmp_path / "n.pt"), "--resume",
                 str(tmp_path / "none.pt"), *FAST]) == 2


def test_time_limit_and_early_stopping_end_the_run(tiny_dataset, tmp_path):
    from medisam.train import FinetuneConfig, finetune

    cfg = FinetuneConfig(data=str(tiny_dataset), output=str(tmp_path / "t.pt"), model="litemedsam-tiny",
                         mode="decoder", epochs=50, batch_size=1, time_limit_min=1e-4, device="cpu")
    result = finetune(cfg, progress=False)
    assert result.stopped == "time_limit" and result.epochs_run == 1
    cfg = cfg.replace(output=str(tmp_path / "e.pt"), time_limit_min=None, lr=1e-12, patience=1, epochs=20,
                      batch_size=3, cache_dir=str(tmp_path / "t.embeddings"))
    result = finetune(cfg, progress=False)  # lr ~0: validation Dice cannot improve
    assert result.stopped == "early_stopping" and result.epochs_run == 2


def test_a_resume_keeps_the_runs_own_split_and_names_the_held_out_cases(tiny_dataset, tmp_path, capsys):
    """A resume rebuilt its settings from the defaults: without --holdout-fraction it trained on the
    held-out cases and rewrote the run's config. It now keeps the run's settings, refuses a changed
    one, and the held-out case ids are printed and kept in the checkpoint."""
    ckpt = tmp_path / "h.pt"
    assert main(["finetune", str(tiny_dataset), "-o", str(ckpt), "--holdout-fraction", "0.25", *FAST]) == 0
    out = capsys.readouterr().out
    held = out.split("held out for testing (never trained or validated on): 1 case(s): ")[1].strip()
    assert torch.load(ckpt, weights_only=True)["medisam"]["split"]["test"] == [held]
    assert main(["finetune", str(tiny_dataset), "-o", str(ckpt), "--resume", str(ckpt), *_epochs(2)]) == 0
    assert f"1 case(s): {held}" in capsys.readouterr().out
    assert json.loads((tmp_path / "h.config.json").read_text())["holdout_fraction"] == 0.25
    assert torch.load(ckpt, weights_only=True)["medisam"]["split"]["test"] == [held]
    assert main(["finetune", str(tiny_dataset), "-o", str(ckpt), "--resume", str(ckpt), "--holdout-fraction", "0",
                 *_epochs(3)]) == 2
    err = capsys.readouterr().err
    assert "continues a run with other settings (--holdout-fraction was 0.25, now 0.0)" in err


@pytest.mark.parametrize("missing,mode", [("monai.losses", "decoder"), ("peft", "lora")])
def test_a_missing_train_extra_is_one_line_before_the_model_loads(tiny_dataset, tmp_path, capsys, monkeypatch,
                                                                    missing, mode):
    """Without ``[train]`` a decoder run encoded the whole dataset (81 MB of embeddings for DRIVE), then
    stopped at the loss; the extra is now checked first, and nothing is written."""
    import sys

    import medisam.models

    monkeypatch.setitem(sys.modules, missing, None)  # import fails as when the package is absent
    monkeypatch.setattr(medisam.models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    out = tmp_path / "m.pth"
    rc = main(["finetune", str(tiny_dataset), "--mode", mode, "-o", str(out), "--model", "litemedsam-tiny"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install 'medisam[train]'" in err[0] and missing in err[0], err
    assert list(tmp_path.iterdir()) == []
