"""SAM 2 models in ``medisam bench``: the box, point and click strategies through sam2's image predictor,
the volume ones through its memory tracking, beside the other models; what it cannot run is refused in
one line before any work."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_datasets import make_2d_dataset  # noqa: E402

from medisam.cli import main  # noqa: E402


def test_a_sam2_model_is_benched_beside_the_others_on_the_same_prompts(tmp_path, sam2_tiny, capsys):
    """Every target of every case gets a row per strategy for both models, and the SAM 2 rows are what
    sam2's image predictor gives for that prompt on that image (the bench's wiring, not a copy of it)."""
    from medisam.bench.metrics import score
    from medisam.io import read_image
    from medisam.predict.sam2_image import Sam2ImagePredictor
    from medisam.prompting import sampling

    dataset = make_2d_dataset(tmp_path / "toy", n=2)
    out = tmp_path / "out"
    rc = main(["bench", str(dataset), "-o", str(out), "-m", "litemedsam-tiny,sam2-tiny", "-p", "box,point,clicks2",
               "--no-report"])
    assert rc == 0, capsys.readouterr().err
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert not (out / "errors.csv").exists() or len((out / "errors.csv").read_text().splitlines()) <= 1
    sam2_rows = [r for r in rows if r["model"] == "sam2-tiny"]
    keys = {(r["case"], r["target_id"], r["strategy"], r["click"]) for r in sam2_rows}
    assert keys == {(r["case"], r["target_id"], r["strategy"], r["click"]) for r in rows
                    if r["model"] == "litemedsam-tiny"}
    assert len(keys) == 2 * 2 * (1 + 1 + 2)  # cases x labels x (box, point, clicks 1 and 2)
    predictor = Sam2ImagePredictor(sam2_tiny)
    for r in (r for r in sam2_rows if r["strategy"] == "box"):
        image = read_image(dataset / "images" / f"{r['case']}.png")
        truth = np.asarray(read_image(dataset / "masks" / f"{r['case']}.png").array) == int(r["label"])
        predictor.set_image(image)
        mask = predictor.predict_batch([sampling.tight_box(truth)]).masks[0]
        assert float(r["dsc"]) == pytest.approx(score(mask, truth, image.spacing).dsc, abs=1e-5)


def test_a_sam2_volume_strategy_tracks_with_its_memory(sam2_tiny, moving_disk):
    """box3d, keyslice and recist on a SAM 2 model run its Sam2Session (a 3D box, a key-slice box, a RECIST
    line's box), the result on the volume's grid; box3d gives the session's own masks."""
    from medisam.io.medical_image import MedicalImage
    from medisam.predict.sam2_image import Sam2ImagePredictor
    from medisam.predict.sam2_session import Sam2Session
    from medisam.prompting.volume import VOLUME_STRATEGIES, volume_box3d

    volume, truth = moving_disk
    image = MedicalImage(volume, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "MR")
    predictor = Sam2ImagePredictor(sam2_tiny)
    for name, strategy in VOLUME_STRATEGIES.items():
        [outcome] = strategy().run_volume(predictor, image, truth, np.random.default_rng(0))
        assert outcome.mask.shape == truth.shape and outcome.mask.dtype == bool, name
    [outcome] = VOLUME_STRATEGIES["box3d"]().run_volume(predictor, image, truth, np.random.default_rng(0))
    session = Sam2Session(sam2_tiny, image)
    session.add_box3d(volume_box3d(truth), obj_id=1)
    np.testing.assert_array_equal(outcome.mask, session.propagate(progress=False).array == 1)


@pytest.mark.parametrize("strategy", ["everything", "cvpr25-ref", "point-box"])
def test_what_a_sam2_model_cannot_run_is_refused_before_the_output_folder_is_made(tmp_path, capsys, monkeypatch,
                                                                                   strategy):
    import medisam.models

    monkeypatch.setattr(medisam.models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    dataset = make_2d_dataset(tmp_path / "toy", n=1)
    out = tmp_path / "out"
    rc = main(["bench", str(dataset), "-o", str(out), "-m", "litemedsam-tiny,sam2-tiny", "-p", f"box,{strategy}",
               "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: -m sam2-tiny:") and "SAM 2" in err[0] and f"not {strategy}" in err[0]
    assert not out.exists()
