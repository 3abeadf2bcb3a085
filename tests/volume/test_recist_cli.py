"""``medisam propagate --recist``: a lesion's long axis on one slice -> its 3D mask (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medisam.cli import main

TINY = ["--model", "litemedsam-tiny", "--device", "cpu", "--no-progress"]


def test_recist_equals_the_3d_box_it_implies(lesion, tmp_path, capsys):
    from medisam.prompting.shapes import recist_to_box3d

    out, ref = tmp_path / "recist.nii.gz", tmp_path / "box3d.nii.gz"
    assert main(["propagate", str(lesion), "--slice", "6", "--recist", "12,20,32,20", "--label", "3",
                 "-o", str(out)] + TINY) == 0
    assert "wrote" in capsys.readouterr().out
    b = recist_to_box3d((12, 20, 32, 20), 6, (12, 40, 44), (2.0, 0.8, 0.7))
    # 20 px * 0.7 mm = 14 mm long -> depth 0.8 * 14 = 11.2 mm -> round(5.6 / 2.0) = 3 slices each side
    assert (b.z0, b.z1) == (3, 9)
    assert main(["propagate", str(lesion), "--box3d", f"{b.x0},{b.y0},{b.z0},{b.x1},{b.y1},{b.z1}", "--label", "3",
                 "-o", str(ref)] + TINY) == 0
    got, want = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (out, ref))
    assert np.array_equal(got, want)
    assert set(np.unique(got)) <= {0, 3}
    assert not got[:3].any() and not got[10:].any()  # the lesion's slices only
    one = tmp_path / "one.nii.gz"
    assert main(["propagate", str(lesion), "--slice", "6", "--recist", "12,20,32,20", "--views", "1",
                 "-o", str(one)] + TINY) == 0


@pytest.mark.parametrize("args,message", [
    (["--recist", "12,20,32,20"], "--recist needs --slice K"),
    (["--slice", "6", "--recist", "12,20,32"], "--recist '12,20,32' needs 4 numbers"),
    (["--slice", "6", "--recist", "12,20,x,20"], "comma-separated numbers"),
    (["--slice", "6", "--recist", "12,20,80,20"], "--recist RECIST line"),
    (["--slice", "6", "--recist", "12,20,12.5,20"], "one pixel apart"),
    (["--slice", "12", "--recist", "12,20,32,20"], "out of range"),
    (["--slice", "6", "--recist", "12,20,32,20", "--box", "1,1,5,5"], "--recist alone"),
    (["--slice", "6", "--recist", "12,20,32,20", "--box3d", "1,1,1,5,5,5"], "--recist alone"),
    (["--slice", "6", "--recist", "12,20,32,20", "--axis", "j"], "drop --axis"),
])
def test_bad_recist_is_one_line_and_writes_nothing(lesion, tmp_path, capsys, args, message):
    out = tmp_path / "bad.nii.gz"
    assert main(["propagate", str(lesion), "-o", str(out)] + args + TINY) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()
