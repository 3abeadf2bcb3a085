"""End-to-end benchmark runs in process with the tiny random-weight model."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_datasets import make_2d_dataset  # noqa: E402

from medisam.bench.evaluate import RESULT_COLUMNS, CaseEvaluator, EvalSettings  # noqa: E402
from medisam.bench.runner import BenchConfig, DatasetSpec, run_benchmark  # noqa: E402
from medisam.errors import OutputExistsError  # noqa: E402

STRATEGIES = ("box", "box-jitter10", "clicks2")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def evaluator(tiny_model):
    settings = EvalSettings(models=("litemedsam-tiny",), strategies=STRATEGIES, seed=3)
    return CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model})


@pytest.fixture()
def dataset(tmp_path):
    return make_2d_dataset(tmp_path / "toy", n=3, bad=(2,))  # case2 has no mask


def _config(dataset, out, evaluator, **kw):
    return BenchConfig(datasets=(DatasetSpec(str(dataset)),), settings=evaluator.settings, outdir=str(out), **kw)


def test_run_resume_errors_and_report(dataset, tmp_path, evaluator):
    out = tmp_path / "out"
    summary = run_benchmark(_config(dataset, out, evaluator), evaluator, progress=False)
    rows = _rows(out / "results.csv")
    assert list(rows[0]) == RESULT_COLUMNS
    # 2 good cases x 2 targets x (2 one-shot strategies + 2 clicks)
    assert summary.rows == len(rows) == 2 * 2 * 4
    assert {r["strategy"] for r in rows} == set(STRATEGIES)
    assert sorted({r["click"] for r in rows if r["strategy"] == "clicks2"}) == ["1", "2"]
    assert all(0 <= float(r["dsc"]) <= 1 and r["seed"] == "3" for r in rows)
    errors = _rows(out / "errors.csv")
    assert [(e["case"], e["error"]) for e in errors] == [("case2", "InputError")]
    assert "no mask file" in errors[0]["message"]
    for name in ("report.md", "report.html", "summary.csv", "config.json", "dice_by_modality.png",
                 "dice_vs_clicks.png", "jitter_sensitivity.png"):
        assert (out / name).stat().st_size > 0, name
    assert "Dice versus clicks" in (out / "report.md").read_text()

    with pytest.raises(OutputExistsError):
        run_benchmark(_config(dataset, out, evaluator), evaluator, progress=False)

    # resume: drop one case's rows; only that case (and the failing one) run again
    kept = [r for r in rows if r["case"] != "case1"]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        w.writeheader()
        w.writerows(kept)
    calls = []
    original = evaluator.evaluate
    evaluator.evaluate = lambda ref, skip=frozenset(): calls.append(ref.case_id) or original(ref, skip)
    try:
        summary = run_benchmark(_config(dataset, out, evaluator, resume=True), evaluator, progress=False)
    finally:
        del evaluator.evaluate
    assert sorted(calls) == ["case1", "case2"] and summary.skipped == 1
    again = _rows(out / "results.csv")
    drop = ("time_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows]  # same prompts, same masks


def test_cli_bench(dataset, tmp_path, tiny_model):
    from medisam.cli import main

    out = tmp_path / "cli"
    args = ["bench", str(dataset), "-o", str(out), "--model", "litemedsam-tiny", "--prompts", "box",
            "--max-cases", "1", "--modality", "US", "--no-report"]
    assert main(args) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 2 and {r["modality"] for r in rows} == {"US"}
    assert main(args) == 2                      # exists, no --resume/--force
    assert main(args + ["--resume"]) == 0       # nothing left to do
    assert len(_rows(out / "results.csv")) == 2
    assert main(["bench", str(out / "nowhere"), "-o", str(tmp_path / "x")]) == 2
    assert main(["bench", "--report-only", "-o", str(out)]) == 0
    assert (out / "report.md").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_parallel_backends_give_the_same_rows(dataset, tmp_path, evaluator, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    import torch

    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # as each of the 2 workers: same float sums
    # A freshly loaded model, as in the workers (the session's shared tiny model may have been
    # touched by earlier tests), and a fresh embedding cache.
    fresh = CaseEvaluator(evaluator.settings)
    try:
        run_benchmark(_config(dataset, serial, evaluator, report=False), fresh, progress=False)
    finally:
        torch.set_num_threads(threads)
    run_benchmark(_config(dataset, parallel, evaluator, report=False, workers=2, backend=backend), progress=False)
    # Same rows, same prompts, same metric values; only the timings differ.
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "time_s"} for r in rows),  # noqa: E731
                                key=lambda r: tuple(r.values()))
    assert strip(_rows(parallel / "results.csv")) == strip(_rows(serial / "results.csv"))
    assert len(_rows(parallel / "errors.csv")) == 1


def test_a_rerun_with_force_keeps_no_plot_of_the_earlier_run(dataset, tmp_path, evaluator, tiny_model):
    out = tmp_path / "out"
    run_benchmark(_config(dataset, out, evaluator), evaluator, progress=False)
    assert (out / "dice_vs_clicks.png").is_file() and (out / "jitter_sensitivity.png").is_file()
    box_only = CaseEvaluator(EvalSettings(models=("litemedsam-tiny",), strategies=("box",), seed=3),
                             models={"litemedsam-tiny": tiny_model})
    run_benchmark(_config(dataset, out, box_only, force=True), box_only, progress=False)
    assert (out / "dice_by_modality.png").is_file()
    assert not (out / "dice_vs_clicks.png").exists() and not (out / "jitter_sensitivity.png").exists()


def test_a_resumed_run_keeps_the_settings_of_the_earlier_ones(dataset, tmp_path, evaluator, tiny_model):
    import json

    out = tmp_path / "out"
    box_only = CaseEvaluator(EvalSettings(models=("litemedsam-tiny",), strategies=("box",), seed=3),
                             models={"litemedsam-tiny": tiny_model})
    run_benchmark(_config(dataset, out, box_only), box_only, progress=False)
    run_benchmark(_config(dataset, out, evaluator, resume=True), evaluator, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["strategies"] == list(STRATEGIES)
    assert [run["settings"]["strategies"] for run in config["earlier_runs"]] == [["box"]]


def test_bad_outputs_and_models_leave_nothing_behind(dataset, tmp_path, tiny_model):
    from medisam.cli import main

    a_file = tmp_path / "afile"
    a_file.write_text("keep")
    base = ["bench", str(dataset), "--prompts", "box", "--max-cases", "1", "--no-report"]
    assert main(base + ["-o", str(a_file), "--model", "litemedsam-tiny"]) == 2
    assert a_file.read_text() == "keep"
    out = tmp_path / "t7"
    assert main(base + ["-o", str(out), "--model", f"litemedsam-tiny@{tmp_path / 'missing.pt'}"]) == 2
    assert not out.exists()
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(b"PK\x03\x04" + b"0" * 64)
    assert main(base + ["-o", str(out), "--model", f"litemedsam-tiny@{truncated}"]) == 2
    assert not out.exists()  # the folder this run made is gone with its config.json


def test_a_model_without_its_default_weights_is_refused_before_any_work(dataset, tmp_path, capsys, monkeypatch):
    """``-m litemedsam,medsam2`` with no MedSAM2 file in $MEDISAM_WEIGHTS: one line before the plan, the
    output folder and the first model's cases (it failed 31 s in, after LiteMedSAM had run)."""
    from medisam.cli import main

    monkeypatch.setenv("MEDISAM_WEIGHTS", str(tmp_path / "no_weights"))
    out = tmp_path / "out"
    code = main(["bench", str(dataset), "-m", "litemedsam-tiny,medsam2", "-p", "box", "-o", str(out), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "-m medsam2: no weights for 'medsam2'" in err and str(tmp_path / "no_weights") in err
    assert "cases" not in err.lower().split("no weights")[0]  # refused before the plan line


def test_the_report_sets_models_side_by_side_on_the_targets_they_share(tmp_path):
    """Several models were stacked row under row, each over its own targets, and named by the
    checkpoint's whole path. Now one table holds each model's DSC on the targets every model
    scored and the paired difference to the first model given (the reference), names shortened."""
    import pandas as pd

    from medisam.bench.report import write_report

    rows = []
    for model, dscs in (("sam-vit-b@/x/y/sam_vit_b.pth", [0.5, 0.6, None]), ("litemedsam", [0.8, 0.7, 0.9])):
        for case, dsc in zip(("a", "b", "c"), dscs):
            if dsc is not None:  # the first model failed case c: it is left out of the pairing
                rows.append({col: "" for col in RESULT_COLUMNS} | {
                    "dataset": "d", "modality": "OT", "case": case, "target": "label1", "target_id": "1",
                    "model": model, "strategy": "box", "seed": 0, "dsc": dsc, "nsd": dsc, "hd95": 1.0,
                    "time_s": 0.1})
    pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(tmp_path / "results.csv", index=False)
    write_report(tmp_path, {"settings": {"models": ["litemedsam", "sam-vit-b@/x/y/sam_vit_b.pth"]}})
    report = (tmp_path / "report.md").read_text().partition("## Configuration")[0]  # which keeps the path
    assert "/x/y/" not in report and "sam-vit-b@sam_vit_b.pth" in report
    assert ("| d | box | 2 | 0.750 | 0.550 | -0.200 ± 1.271 |" in report), report  # t(0.975, 1) = 12.71: 2 targets


@pytest.mark.parametrize("missing,args", [("monai.metrics", ["--no-report"]), ("pandas", [])])
def test_a_missing_bench_extra_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, missing, args):
    """Without ``[bench]`` every case was segmented, then became an error row (MONAI's surface metrics), and
    the run exited 0: "0 rows from 93 cases, 93 errors". The extra is checked first; no folder is made."""
    import medisam.models
    from medisam.cli import main

    monkeypatch.setitem(sys.modules, missing, None)  # import fails as when the package is absent
    monkeypatch.setattr(medisam.models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    dataset = make_2d_dataset(tmp_path / "toy", n=1)
    out = tmp_path / "out"
    rc = main(["bench", str(dataset), "-o", str(out), "-m", "litemedsam-tiny", "-p", "box", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install 'medisam[bench]'" in err[0] and missing in err[0], err
    assert not out.exists()


def test_the_command_lines_max_cases_wins_over_the_config_files(tmp_path, tiny_model):
    """docs/benchmark.md: later sources win, the command line last; a dataset entry's max_cases beat it."""
    from medisam.cli import main

    data = make_2d_dataset(tmp_path / "toy3", n=3)
    config = tmp_path / "bench.yaml"
    config.write_text(f"datasets:\n  - path: {data}\n    max_cases: 2\n")
    base = ["bench", "--config", str(config), "--model", "litemedsam-tiny", "-p", "box", "--no-report"]
    assert main(base + ["-o", str(tmp_path / "flag"), "--max-cases", "1"]) == 0
    assert {r["case"] for r in _rows(tmp_path / "flag" / "results.csv")} == {"case0"}
    assert main(base + ["-o", str(tmp_path / "file")]) == 0
    assert {r["case"] for r in _rows(tmp_path / "file" / "results.csv")} == {"case0", "case1"}


def test_dataset_option_bounds_hold_for_api_runs_too(dataset, tmp_path, evaluator):
    """The bounds the CLI audit added (max_targets 0 made every case an error row) are the runner's, not the CLI's."""
    from medisam.bench.datasets import DatasetOptions
    from medisam.errors import InputError

    spec = DatasetSpec(str(dataset), options=DatasetOptions(max_targets=0))
    config = BenchConfig(datasets=(spec,), settings=evaluator.settings, outdir=str(tmp_path / "o"))
    with pytest.raises(InputError, match=r"--max-targets \(max_targets\) of .* must be a whole number >= 1, got 0"):
        run_benchmark(config, evaluator=evaluator, progress=False)
    assert not (tmp_path / "o").exists()
