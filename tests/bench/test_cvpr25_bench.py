"""The cvpr25 strategies end to end through ``medisam bench`` (tiny random model)."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.bench.evaluate import CaseEvaluator, EvalSettings
from medisam.bench.runner import BenchConfig, DatasetSpec, run_benchmark
from medisam.prompting.strategies import parse_strategies


def _toy_volumes(root, n=1, spacing=(1.0, 1.0, 2.0)):
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
            img.SetSpacing(spacing)
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
    for r in rows:  # every label's scores, whose means are the row's
        per_class = json.loads(r["per_class"])
        assert set(per_class) == {"1", "2"} and [v["voxels"] for v in per_class.values()] == [3 * 8 * 9, 3 * 6 * 8]
        assert np.mean([v["dsc"] for v in per_class.values()]) == pytest.approx(float(r["dsc"]), abs=1e-5)
        assert np.mean([v["nsd"] for v in per_class.values()]) == pytest.approx(float(r["nsd"]), abs=1e-5)
    # HD95 (mm) at the final step only, per class on the protocol's crops; the row holds their mean
    assert all(np.isnan(float(r["hd95"])) for r in rows[:-1])
    final = json.loads(rows[-1]["per_class"])
    assert all("hd95" not in v for r in rows[:-1] for v in json.loads(r["per_class"]).values())
    per_hd = [v["hd95"] for v in final.values()]
    if all(np.isfinite(per_hd)):  # the row holds their mean; NaN where a class was left empty
        assert all(h >= 0 for h in per_hd) and float(rows[-1]["hd95"]) == pytest.approx(np.mean(per_hd), abs=1e-3)
    else:
        assert np.isnan(float(rows[-1]["hd95"]))
    report = (out / "report.md").read_text()
    assert "CVPR25 interactive 3D" in report and "dsc_auc" in report and "hd95_final" in report
    assert "CVPR25 interactive 3D per class" in report and "| label2 |" in report
    assert (out / "dice_vs_clicks.png").exists() and (out / "dice_vs_clicks_per_class.png").stat().st_size > 0


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
    # c1 not run yet, c0's rows from a version that wrote no per_class column
    kept = [{k: v for k, v in r.items() if k != "per_class"} for r in rows if r["case"] != "c1"]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(kept[0]))
        w.writeheader()
        w.writerows(kept)
    run(resume=True)
    with open(out / "results.csv", newline="") as fh:
        again = list(csv.DictReader(fh))
    keys = [(r["case"], r["strategy"], r["click"]) for r in again]
    assert len(keys) == len(set(keys)) == len(rows)  # c1 ran again, c0 did not run twice
    assert all(r["per_class"] == "" for r in again if r["case"] == "c0")
    assert all(json.loads(r["per_class"]) for r in again if r["case"] == "c1")
    from medisam.bench.report import write_report

    write_report(out)  # the per-class table from the rows that have the column
    report = (out / "report.md").read_text()
    assert "CVPR25 interactive 3D per class" in report and "| label2 |" in report


def test_class_table_averages_each_class_over_the_cases_holding_it():
    import pandas as pd

    from medisam.bench.cvpr25 import class_curve, class_table

    def rows(case, scores):  # scores: {class: [dsc at steps 0..5]}
        return [{"dataset": "d", "model": "m", "strategy": "cvpr25-box3d", "case": case, "click": k,
                 "per_class": json.dumps({str(c): {"name": f"n{c}", "voxels": 10 * c, "dsc": v[k], "nsd": v[k] / 2}
                                          for c, v in scores.items()})} for k in range(6)]

    df = pd.DataFrame(rows("a", {1: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 2: [0.5] * 6})
                      + rows("b", {1: [1.0] * 6}) + [{"dataset": "d", "model": "m", "strategy": "cvpr25-box3d",
                                                      "case": "old", "click": 0, "per_class": float("nan")}])
    t = class_table(df).set_index("class")
    assert t.loc[1, "dsc0"] == pytest.approx(0.5) and t.loc[1, "dsc5"] == pytest.approx(1.0)
    assert t.loc[1, "dsc_auc"] == pytest.approx((2.4 + 4.0) / 2)  # trapezoid over steps 1..5: a 2.4, b 4.0
    assert t.loc[1, "nsd_final"] == pytest.approx(0.5) and t.loc[1, "cases"] == 2 and t.loc[1, "name"] == "n1"
    assert t.loc[2, "cases"] == 1 and t.loc[2, "dsc5"] == pytest.approx(0.5) and t.loc[2, "voxels_median"] == 20
    assert class_table(df.drop(columns="per_class")) is None  # results written before the column
    curve = class_curve(df).set_index(["label", "click"])
    assert curve.loc[("d cvpr25-box3d 1 n1", 2), "dsc_mean"] == pytest.approx(0.7)  # (0.4 + 1.0) / 2
    assert curve.loc[("d cvpr25-box3d 2 n2", 5), "n"] == 1


def test_protocol_runs_on_every_edge_volume(tmp_path, tiny_model):
    """The protocol on ``benchmarks/edge_volumes.py``'s cases: a one-voxel object, a one-slice object
    on the volume's border, labels with a gap, 5 mm slices, a constant image, two slices."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from edge_volumes import write_cases

    ids = write_cases(tmp_path / "edge")
    settings = EvalSettings(models=("litemedsam-tiny",), strategies=("cvpr25-box3d",))
    evaluator = CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model})
    out = tmp_path / "out"
    run_benchmark(BenchConfig(datasets=(DatasetSpec(str(tmp_path / "edge")),), settings=settings, outdir=str(out)),
                  evaluator=evaluator, progress=False)
    with open(out / "errors.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == []
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({r["case"] for r in rows}) == ids
    for case in ids:
        steps = [r for r in rows if r["case"] == case]
        assert [int(r["click"]) for r in steps] == [0, 1, 2, 3, 4, 5]
        assert all(0.0 <= float(r["dsc"]) <= 1.0 for r in steps)
    classes = json.loads(next(r for r in rows if r["case"] == "edge_a")["per_class"])
    assert set(classes) == {"1", "2", "5"}


def test_a_sagittal_case_runs_along_its_acquisition_axis(tmp_path, tiny_model, made_sessions):
    """The protocol's session slices a volume along its thick axis (square pixels for the model),
    whichever array axis holds it; the bench's plan line counts that axis's planes."""
    from medisam.bench.cost import start_encodings
    from medisam.bench.datasets import discover_cases

    settings = EvalSettings(models=("litemedsam-tiny",), strategies=("cvpr25-box3d",))
    evaluator = CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model})
    for name, spacing, axis in (("axial", (1.0, 1.0, 2.0), 0), ("sagittal", (2.0, 1.0, 1.0), 2)):
        root = _toy_volumes(tmp_path / name, spacing=spacing)
        out = tmp_path / f"{name}_out"
        run_benchmark(BenchConfig(datasets=(DatasetSpec(str(root)),), settings=settings, outdir=str(out)),
                      evaluator=evaluator, progress=False)
        with open(out / "results.csv", newline="") as fh:
            assert len(list(csv.DictReader(fh))) == 6
        assert made_sessions.pop()["axis"] == axis
        labels = discover_cases(root)[0].load().labels
        assert start_encodings(labels.array, labels.spacing_zyx) > 0


