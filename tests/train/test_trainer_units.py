"""Units of the training loop: early stopping, splits, schedule, config, prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medisam.errors import InputError, PromptError
from medisam.models.transform import InputTransform
from medisam.prompting import parse_strategies
from medisam.train.config import FinetuneConfig, check_options, option_flag
from medisam.train.data import simulate_prompts, split_cases, three_way_split
from medisam.train.losses import dice_of_present
from medisam.train.trainer import EarlyStopping, TrainClock, make_scheduler


def test_early_stopping_counts_epochs_without_improvement():
    s = EarlyStopping(patience=2, min_delta=0.01)
    assert s.step(0.5) and not s.should_stop
    assert s.step(0.6)
    assert not s.step(0.605)  # below min_delta
    assert not s.should_stop
    assert not s.step(0.59)
    assert s.should_stop and s.best == 0.6
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(s.state_dict())
    assert restored.should_stop and restored.best == 0.6
    never = EarlyStopping(patience=0)
    never.step(1.0)
    for _ in range(10):
        never.step(0.0)
    assert not never.should_stop


def test_splits_are_by_case_disjoint_and_reproducible():
    ids = [f"c{i}" for i in range(20)]
    tr, va, te = three_way_split(ids, 0.2, 0.3, seed=3)
    assert set(tr) | set(va) | set(te) == set(ids)
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    assert (len(tr), len(va), len(te)) == (10, 4, 6)
    assert (tr, va, te) == three_way_split(ids, 0.2, 0.3, seed=3)
    assert split_cases(["a"], 0.5, 0) == (["a"], [])


def test_cosine_schedule_warms_up_and_decays():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = FinetuneConfig(data="d", output="o.pt", warmup_fraction=0.1)
    sched = make_scheduler(opt, cfg, 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[9] <= 1.0 and lrs[-1] < 0.01
    assert max(lrs) == pytest.approx(1.0, abs=0.02)


def test_config_validation_and_round_trip(tmp_path):
    with pytest.raises(InputError, match="unknown mode"):
        FinetuneConfig(data="d", output="o.pt", mode="bogus")
    with pytest.raises(InputError, match="cannot be simulated"):
        FinetuneConfig(data="d", output="o.pt", prompt="clicks5")
    with pytest.raises(PromptError):
        FinetuneConfig(data="d", output="o.pt", prompt="nonsense")
    with pytest.raises(InputError, match="unknown configuration keys: colour"):
        FinetuneConfig.from_dict({"data": "d", "output": "o", "colour": 1})
    cfg = FinetuneConfig(data="d", output="o.pt", mode="lora", lr=3e-4)
    path = cfg.save(tmp_path / "c.json")
    assert FinetuneConfig.from_dict(json.loads(path.read_text())) == cfg
    ypath = cfg.save(tmp_path / "c.yaml")
    assert FinetuneConfig.from_dict(FinetuneConfig.read_overlay(ypath)) == cfg


def test_simulated_prompts_are_on_the_model_grid_and_seeded():
    mask = np.zeros((100, 200), bool)
    mask[20:40, 50:90] = True
    t = InputTransform.for_image(100, 200, 256, "longest")  # scale 1.28
    a = simulate_prompts([mask], t, parse_strategies("box"), np.random.default_rng(0))
    assert torch.allclose(a["boxes"], torch.tensor([[50, 20, 90, 40]]) * 1.28)
    assert a["points"] is None
    p = simulate_prompts([mask, mask], t, parse_strategies("points2"), np.random.default_rng(1))
    assert p["points"].shape == (2, 3, 2) and p["point_labels"][:, -1].tolist() == [-1, -1]
    q = simulate_prompts([mask, mask], t, parse_strategies("points2"), np.random.default_rng(1))
    assert torch.equal(p["points"], q["points"])
    j = simulate_prompts([mask], t, parse_strategies("box-jitter20"), np.random.default_rng(2))
    assert not torch.allclose(j["boxes"], a["boxes"])


def test_cosine_schedule_follows_the_time_budget_when_it_runs_out_first():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = FinetuneConfig(data="d", output="o.pt", warmup_fraction=0.0, time_limit_min=1.0)
    now = [500.0]  # loading and the embedding pass took longer than the whole budget
    timer = TrainClock(lambda: now[0])
    sched = make_scheduler(opt, cfg, 1000, timer)
    assert sched.get_last_lr()[0] == pytest.approx(1.0)  # the first step runs at the peak
    timer.start()
    lrs = []
    for t in (0.0, 30.0, 59.0, 60.0, 120.0):  # seconds into a 60 s budget, 5 of 1000 steps
        now[0] = 500.0 + t
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1.0, abs=0.01)
    assert lrs[1] == pytest.approx(0.5, abs=0.01)
    assert lrs[2] < 0.01 and lrs[3] == lrs[4] == 0.0
    assert timer.over(1.0) and not timer.over(None)
    plain = make_scheduler(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0), cfg, 1000)
    assert plain.get_last_lr()[0] == pytest.approx(1.0)  # no timer: step-based only


@pytest.mark.parametrize("changes, message", [
    ({"time_limit_min": float("nan")}, "time_limit_min must be a finite number"),
    ({"time_limit_min": float("inf")}, "time_limit_min must be a finite number of minutes"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"lr": -1.0}, "lr must be positive"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number"),
    ({"val_fraction": 1.5}, r"val_fraction must be in \[0, 1\), got 1.5"),
    ({"val_fraction": 0.6, "holdout_fraction": 0.5}, "leave no cases for training"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"max_cases": -1}, "max_cases must be >= 0"),
    ({"seed": -1}, "seed must be >= 0"),  # numpy's traceback, for API users too
    ({"patience": -1}, "patience must be >= 0"),  # trained anyway
    ({"max_slices": -1}, "max_slices must be >= 0"),
    ({"targets": "pixel"}, "targets must be label, component or instance, got 'pixel'"),
])
def test_config_refuses_non_finite_and_out_of_range_values(changes, message):
    with pytest.raises(InputError, match=message):
        FinetuneConfig(data="d", output="o.pt", **changes)


def test_shared_option_check_names_the_cli_flag():
    with pytest.raises(InputError, match=r"^--val-fraction must be in \[0, 1\)"):
        check_options({"val_fraction": 1.5, "holdout_fraction": 0.0}, option_flag)
    with pytest.raises(InputError, match="^--time-limit must be positive"):
        check_options({"time_limit_min": 0}, option_flag)
    check_options({"epochs": 1, "lr": 1e-3, "time_limit_min": None, "val_fraction": 0.0})


def test_saved_config_never_holds_nan(tmp_path):
    cfg = FinetuneConfig(data="d", output="o.pt", time_limit_min=2.5)
    text = cfg.save(tmp_path / "c.json").read_text()
    assert "NaN" not in text and json.loads(text)["time_limit_min"] == 2.5


def test_dice_of_present_leaves_out_classes_absent_in_truth_and_prediction():
    target = torch.zeros(4, 1, 8, 8)
    target[0, 0, :4, :4] = 1  # only class 0 is present
    empty = torch.full((4, 1, 8, 8), -1.0)  # predicts nothing
    assert dice_of_present(empty, target) == (0.0, 1)  # before: 3 absent classes scored 1 -> mean 0.75
    perfect = torch.where(target > 0, 1.0, -1.0)
    assert dice_of_present(perfect, target) == (1.0, 1)
    spurious = perfect.clone()
    spurious[2, 0, 6:, 6:] = 1.0  # a class predicted but absent in truth counts, with Dice 0
    assert dice_of_present(spurious, target) == (1.0, 2)


def test_a_resumed_schedule_starts_at_its_rate_for_the_longer_run():
    """The optimiser kept the rate a finished cosine ended with (0), so a resumed run's first step
    changed nothing; the rate is now the schedule's at the restored step, over the new length."""
    from medisam.train.trainer import _rate_at_restored_step

    cfg = FinetuneConfig(data="d", output="o.pt", warmup_fraction=0.0)
    weight = torch.nn.Parameter(torch.zeros(1))
    first = torch.optim.AdamW([weight], lr=cfg.lr)
    done = make_scheduler(first, cfg, total_steps=2)
    for _ in range(2):
        first.step()
        done.step()
    assert first.param_groups[0]["lr"] == 0.0  # the first run's cosine ran out
    again = torch.optim.AdamW([weight], lr=cfg.lr)
    longer = make_scheduler(again, cfg, total_steps=4)  # resumed with twice the epochs
    again.load_state_dict(first.state_dict())
    longer.load_state_dict(done.state_dict())
    _rate_at_restored_step(again, longer)
    assert again.param_groups[0]["lr"] == pytest.approx(cfg.lr * 0.5)  # half way through the longer cosine
