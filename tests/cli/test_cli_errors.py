"""Every kind of mistake through the installed ``medisam`` entry point: one line, exit 2, no traceback.

Each row runs a fresh process (the console script), so it tests the parser typer really
uses. All rows fail before any model is loaded, so each run takes about a second.
"""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

# (id, arguments, text the one stderr line must contain); {img} {vol} {out} {tmp} are filled in
ERRORS = [
    ("bare", [], "`medisam` needs a command: segment,"),
    ("unknown command", ["segmnt"], "no such command 'segmnt'"),
    ("group without command", ["export"], "`medisam export` needs a command: onnx"),
    ("missing argument", ["segment"], "missing argument 'input'"),
    ("missing -o", ["segment", "{img}", "--box", "1,1,9,9"], "missing option '--output'"),
    ("unknown option", ["segment", "{img}", "-o", "{out}", "--bx", "1,1,9,9"], "no such option: --bx"),
    ("not an integer", ["segment", "{img}", "-o", "{out}", "--box", "1,1,9,9", "--slice", "abc"],
     "invalid value for '--slice'"),
    ("switch with a value", ["segment", "{img}", "-o", "{out}", "--box", "1,1,9,9", "--force", "true"],
     "unexpected extra argument(s) (true)"),
    ("subcommand option", ["export", "onnx", "-o", "{tmp}/x", "--opset", "x"], "invalid value for '--opset'"),
    ("old bench option", ["bench", "-o", "{tmp}/b", "--backend", "ray"], "no such option: --backend"),
    ("bad executor", ["bench", "{tmp}", "-o", "{tmp}/b", "--executor", "spark"], "--executor must be local or ray"),
    ("box numbers", ["segment", "{img}", "-o", "{out}", "--box", "1,2,3"], "needs 4 numbers"),
    ("no prompt", ["segment", "{img}", "-o", "{out}"], "give at least one --box or --point"),
    ("negative points only", ["segment", "{img}", "-o", "{out}", "--point", "5,5,0"], "every --point is negative"),
    ("point label", ["segment", "{img}", "-o", "{out}", "--point", "5,5,2"], "the label must be 1 (positive) or 0"),
    ("negative points only on a slice", ["propagate", "{vol}", "-o", "{tmp}/m.nii.gz", "--slice", "1", "--point",
                                         "5,5,0", "--point", "9,9,0"], "every --point is negative"),
    ("output format", ["segment", "{img}", "-o", "{tmp}/m.jpg", "--box", "1,1,9,9"], "unsupported mask format"),
    ("inverted box", ["segment", "{img}", "-o", "{out}", "--box", "9,9,1,1"], "inverted"),
    ("box outside", ["segment", "{img}", "-o", "{out}", "--box", "1,1,900,9"], "outside the 512x512"),
    ("window name", ["segment", "{img}", "-o", "{out}", "--box", "1,1,9,9", "--window", "abdomn"],
     "unknown --window 'abdomn'"),
    ("channel", ["segment", "{img}", "-o", "{out}", "--box", "1,1,9,9", "--channel", "3"],
     "--channel 3 is out of range"),
    ("slice on 2D", ["segment", "{img}", "-o", "{out}", "--box", "1,1,9,9", "--slice", "2"], "drop --slice"),
    ("volume without slice", ["segment", "{vol}", "-o", "{tmp}/m.nii.gz", "--box", "1,1,9,9"], "pass --slice"),
    ("PNG for a volume", ["propagate", "{vol}", "-o", "{out}", "--box3d", "1,1,1,5,5,3"], "a PNG holds one 2D mask"),
    ("axis word", ["propagate", "{vol}", "-o", "{tmp}/m.nii.gz", "--slice", "1", "--box", "1,1,5,5", "--axis", "q"],
     "--axis must be k, j, i"),
    ("2D image to propagate", ["propagate", "{img}", "-o", "{out}", "--slice", "0", "--box", "1,1,9,9"],
     "is a 2D image (512, 512); use `medisam segment`"),
    ("video overlay for a volume", ["propagate", "{vol}", "-o", "{tmp}/t.nii.gz", "--box3d", "1,1,1,5,5,3",
                                    "--overlay", "{tmp}/ovl.mp4"], "the overlay of a volume is a folder of PNGs"),
    ("3D box outside", ["propagate", "{vol}", "-o", "{tmp}/m.nii.gz", "--box3d", "0,0,0,3,3,9"], "outside the volume"),
    ("RECIST line outside", ["propagate", "{vol}", "-o", "{tmp}/m.nii.gz", "--slice", "2", "--recist", "1,1,40,1"],
     "--recist RECIST line (1, 1)-(40, 1) leaves the 28x24"),
    ("output is the input", ["segment", "{img}", "-o", "{img}", "--box", "1,1,9,9", "--force"], "is an input"),
    ("overlay is the input", ["segment", "{img}", "-o", "{out}", "--overlay", "{img}", "--box", "1,1,9,9", "--force"],
     "--overlay"),
    ("missing file", ["info", "{tmp}/nothing.nii.gz"], "no such file"),
    ("missing input before the output", ["propagate", "{tmp}/clip.gif", "--slice", "0", "--box", "1,1,5,5",
                                         "-o", "{tmp}/masks"], "clip.gif: no such file"),
]


@pytest.fixture()
def fill(tmp_path, nifti, png):
    def _fill(args: list[str]) -> list[str]:
        return [a.format(img=png, vol=nifti, out=tmp_path / "m.png", tmp=tmp_path) for a in args]
    return _fill


@pytest.mark.parametrize("args,expected", [row[1:] for row in ERRORS], ids=[row[0] for row in ERRORS])
def test_mistake_prints_one_line_and_exits_2(fill, png, args, expected):
    before = png.read_bytes()
    proc = run_cli(fill(args))
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]
    assert proc.stdout == ""
    assert png.read_bytes() == before  # no input is ever touched


def test_version_and_help_exit_0():
    from medisam import __version__

    proc = run_cli(["--version"])
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, f"medisam {__version__}", "")
    proc = run_cli(["segment", "--help"])
    assert proc.returncode == 0 and "--force" in proc.stdout and "<bool>" not in proc.stdout


@pytest.mark.parametrize("ext", [".png", ".mha", ".tif"])
def test_a_truncated_file_is_one_line_without_the_libraries_own(tmp_path, ext):
    """libpng, MetaIO and OpenCV's TIFF reader printed their own lines before medisam's ``error:``
    line ('libpng error: PNG input buffer is incomplete', ...); the CLI now holds them while it reads."""
    import cv2
    import numpy as np
    import SimpleITK as sitk

    image = (np.random.default_rng(0).random((300, 400)) * 255).astype(np.uint8)
    path = tmp_path / f"whole{ext}"
    if ext == ".mha":
        sitk.WriteImage(sitk.GetImageFromArray(image), str(path))
    else:
        cv2.imwrite(str(path), image)
    data = path.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    proc = run_cli(["info", str(cut)])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


@pytest.mark.parametrize("cmd", ["segment", "propagate"])
def test_an_unsupported_input_is_named_before_the_output(tmp_path, capsys, cmd):
    """``propagate clip.gif -o masks`` said the folder ``masks`` was an unsupported mask format."""
    from medisam.cli import main

    clip = tmp_path / "clip.gif"
    clip.write_bytes(b"GIF89a" + b"\0" * 64)
    assert main([cmd, str(clip), "--slice", "0", "--box", "1,1,5,5", "-o", str(tmp_path / "masks")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip.gif: unsupported file type '.gif'" in err[0], err
