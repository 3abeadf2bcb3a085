"""Flags honoured on every input kind: --channel, --axis words/numbers, propagate on video, progress, warnings."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from cli_helpers import TINY, run_cli
from PIL import Image

from medisam.cli import main
from medisam.cli.progress import step
from medisam.errors import InputError
from medisam.io import read_image


def test_channel_picks_a_component_of_every_kind(tmp_path, capsys):
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.all(read_image(tmp_path / "c.png", channel=1).array == 20)
    with pytest.raises(InputError, match="out of range"):
        read_image(tmp_path / "c.png", channel=3)
    four_d = sitk.JoinSeries([sitk.GetImageFromArray(np.full((3, 4, 5), v, np.float32)) for v in (1.0, 2.0)])
    sitk.WriteImage(four_d, str(tmp_path / "v4.nii.gz"))
    with pytest.raises(InputError, match="--channel 0..1"):  # the CLI option, not an API argument
        read_image(tmp_path / "v4.nii.gz")
    assert main(["info", str(tmp_path / "v4.nii.gz"), "--channel", "1"]) == 0
    out = capsys.readouterr().out
    assert "(3, 4, 5) (Z,Y,X)" in out and "2 .. 2" in out


def test_axis_accepts_words_and_numbers(tmp_path, nifti):
    outs = []
    for axis in ("j", "1"):
        out = tmp_path / f"m{axis}.nii.gz"
        assert main(["segment", str(nifti), "-o", str(out), "--slice", "12", "--axis", axis, "--box", "2,1,20,4"]
                    + TINY) == 0
        outs.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.delete(outs[0], 12, axis=1).any()  # only plane j = 12 is labelled


def test_propagate_on_video_uses_runtime_flags_and_names_its_files(tmp_path, monkeypatch, capsys):
    pytest.importorskip("av")
    import medisam.models

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(4):
        im = np.full((32, 32), 30, np.uint8)
        im[8 + t:20 + t, 8:20] = 220
        Image.fromarray(im).save(frames / f"{t:03d}.png")
    seen = {}
    real = medisam.models.load_model

    def spy(name, **kwargs):
        seen.update(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(medisam.models, "load_model", spy)
    masks, video = tmp_path / "masks", tmp_path / "overlay.mp4"
    rc = main(["propagate", str(frames), "-o", str(masks), "--slice", "1", "--box", "8,9,20,21",
               "--overlay", str(video), "--threads", "1", "--precision", "fp32", "--backend", "torch"] + TINY)
    assert rc == 0
    assert (seen["threads"], seen["precision"], seen["backend"]) == (1, "fp32", "torch")
    out = capsys.readouterr().out
    assert f"wrote {masks} (4 PNG mask frames)" in out and f"wrote {video}" in out
    assert video.stat().st_size > 0 and len(list(masks.glob("*.png"))) == 4


def test_progress_line_only_for_slow_steps(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with step("quick thing", after=0.5):
        pass
    with step("slow thing", after=0.05):
        time.sleep(0.3)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "medisam: slow thing..." and err[1].startswith("medisam: slow thing done (")
    assert len(err) == 2


def test_models_prints_no_third_party_warnings():
    proc = run_cli(["models"])
    assert proc.returncode == 0 and "litemedsam" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr


def test_segment_takes_a_box_with_negative_points(tmp_path, png, capsys):
    """A box with negative clicks only (the usual refinement) is a prompt: it was refused with
    'every --point is negative ... or a --box', though the box was there; propagate took it."""
    out = tmp_path / "m.png"
    code = main(["segment", str(png), "--box", "100,100,400,400", "--point", "20,20,0", "-o", str(out), *TINY])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


@pytest.mark.parametrize("lowest, warned", [(0.0, True), (-1024.0, False)])
def test_a_ct_window_on_an_image_not_in_hu_is_applied_with_a_warning(tmp_path, capsys, lowest, warned):
    """``--window lung`` on an MR (values from 0) clipped it to -1350..150 HU without a word: a
    bright organ became a white plane. It is applied as asked, with one line saying why and what to
    give instead; a CT in HU (air at -1024) gets no such line."""
    zz, yy, xx = np.mgrid[:5, :24, :28]
    array = np.where((yy - 12) ** 2 + (xx - 14) ** 2 <= 36, 600.0, 100.0).astype(np.float32)
    array[:, 0, 0] = lowest
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    out = tmp_path / "m.nii.gz"
    code = main(["propagate", str(path), "--slice", "2", "--box", "6,4,22,20", "--window", "lung", "-o", str(out),
                 "--no-progress", *TINY])
    err = capsys.readouterr().err
    assert code == 0, err
    assert out.is_file()
    line = "warning: --window lung is a CT window in Hounsfield units (-1350 .. 150), but scan.nii.gz (values 0 .. 600)"
    assert (line in err) is warned, err
