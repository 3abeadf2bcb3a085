"""No output may be an input, for every command that writes (checked in ``cli/checks.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medisam.cli import main


@pytest.fixture()
def dataset(tmp_path):
    """A 2D dataset folder (images/ + masks/) of two cases."""
    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(root / "images" / f"c{i}.png")
        lab = np.zeros((16, 16), np.uint8)
        lab[4:9, 4:9] = 1
        Image.fromarray(lab).save(root / "masks" / f"c{i}.png")
    return root


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_writing_command_refuses_its_inputs_as_outputs(tmp_path, png, nifti, dataset, capsys):
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"not really weights")
    prior = tmp_path / "prior.png"
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(prior)
    cases = [
        (["segment", png, "-o", png, "--box", "1,1,9,9", "--force"], "-o"),
        (["segment", png, "-o", tmp_path / "m.png", "--overlay", png, "--box", "1,1,9,9", "--force"], "--overlay"),
        (["segment", png, "-o", tmp_path / "m.png", "--overlay", tmp_path / "m.png", "--box", "1,1,9,9"],
         "same path"),
        (["segment", png, "-o", prior, "--mask", prior, "--force"], "is an input"),
        (["propagate", nifti, "-o", nifti, "--box3d", "1,1,1,5,5,3", "--force"], "-o"),
        (["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--overlay", tmp_path, "--box3d", "1,1,1,5,5,3",
          "--force"], "holds the input"),
        (["autosam", "predict", ckpt, png, "-o", png, "--force"], "-o"),
        (["autosam", "predict", ckpt, png, "-o", ckpt, "--force"], "-o"),
        (["autosam", "train", dataset, "-o", dataset / "auto.pt"], "inside the input folder"),
        (["samaug", png, "-o", tmp_path, "--force"], "holds the input"),
        (["bench", dataset, "-o", dataset, "--force"], "is an input"),
        (["export", "onnx", "-o", tmp_path, "--checkpoint", ckpt, "--force"], "holds the input"),
        (["finetune", dataset, "-o", dataset / "ft.pt", "--force"], "inside the input folder"),
        (["finetune", dataset, "-o", ckpt, "--checkpoint", ckpt, "--force"], "is an input"),
    ]
    before = _snapshot(tmp_path)
    for args, message in cases:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (args, err)
    assert _snapshot(tmp_path) == before  # nothing written, nothing overwritten


def test_an_output_below_a_file_is_one_line_before_the_model(tmp_path, png, nifti, capsys, monkeypatch):
    """``-o k1.png/x.png`` where k1.png is a file: found when writing, after the work, as
    ``[Errno 17] File exists`` with exit 1; now one line, exit 2, before the model loads."""
    import medisam.cli.common

    monkeypatch.setattr(medisam.cli.common, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    file = tmp_path / "k1.png"
    file.write_bytes(b"x")
    for args in (["segment", png, "--box", "1,1,9,9", "-o", file / "x.png"],
                 ["propagate", nifti, "--box3d", "1,1,1,5,5,3", "-o", file / "a" / "p.nii.gz"],
                 ["segment", png, "--box", "1,1,9,9", "-o", tmp_path / "m.png", "--overlay", file / "o.png"]):
        assert main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert f"{file} is a file, not a folder" in err and err.count("\n") == 1, err
