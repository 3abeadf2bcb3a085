"""Bad training options are one-line errors (exit 2) naming the flag typed, before any work."""

from __future__ import annotations

import pytest

from medisam.cli import main

TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--quiet"]


def _refused(args: list[str], capsys, expected: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert expected in err, err
    return err


@pytest.mark.parametrize("option, expected", [
    (["--time-limit", "nan"], "--time-limit must be a finite number"),
    (["--time-limit", "inf"], "--time-limit must be a finite number of minutes"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1), got 1.5"),
    (["--epochs", "0"], "--epochs must be >= 1"),
])
def test_finetune_refuses_bad_options_by_their_flag(tiny_dataset, tmp_path, capsys, option, expected):
    out = tmp_path / "w.pt"
    _refused(["finetune", str(tiny_dataset), "-o", str(out), *TINY, *option], capsys, expected)
    assert list(tmp_path.iterdir()) == []


def test_finetune_config_file_values_are_checked_too(tiny_dataset, tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"time_limit_min": NaN}')
    _refused(["finetune", str(tiny_dataset), "-o", str(tmp_path / "w.pt"), "--config", str(cfg), *TINY], capsys,
             "time_limit_min must be a finite number")


@pytest.mark.parametrize("option, expected", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--time-limit", "0"], "--time-limit must be positive"),
    (["--time-limit", "-1"], "--time-limit must be positive"),
    (["--val-fraction", "1.5"], "--val-fraction must be in [0, 1)"),
    (["--holdout-fraction", "0.9"], "leave no cases for training"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_autosam_train_refuses_what_finetune_refuses(tiny_dataset, tmp_path, capsys, option, expected):
    out = tmp_path / "a.pt"
    _refused(["autosam", "train", str(tiny_dataset), "-o", str(out), *TINY, *option], capsys, expected)
    assert list(tmp_path.iterdir()) == []


def test_autosam_library_refuses_zero_epochs(tiny_dataset, tmp_path):
    from medisam.errors import InputError
    from medisam.train.autosam import train_autosam

    with pytest.raises(InputError, match="^epochs must be >= 1"):
        train_autosam(tiny_dataset, tmp_path / "a.pt", model="litemedsam-tiny", epochs=0, device="cpu")


@pytest.mark.parametrize("companion", ["w.state.pt", "w.config.json"])
def test_finetune_refuses_to_overwrite_a_companion_output(tiny_dataset, tmp_path, capsys, companion):
    existing = tmp_path / companion
    existing.write_text("keep me")
    _refused(["finetune", str(tiny_dataset), "-o", str(tmp_path / "w.pt"), *TINY], capsys, "exists")
    assert existing.read_text() == "keep me" and not (tmp_path / "w.pt").exists()


def test_finetune_refuses_a_config_input_that_an_output_would_overwrite(tiny_dataset, tmp_path, capsys):
    cfg = tmp_path / "w.config.json"
    cfg.write_text('{"mode": "decoder"}')
    _refused(["finetune", str(tiny_dataset), "-o", str(tmp_path / "w.pt"), "--config", str(cfg), "--force", *TINY],
             capsys, "is an input")
    assert cfg.read_text() == '{"mode": "decoder"}'


def test_finetune_names_its_outputs_and_checks_the_dataset_first(tiny_dataset, tmp_path, capsys):
    """`-o x.txt` wrote a checkpoint named x.txt; a state left beside x.pth by an earlier run was
    refused as 'x.state.pt: exists', a file the user never named, before a missing dataset was told."""
    _refused(["finetune", str(tiny_dataset), "-o", str(tmp_path / "x.txt"), *TINY], capsys,
             "x.txt: a checkpoint is written as .pt or .pth (its state and config go beside it)")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "x.state.pt").write_bytes(b"an earlier run's state")
    _refused(["finetune", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.pth"), *TINY], capsys,
             "nothing: no such dataset folder")
    err = _refused(["finetune", str(tiny_dataset), "-o", str(tmp_path / "x.pth"), *TINY], capsys,
                   "x.state.pt (the training state a run writes beside ")
    assert "--force" in err
    assert (tmp_path / "x.state.pt").read_bytes() == b"an earlier run's state"
