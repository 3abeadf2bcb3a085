"""Cheap checks come before the model: mistakes are reported without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

CHILD = """
import json, sys
from medisam.cli import main
out = []
for args in json.loads(sys.argv[1]):
    out.append([main(args), "torch" in sys.modules])
print(json.dumps(out))
"""


def test_mistakes_are_found_before_the_model_loads(tmp_path, png, nifti):
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        Image.fromarray(np.full((16, 16), 50 * t, np.uint8)).save(frames / f"{t:03d}.png")
    ckpt = tmp_path / "auto.pt"
    ckpt.write_bytes(b"x")
    m = str(tmp_path / "m.png")
    cases = [
        ["segment", png, "-o", tmp_path / "m.tif", "--box", "1,1,9,9"],                    # output format
        ["segment", png, "-o", m, "--box", "1,1,600,9"],                                    # box outside
        ["segment", png, "-o", m, "--box", "1,1,9,9", "--window", "lunk"],                  # window name
        ["segment", png, "-o", m, "--box", "1,1,9,9", "--channel", "1"],                    # channel
        ["segment", png, "-o", m, "--box", "1,1,9,9", "--overlay", tmp_path / "o.jpg"],     # overlay format
        ["segment", nifti, "-o", tmp_path / "m.nii.gz", "--slice", "5", "--box", "1,1,9,9"],  # slice range
        ["segment", nifti, "-o", tmp_path / "m.dcm", "--slice", "1", "--box", "1,1,9,9"],    # SEG needs DICOM
        ["segment", nifti, "-o", tmp_path / "m.nii.gz", "--slice", "1", "--axis", "i", "--box", "1,1,9,9"],
        ["segment", png, "-o", m, "--box", "1,1,9,9", "--series", "1.2.3"],                 # not a DICOM folder
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--box3d", "0,0,0,30,3,3"],        # 3D box outside
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "1", "--box", "1,1,5,5", "--views", "1"],
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "2", "--point", "99,1"],
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "2", "--recist", "1,1,99,1"],   # line outside
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "9", "--recist", "1,1,5,1"],    # slice range
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "2", "--box", "1,1,9,9", "--slices", "3:1"],
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "2", "--box", "1,1,9,9", "--slices", "1:5"],
        ["propagate", nifti, "-o", tmp_path / "p.nii.gz", "--slice", "1", "--box", "1,1,9,9", "--slices", "2:4"],
        ["propagate", frames, "-o", tmp_path / "masks", "--slice", "0", "--box", "1,1,5,5",
         "--overlay", tmp_path / "o.png"],                                                   # video overlay format
        ["propagate", frames, "-o", tmp_path / "masks", "--slice", "0", "--box", "1,1,5,5", "--window", "lung"],
        ["propagate", frames, "-o", tmp_path / "masks", "--slice", "0", "--box", "1,1,5,5", "--axis", "j"],
        ["propagate", frames, "-o", tmp_path / "m.mp4", "--slice", "0", "--box", "1,1,5,5"],
        ["autosam", "predict", ckpt, png, "-o", tmp_path / "m.jpg"],
        ["autosam", "predict", ckpt, png, "-o", m, "--slice", "3"],
    ]
    args = json.dumps([[str(a) for a in c] for c in cases])
    proc = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True, timeout=300)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(cases), proc.stderr
    for case, (rc, torch_loaded), err in zip(cases, results, errors):
        assert rc == 2 and not torch_loaded, (case, err)
    assert not list(tmp_path.glob("m.*")) and not (tmp_path / "masks").exists()


def test_the_input_is_looked_up_once(tmp_path, monkeypatch, capsys):
    """The check before the outputs and the command's read share one input_reader answer."""
    from medisam.cli import main
    from medisam.io import read
    from tests.dicom_factory import write_ct_series

    _, (path,) = write_ct_series(tmp_path / "ct", np.zeros((1, 8, 10)))
    looked_up: list[str] = []
    real = read.reader_for

    def counting(p):  # noqa: ANN001, ANN202
        looked_up.append(str(p))
        return real(p)

    monkeypatch.setattr(read, "reader_for", counting)
    code = main(["segment", str(path), "--slice", "0", "--box", "1,1,5,5", "-o", str(tmp_path / "m.nii.gz")])
    assert code == 2 and "drop --slice" in capsys.readouterr().err  # refused after the read, before the model
    assert looked_up == [str(path)]