def test_class_hd95_is_in_mm_on_the_protocol_crops():
    from medisam.bench.cvpr25 import class_hd95

    truth = np.zeros((6, 30, 40), np.uint8)
    truth[1:5, 5:15, 5:15] = 1
    truth[1:5, 5:15, 25:35] = 2
    seg = np.zeros_like(truth)
    seg[1:5, 5:15, 8:18] = 1  # class 1 shifted 3 voxels along x
    # class 2 missing: NaN; spacing in ITK (x, y, z) order, x = 0.5 mm: 3 voxels = 1.5 mm
    hd = class_hd95(truth, seg, (0.5, 1.0, 2.0))
    assert hd[1] == pytest.approx(1.5) and np.isnan(hd[2])


def test_a_class_left_empty_makes_the_case_hd95_missing_and_counted():
    """A case that missed a class had the HD95 of the classes it found (as good as a case that found
    them all), and the tables averaged it in with no count of what was missing."""
    import pandas as pd

    from medisam.bench.cvpr25 import Step, class_table, protocol_table, step_rows

    truth = np.zeros((8, 32, 32), np.uint8)
    truth[2:6, 4:12, 4:12], truth[2:6, 18:28, 18:28] = 1, 2
    good = np.roll(truth, 1, axis=2)
    cases = {"found both": good, "missed 2": np.where(good == 2, 0, good), "missed all": np.zeros_like(truth)}
    case = SimpleNamespace(image=SimpleNamespace(spacing=(1.0, 1.0, 1.0)), targets=[])
    df = pd.DataFrame([{"dataset": "d", "model": "m", "case": cid, **r} for cid, final in cases.items()
                       for r in step_rows([Step(k, good if k < 5 else final, 0.0) for k in range(6)], truth, case,
                                          "cvpr25")])
    final = df[df["click"] == 5].set_index("case")["hd95"]
    assert final["found both"] == pytest.approx(1.0) and np.isnan(final["missed 2"]) and np.isnan(final["missed all"])
    p = protocol_table(df).iloc[0]
    assert p["hd95_final"] == pytest.approx(1.0) and p["hd95_nan"] == 2 and p["cases"] == 3
    c = class_table(df).set_index("class")
    assert c.loc[1, "hd95_nan"] == 1 and c.loc[2, "hd95_nan"] == 2 and c.loc[2, "hd95_final"] == pytest.approx(1.0)
