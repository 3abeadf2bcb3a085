"""The cvpr25 strategies end to end through ``medisam bench`` (tiny random model)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.bench.evaluate import CaseEvaluator, EvalSettings
from medisam.bench.runner import BenchConfig, DatasetSpec, run_benchmark
from medisam.prompting.strategies import parse_strategies


def _toy_volumes(root, n=1):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        lab = np.zeros((5, 24, 28), np.uint8)
        lab[1:4, 4:12, 5:14] = 1
        lab[2:5, 14:20, 16:24] = 2
        vol = (lab * 100 + rng.normal(0, 5, lab.shape)).astype(np.float32)
        for arr, path in ((vol, root / "imagesTr" / f"c{i}_0000.nii.gz"), (lab, root / "labelsTr" / f"c{i}.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(img, str(path))
    return root


def test_strategy_names_parse():
    assert [s.name for s in parse_strategies("cvpr25,CVPR25-box3d")] == ["cvpr25", "cvpr25-box3d"]
    assert all(getattr(s, "per_case", False) for s in parse_strategies("cvpr25,cvpr25-box3d"))


@pytest.mark.parametrize("strategy", ["cvpr25", "cvpr25-box3d"])
def test_protocol_rows_and_report(tmp_path, tiny_model, strategy):
    data = _toy_volumes(tmp_path / "toy3d")
    settings = EvalSettings(models=("litemedsam-tiny",), strategies=(strategy,))
    evaluator = CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model})
    out = tmp_path / "out"
    summary = run_benchmark(BenchConfig(datasets=(DatasetSpec(str(data)),), settings=settings, outdir=str(out)),
                            evaluator=evaluator, progress=False)
    with open(out / "errors.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == []
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert summary.rows == 6 and [int(r["click"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    assert {r["target_id"] for r in rows} == {"all"}
    for r in rows:
        d, n = float(r["dsc"]), float(r["nsd"])
        assert 0.0 <= d <= 1.0 and 0.0 <= n <= 1.0
        if d <= 0.2:
            assert n == 0.0
    start = json.loads(rows[0]["prompt"])
    assert start["classes"] == 2 and set(start["prompts"]) == {"1", "2"}
    report = (out / "report.md").read_text()
    assert "CVPR25 interactive 3D" in report and "dsc_auc" in report
    assert (out / "dice_vs_clicks.png").exists()


def test_resume_skips_cases_a_reference_run_finished(tmp_path, tiny_model):
    """``-ref`` writes rows under two other names; ``--resume`` must still see the case as done."""
    data = _toy_volumes(tmp_path / "toy3d", n=2)
    settings = EvalSettings(models=("litemedsam-tiny",), strategies=("cvpr25-box3d-ref",))
    evaluator = CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model})
    out = tmp_path / "out"

    def run(**kw):
        # no report: test_protocol_rows_and_report covers it, this test is about which cases run
        return run_benchmark(BenchConfig(datasets=(DatasetSpec(str(data)),), settings=settings, outdir=str(out),
                                         report=False, **kw), evaluator=evaluator, progress=False)

    first = run()
    assert first.rows == 2 * 2 * 6  # 2 cases x (clicks + reference clicks) x 6 steps
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["strategy"] for r in rows} == {"cvpr25-box3d", "cvpr25-box3d-slice"}
    kept = [r for r in rows if r["case"] != "c1"]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    run(resume=True)
    with open(out / "results.csv", newline="") as fh:
        again = list(csv.DictReader(fh))
    keys = [(r["case"], r["strategy"], r["click"]) for r in again]
    assert len(keys) == len(set(keys)) == len(rows)  # c1 ran again, c0 did not run twice
