"""SAM 2 models in ``medisam bench``: refused before any work, in one line naming the model."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bench_datasets import make_2d_dataset  # noqa: E402

from medisam.cli import main  # noqa: E402


def test_a_sam2_model_is_refused_before_the_output_folder_is_made(tmp_path, capsys, monkeypatch):
    import medisam.models

    monkeypatch.setattr(medisam.models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    dataset = make_2d_dataset(tmp_path / "toy", n=1)
    out = tmp_path / "out"
    rc = main(["bench", str(dataset), "-o", str(out), "-m", "litemedsam-tiny,sam2-tiny", "-p", "box",
               "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: -m sam2-tiny:") and "SAM 2" in err[0] and "medisam propagate" in err[0]
    assert not out.exists()
