"""Fine-tuning runs that must train (a time limit shorter than loading) or must be refused
(mode mismatches, a resume state an output would overwrite), and AutoSAM's reported Dice."""

from __future__ import annotations

import pytest
import torch

from medisam.cli import main
from medisam.errors import MedisamError
from medisam.models import load_model
from medisam.train import FinetuneConfig, finetune

FAST = ["--model", "litemedsam-tiny", "--epochs", "1", "--batch-size", "3", "--targets-per-image", "1",
        "--val-fraction", "0", "--max-cases", "3", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """One finished 1-epoch run per mode: ``{mode: checkpoint}`` (state and config beside each)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for mode in ("decoder", "lora", "adapter"):
        out[mode] = root / f"{mode}.pt"
        assert main(["finetune", str(tiny_dataset), "--mode", mode, "-o", str(out[mode]), *FAST]) == 0
    return out


def _refused(args: list[str], capsys, expected: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err


def _decoder_changed(ckpt) -> bool:
    base = load_model("litemedsam-tiny", device="cpu").net.state_dict()
    tuned = torch.load(ckpt, weights_only=True)["model"]
    return any(not torch.equal(v, base[k]) for k, v in tuned.items() if k.startswith("mask_decoder."))


def test_a_time_limit_shorter_than_loading_still_trains(tiny_dataset, tmp_path):
    """Loading and the embedding pass take longer than the 6 ms limit: the schedule and the limit
    count training only, so the first step runs at the full learning rate (it was 0: base weights out)."""
    cfg = FinetuneConfig(data=str(tiny_dataset), output=str(tmp_path / "t.pt"), model="litemedsam-tiny",
                         mode="decoder", epochs=3, batch_size=1, targets_per_image=1, time_limit_min=1e-4,
                         val_fraction=0.0, max_cases=3, device="cpu")
    result = finetune(cfg, progress=False)
    assert result.stopped == "time_limit" and result.epochs_run == 1
    assert _decoder_changed(tmp_path / "t.pt")


def test_a_run_whose_steps_cannot_change_the_weights_is_an_error(tiny_dataset, tmp_path, monkeypatch):
    from medisam.train import trainer

    monkeypatch.setattr(trainer, "make_scheduler",
                        lambda opt, *a, **k: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.0))
    cfg = FinetuneConfig(data=str(tiny_dataset), output=str(tmp_path / "z.pt"), model="litemedsam-tiny",
                         mode="decoder", epochs=1, batch_size=3, targets_per_image=1, val_fraction=0.0,
                         max_cases=3, device="cpu", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(MedisamError, match="no optimiser step that could change the weights"):
        finetune(cfg, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing written


def test_resume_into_its_own_state_with_force_is_refused(runs, tmp_path, capsys, tiny_dataset):
    ckpt = runs["decoder"]
    state = ckpt.with_name("decoder.state.pt")
    before = state.read_bytes()
    args = [a if a != "1" else "2" for a in FAST]  # --epochs 2
    _refused(["finetune", str(tiny_dataset), "--mode", "decoder", "-o", str(ckpt), "--resume", str(state),
              "--force", *args], capsys, "drop --force to continue that run in place")
    assert state.read_bytes() == before
    _refused(["finetune", str(tiny_dataset), "--mode", "decoder", "-o", str(state), "--resume", str(state),
              "--force", *args], capsys, "refusing to overwrite an input file")
    _refused(["finetune", str(tiny_dataset), "--mode", "decoder", "-o", str(tmp_path / "n.pt"), "--resume",
              str(ckpt), *FAST], capsys, "already ran 1 epoch(s) of 1")
    assert state.read_bytes() == before


@pytest.mark.parametrize("saved, asked", [("lora", "adapter"), ("decoder", "lora"), ("adapter", "decoder")])
def test_resume_in_another_mode_is_a_one_line_error(runs, tmp_path, capsys, tiny_dataset, saved, asked):
    args = [a if a != "1" else "2" for a in FAST]
    _refused(["finetune", str(tiny_dataset), "--mode", asked, "-o", str(tmp_path / "n.pt"), "--resume",
              str(runs[saved]), *args], capsys, f"was saved in {saved} mode, not {asked}")
    assert not (tmp_path / "n.pt").exists()


def test_resume_of_a_state_without_its_mode_that_does_not_fit_is_a_one_line_error(runs, tmp_path, capsys,
                                                                                   tiny_dataset):
    state = torch.load(runs["decoder"].with_name("decoder.state.pt"), weights_only=True)
    del state["mode"], state["base_model"], state["config"]  # as saved before states recorded them
    old = tmp_path / "old.state.pt"
    torch.save(state, old)
    args = [a if a != "1" else "2" for a in FAST]
    _refused(["finetune", str(tiny_dataset), "--mode", "lora", "-o", str(tmp_path / "n.pt"), "--resume", str(old),
              *args], capsys, "its state does not fit litemedsam-tiny in lora mode")


@pytest.mark.parametrize("mode", ["lora", "decoder"])
def test_an_adapter_checkpoint_in_another_mode_is_a_one_line_error(runs, tmp_path, capsys, tiny_dataset, mode):
    _refused(["finetune", str(tiny_dataset), "--mode", mode, "--checkpoint", str(runs["adapter"]),
              "-o", str(tmp_path / "n.pt"), *FAST], capsys, f"was fine-tuned in adapter mode, not {mode}")


def test_an_adapter_checkpoint_trains_on_in_adapter_mode(runs, tmp_path, tiny_dataset):
    out = tmp_path / "more.pt"
    assert main(["finetune", str(tiny_dataset), "--mode", "adapter", "--checkpoint", str(runs["adapter"]),
                 "-o", str(out), *FAST]) == 0
    before = load_model("litemedsam-tiny", checkpoint=runs["adapter"], device="cpu").net.state_dict()
    after = load_model("litemedsam-tiny", checkpoint=out, device="cpu").net.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(after[k], before[k]) for k in after if ".adapter." in k)


def test_autosam_without_a_validation_split_reports_no_val_dice(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "a.pt"
    assert main(["autosam", "train", str(tiny_dataset), "-o", str(out), "--model", "litemedsam-tiny",
                 "--epochs", "1", "--max-cases", "1", "--device", "cpu", "--quiet"]) == 0
    assert "best val Dice n/a" in capsys.readouterr().out
    assert torch.load(out, weights_only=True)["autosam"]["val_dice"] is None


def test_a_run_that_never_beats_the_model_as_loaded_says_so(tiny_dataset, tmp_path, monkeypatch, caplog):
    """Decoder mode on DRIVE for a minute saved val Dice 0.040 where the untrained model scores ~0.24, silently.
    The validation Dice before training is measured, kept in the checkpoint, and a run below it warns."""
    import logging

    from medisam.train import trainer

    said = iter([0.8, 0.5])  # before training, then the one epoch: worse
    monkeypatch.setattr(trainer, "_val_dice", lambda *a, **k: next(said))
    cfg = FinetuneConfig(data=str(tiny_dataset), output=str(tmp_path / "w.pt"), model="litemedsam-tiny",
                         mode="decoder", epochs=1, batch_size=3, targets_per_image=1, val_fraction=0.5,
                         max_cases=4, device="cpu")
    with caplog.at_level(logging.WARNING, logger="medisam.train.trainer"):
        result = finetune(cfg, progress=False)
    assert (result.base_val_dice, result.best_val_dice, result.worse_than_base) == (0.8, 0.5, True)
    assert any("no epoch beat litemedsam-tiny as loaded" in r.getMessage() and "0.5000, 0.8000 before training"
               in r.getMessage() for r in caplog.records), caplog.text
    assert torch.load(tmp_path / "w.pt", weights_only=False)["medisam"]["base_val_dice"] == 0.8


def test_the_validation_dice_before_training_is_measured_and_kept_on_resume(tiny_dataset, tmp_path):
    cfg = FinetuneConfig(data=str(tiny_dataset), output=str(tmp_path / "b.pt"), model="litemedsam-tiny",
                         mode="decoder", epochs=1, batch_size=3, targets_per_image=1, val_fraction=0.5,
                         max_cases=4, device="cpu")
    first = finetune(cfg, progress=False)
    assert first.base_val_dice is not None and 0.0 <= first.base_val_dice <= 1.0
    assert first.worse_than_base == (first.best_val_dice < first.base_val_dice)
    from dataclasses import replace

    again = finetune(replace(cfg, epochs=2), progress=False, resume=tmp_path / "b.pt")
    assert again.base_val_dice == first.base_val_dice  # read from the state, not measured on the tuned weights


def test_the_cli_line_gives_the_validation_dice_before_training(tiny_dataset, tmp_path, capsys):
    args = [a for a in FAST if a not in ("--val-fraction", "0")]  # with validation cases
    assert main(["finetune", str(tiny_dataset), "--mode", "decoder", "-o", str(tmp_path / "v.pt"), *args,
                 "--val-fraction", "0.5", "--max-cases", "4"]) == 0
    out = capsys.readouterr().out
    assert "best val Dice 0." in out and " before training" in out, out
