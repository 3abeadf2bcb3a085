"""The CVPR25 interactive-3D protocol on a SAM 2 model (tiny random weights): ``cvpr25`` and
``cvpr25-box3d`` run through the bench beside LiteMedSAM, the clicks as SAM 2 point prompts on the
clicked frame then its tracking again (the slice clicks); ``...-ref`` stays refused."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.bench.evaluate import CaseEvaluator, EvalSettings
from medisam.bench.runner import BenchConfig, DatasetSpec, run_benchmark
from medisam.errors import InputError, PromptError

pytest.importorskip("sam2")

SHAPE = (8, 48, 48)


def _labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:7, 8:24, 10:26] = 1
    lab[2:6, 28:40, 26:42] = 2
    return lab


def _toy_volume(root):
    """One small two-class volume (8 x 48 x 48) as an nnU-Net dataset."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    lab = _labels()
    vol = (lab * 100 + np.random.default_rng(1).normal(0, 5, lab.shape)).astype(np.float32)
    for arr, path in ((vol, root / "imagesTr" / "c0_0000.nii.gz"), (lab, root / "labelsTr" / "c0.nii.gz")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(img, str(path))
    return root


def _image():
    from medisam.io.medical_image import MedicalImage

    lab = _labels()
    vol = (lab * 100 + np.random.default_rng(0).normal(0, 5, lab.shape)).astype(np.float32)
    return MedicalImage(vol, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), "MR"), lab


@pytest.mark.parametrize("strategy", ["cvpr25", "cvpr25-box3d"])
def test_a_sam2_model_runs_the_protocol_beside_litemedsam(tmp_path, sam2_tiny, tiny_model, strategy):
    """Both models get the start and the 5 click steps, finite scores and the clicks given; refused before."""
    data = _toy_volume(tmp_path / "toy3d")
    models = ("litemedsam-tiny", "sam2-tiny")
    settings = EvalSettings(models=models, strategies=(strategy,))
    evaluator = CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model, "sam2-tiny": sam2_tiny})
    out = tmp_path / "out"
    run_benchmark(BenchConfig(datasets=(DatasetSpec(str(data)),), settings=settings, outdir=str(out), report=False),
                  evaluator=evaluator, progress=False)
    assert not (out / "errors.csv").exists() or len((out / "errors.csv").read_text().splitlines()) <= 1
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for model in models:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: int(r["click"]))
        assert [int(r["click"]) for r in mine] == [0, 1, 2, 3, 4, 5], model
        assert {r["strategy"] for r in mine} == {strategy}
        for r in mine:
            assert 0.0 <= float(r["dsc"]) <= 1.0 and np.isfinite(float(r["nsd"])) and float(r["time_s"]) >= 0
            assert set(json.loads(r["per_class"])) == {"1", "2"}
        assert set(json.loads(mine[0]["prompt"])["prompts"]) == {"1", "2"}
        clicks = [json.loads(r["prompt"])["prompts"] for r in mine[1:]]  # none for a class already right
        assert all(set(c) <= {"1", "2"} and all(set(v) == {"zyx", "fg"} for v in c.values()) for c in clicks)
        assert clicks[0], model  # neither model is right at the start


def test_a_sam2_click_is_one_undo_step_and_a_rejected_one_changes_nothing(sam2_tiny):
    """A click a SAM 2 session cannot honour (outside the 3D box that clips it) is rolled back, its label
    map tracked again as it was; one it honours (a background click off the object) is ONE undo step."""
    from medisam.predict import open_session
    from medisam.predict.refine3d import refine_with_click
    from medisam.prompts import Box3D

    image, lab = _image()
    session = open_session(sam2_tiny, image)
    session.add_box3d(Box3D(10, 8, 1, 25, 23, 6), obj_id=1)
    session.propagate(progress=False)
    start, depth = session.label_map().array.copy(), session.can_undo
    out = refine_with_click(session, (3, 30, 40), True, obj_id=1)
    assert out.rejected and out.undo_steps == 0 and session.can_undo == depth
    np.testing.assert_array_equal(session.label_map().array, start)  # the tracked slices are back
    out = refine_with_click(session, (3, 2, 2), False, obj_id=1)
    assert not out.rejected and out.undo_steps == 1 and session.can_undo == depth + 1
    assert out.decoded > 1 and sorted(session.results(1)) == list(range(1, 7))  # tracked again from the click
    assert session.slice_prompts(3, 1).points.labels.tolist() == [0]  # beside the box the click's frame had
    session.undo()
    session.propagate(progress=False)
    np.testing.assert_array_equal(session.label_map().array, start)


def test_a_sam2_model_refuses_the_reference_run(sam2_tiny):
    """``...-ref`` compares the walker with the slice clicks: a SAM 2 model has the slice clicks only."""
    from types import SimpleNamespace

    from medisam.bench import cvpr25
    from medisam.bench.runner import check_models
    from medisam.prompting.strategies import parse_strategies

    check_models(["sam2-tiny"], parse_strategies("cvpr25,cvpr25-box3d,cvpr25-slice,cvpr25-box3d-slice"))
    with pytest.raises(InputError, match=r"not cvpr25-ref \(its clicks are the slice clicks already"):
        check_models(["sam2-tiny"], parse_strategies("cvpr25,cvpr25-ref"))
    image, lab = _image()
    case = SimpleNamespace(image=image, labels=SimpleNamespace(array=lab), case_id="c0", read_guides=lambda: ())
    with pytest.raises(PromptError, match="does not run cvpr25-ref"):
        cvpr25.evaluate_case(case, SimpleNamespace(model=sam2_tiny), "cvpr25-ref")


def test_a_sam2_case_session_runs_along_the_acquisition_axis_as_litemedsams(sam2_tiny, tiny_model):
    """A case acquired in sagittal slices (thick x spacing): both models' protocol sessions slice along x
    (axis 2), so SAM 2's frames are the acquired slices; an axial case stays on k."""
    from types import SimpleNamespace

    from medisam.bench.cvpr25 import case_session
    from medisam.io.medical_image import MedicalImage

    vol = np.random.default_rng(0).normal(0, 1, SHAPE).astype(np.float32)
    for spacing_xyz, axis in (((3.0, 1.0, 1.0), 2), ((1.0, 1.0, 3.0), 0)):
        image = MedicalImage(vol, spacing_xyz, (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), "MR")
        case = SimpleNamespace(image=image, read_guides=lambda: ())
        assert case_session(sam2_tiny, case).axis == axis
        assert case_session(tiny_model, case).axis == axis
