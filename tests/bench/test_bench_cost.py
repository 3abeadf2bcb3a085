"""The benchmark's cost line: 3D-box start encodings counted from the labels, checked against a session."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medisam.bench.cost import plan_line, planned_start, start_encodings
from medisam.bench.datasets import DatasetOptions, discover_cases
from medisam.io.medical_image import MedicalImage
from medisam.predict import PropagationConfig, VolumeSession
from medisam.prompts import Box3D

#: every planned plane is reached (empty random-model masks do not stop a run)
KEEP_GOING = PropagationConfig(min_area_px=0, extra_margins_mm=())


def _labels() -> np.ndarray:
    labels = np.zeros((14, 40, 44), np.uint8)
    labels[2:12, 5:30, 8:38] = 1
    labels[4:8, 10:20, 12:22] = 2  # nested: its planes are mostly the first class's too
    return labels


def test_start_encodings_are_what_a_session_encodes(tiny_model):
    labels = _labels()
    rng = np.random.default_rng(0)
    image = MedicalImage.from_array((labels * 60 + rng.normal(0, 5, labels.shape)).astype(np.float32),
                                    spacing=(1.0, 1.0, 1.5))
    session = VolumeSession(tiny_model, image, config=KEEP_GOING)
    for c in (1, 2):  # the bench's start: a 3D box per class, all in one session (one cache)
        zz, yy, xx = np.nonzero(labels == c)
        session.add_box3d(Box3D(xx.min(), yy.min(), zz.min(), xx.max(), yy.max(), zz.max()), obj_id=c)
    session.propagate(progress=False)
    counted = start_encodings(labels, image.spacing_zyx, KEEP_GOING, tiny_model.spec.input_size)
    assert counted == len(session.encoded_planes)
    # one class alone costs less than both; an empty label volume costs nothing
    alone = start_encodings(np.where(labels == 2, 2, 0), image.spacing_zyx, KEEP_GOING, tiny_model.spec.input_size)
    assert 0 < alone < counted
    assert start_encodings(np.zeros_like(labels), image.spacing_zyx) == 0


def test_box_windows_of_a_ct_encode_each_box_apart_and_the_count_says_so(tiny_model, tmp_path):
    labels = _labels()
    rng = np.random.default_rng(0)
    hu = np.where(labels == 1, 40.0, np.where(labels == 2, 300.0, -900.0)) + rng.normal(0, 20, labels.shape)
    image = MedicalImage.from_array(hu.astype(np.float32), spacing=(1.0, 1.0, 1.5), modality="CT")
    session = VolumeSession(tiny_model, image, config=KEEP_GOING)
    assert session.box_windows
    for c in (1, 2):
        zz, yy, xx = np.nonzero(labels == c)
        session.add_box3d(Box3D(xx.min(), yy.min(), zz.min(), xx.max(), yy.max(), zz.max()), obj_id=c)
    session.propagate(progress=False)
    apart = start_encodings(labels, image.spacing_zyx, KEEP_GOING, tiny_model.spec.input_size, shared=False)
    assert session.predictor.cache.misses == apart > start_encodings(labels, image.spacing_zyx, KEEP_GOING,
                                                                       tiny_model.spec.input_size)
    # the bench's line counts them apart for a CT in HU without --window, shared with one
    root = tmp_path / "ct3d"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for arr, path in ((hu.astype(np.float32), root / "imagesTr" / "c0_0000.nii.gz"),
                      (labels, root / "labelsTr" / "c0.nii.gz")):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((1.0, 1.0, 1.5))
        sitk.WriteImage(img, str(path))
    refs = discover_cases(str(root), DatasetOptions())
    assert f"encode at most {start_encodings(labels, (1.5, 1.0, 1.0), shared=False)} planes" in plan_line(
        refs, ["litemedsam"], ["cvpr25-box3d"])
    assert f"encode at most {start_encodings(labels, (1.5, 1.0, 1.0))} planes" in plan_line(
        refs, ["litemedsam"], ["cvpr25-box3d"], window="soft_tissue")


def test_plan_line_counts_runs_and_the_3d_starts(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("MEDISAM_CACHE", str(tmp_path / "cache"))  # a measured profile: 1000 ms per encoding
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "speed_profile.json").write_text(json.dumps(
        {"auto": {"backend": "openvino", "precision": "fp32"},
         "measured": {"openvino-fp32": {"encoder_ms": 1000.0, "accepted": True}}}))
    root = tmp_path / "toy3d"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(3):
        for arr, path in ((_labels().astype(np.float32), root / "imagesTr" / f"c{i}_0000.nii.gz"),
                          (_labels(), root / "labelsTr" / f"c{i}.nii.gz")):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((1.0, 1.0, 1.5))
            sitk.WriteImage(img, str(path))
    refs = discover_cases(str(root), DatasetOptions())
    per_case = start_encodings(_labels(), (1.5, 1.0, 1.0))
    assert 3 * per_case < 120  # said in seconds below
    line = plan_line(refs, ["litemedsam"], ["cvpr25-box3d", "box"])
    assert line == (f"bench plan: 3 cases x 1 model x 2 strategies; the 3D-box starts of cvpr25-box3d encode at most "
                    f"{3 * per_case} planes, about {3 * per_case} s at 1000 ms per encoding: encoding alone, "
                    "decoding and loading add to it (from the label boxes of 3 cases, the planner's arithmetic)")
    assert plan_line(refs, ["litemedsam"], ["box"]) == "bench plan: 3 cases x 1 model x 1 strategy"
    # everything mode's crop layers multiply the encodings per image (1 + 4 + 16): said before the work
    assert plan_line(refs, ["litemedsam", "medsam-vit-b@x.pth"], ["everything8-crops2", "everything8"]) == (
        "bench plan: 3 cases x 2 models x 2 strategies; everything8-crops2 encodes 21 crops per image "
        "(up to 126 encodings, not 6)")
    # calibrated on 1 thread; 2 worker processes of 1 thread each on 2 CPUs share the encodings
    profile = json.loads((tmp_path / "cache" / "speed_profile.json").read_text())
    (tmp_path / "cache" / "speed_profile.json").write_text(json.dumps({**profile, "threads": 1}))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    two = plan_line(refs, ["litemedsam"], ["cvpr25-box3d"], workers=2)
    assert f"about {round(3 * per_case / 2)} s in 2 processes at 1000 ms per encoding: encoding alone" in two
    # another architecture: its encoder was not measured, so the line gives encodings, not time
    assert plan_line(refs, ["medsam-vit-b@x.pth"], ["box3d"]).endswith(
        f"box3d encode at most {3 * per_case} planes (from the label boxes of 3 cases, the planner's arithmetic)")
    assert planned_start("box3d", "label") and not planned_start("box3d", "component")
    assert planned_start("cvpr25-ref", None) and not planned_start("keyslice", None)


def test_bench_prints_its_plan_before_the_work(tmp_path, tiny_model, capsys):
    from medisam.bench.evaluate import CaseEvaluator, EvalSettings
    from medisam.bench.runner import BenchConfig, DatasetSpec, run_benchmark

    root = tmp_path / "toy3d"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for arr, path in ((_labels().astype(np.float32), root / "imagesTr" / "c0_0000.nii.gz"),
                      (_labels(), root / "labelsTr" / "c0.nii.gz")):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    settings = EvalSettings(models=("litemedsam-tiny",), strategies=("box3d",))
    config = BenchConfig(datasets=(DatasetSpec(str(root)),), settings=settings, outdir=str(tmp_path / "out"))
    run_benchmark(config, evaluator=CaseEvaluator(settings, models={"litemedsam-tiny": tiny_model}))
    err = capsys.readouterr().err
    expected = start_encodings(_labels(), (1.0, 1.0, 1.0))
    assert (f"bench plan: 1 case x 1 model x 1 strategy; the 3D-box starts of box3d encode at most {expected} planes"
            in err)
    assert err.index("bench plan:") < err.index("bench:")  # before the progress bar


def test_plan_line_counts_challenge_npz_cases_whose_labels_are_inside_the_file(tmp_path):
    # the CVPR challenge's own format: no label file, ``gts`` beside ``imgs`` (before: no count at all)
    root = tmp_path / "npz"
    root.mkdir()
    spacing = np.array([1.0, 1.0, 1.5])  # ITK (x, y, z), as the challenge's preprocessing stores it
    np.savez_compressed(root / "MR_Toy_001.npz", imgs=(_labels() * 40).astype(np.uint8), gts=_labels(),
                        spacing=spacing)
    ct = np.where(_labels() > 0, 40.0, -1000.0).astype(np.int16)  # HU: each box gets its own window
    np.savez_compressed(root / "CT_Toy_002.npz", imgs=ct, gts=_labels(), spacing=spacing)
    refs = discover_cases(str(root), DatasetOptions())
    assert all(r.npz and r.label_path is None for r in refs)
    union, apart = (start_encodings(_labels(), (1.5, 1.0, 1.0), shared=s) for s in (True, False))
    assert apart > union
    line = plan_line(refs, ["medsam-vit-b@x.pth"], ["cvpr25-box3d"])
    assert line.endswith(f"encode at most {union + apart} planes (from the label boxes of 2 cases, the planner's "
                         "arithmetic)")
    windowed = plan_line(refs, ["medsam-vit-b@x.pth"], ["cvpr25-box3d"], window="soft_tissue")
    assert f"encode at most {2 * union} planes" in windowed
