"""``medisam segment`` / ``propagate`` with ``--scribble`` and ``--lasso``: the same prompts as the server's
scribble and lasso (``prompting.shapes``), checked before the model loads (tiny random model; ``lesion``,
the (12, 40, 44) volume of ``conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medisam.cli import main
from medisam.io.label_png import read_label_map
from medisam.prompting.shapes import lasso_mask, scribble_points

TINY = ["--model", "litemedsam-tiny", "--device", "cpu"]
POLYGON = "10,8,30,9,32,26,12,28"  # (x, y) pixels
SCRIBBLE = "14,14,22,16,26,26"


@pytest.fixture()
def picture(tmp_path):
    yy, xx = np.mgrid[:40, :44]
    path = tmp_path / "disk.png"
    Image.fromarray(np.where((yy - 18) ** 2 + (xx - 21) ** 2 <= 100, 200, 30).astype(np.uint8)).save(path)
    return path


def _vertices(text: str) -> list[tuple[float, float]]:
    v = [float(t) for t in text.split(",")]
    return list(zip(v[0::2], v[1::2]))


def _read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_lasso_seeds_the_propagation_as_drawn(lesion, tmp_path):
    out = tmp_path / "lasso.nii.gz"
    assert main(["propagate", str(lesion), "--slice", "4", "--lasso", POLYGON, "--label", "2", "-o", str(out),
                 "--no-progress"] + TINY) == 0
    got = _read(out)
    assert set(np.unique(got)) <= {0, 2}
    assert np.array_equal(got[4] == 2, lasso_mask(_vertices(POLYGON), (40, 44)))  # the seed slice is the lasso


def test_scribble_is_its_clicks(lesion, picture, tmp_path):
    """A scribble gives the clicks ``scribble_points`` samples along it: the same mask as those clicks
    given as --point, on a volume (propagated) and on a 2D image (with a negative scribble, ':0')."""
    cases = ((lesion, ["--slice", "4", "--no-progress"], ".nii.gz", (40, 44), []),
             (picture, [], ".png", (40, 44), [("30,30:0", "30,30,0")]))
    for image, extra, suffix, hw, negative in cases:
        pts = scribble_points(_vertices(SCRIBBLE), hw).coords.tolist()
        assert len(pts) == 3  # one click every 8 pixels along 19 pixels of line
        cmd = "propagate" if suffix == ".nii.gz" else "segment"
        a, b = tmp_path / f"scribble{suffix}", tmp_path / f"points{suffix}"
        scribbles = [arg for text in (SCRIBBLE, *(n for n, _ in negative)) for arg in ("--scribble", text)]
        points = [arg for x, y in pts for arg in ("--point", f"{x},{y},1")]
        points += [arg for _, p in negative for arg in ("--point", p)]
        assert main([cmd, str(image), *extra, *scribbles, "-o", str(a)] + TINY) == 0
        assert main([cmd, str(image), *extra, *points, "-o", str(b)] + TINY) == 0
        assert np.array_equal(read_label_map(a), read_label_map(b))


def test_2d_lasso_is_the_servers_lasso(picture, tmp_path, tiny_model):
    """``segment --lasso`` on a picture: the mask the server's 2D lasso gives (one data path:
    ``predict.segment.predict_with_mask``), with and without a box."""
    from medisam.io import read_image
    from medisam.serve.interactive import InteractiveSession

    session = InteractiveSession(tiny_model, read_image(picture))
    want = session.add_lasso(None, _vertices(POLYGON)).mask
    out = tmp_path / "lasso.png"
    assert main(["segment", str(picture), "--lasso", POLYGON, "-o", str(out)] + TINY) == 0
    assert np.array_equal(read_label_map(out) > 0, want)
    want_box = session.segment(None, box=(6, 6, 36, 32), mask=lasso_mask(_vertices(POLYGON), (40, 44))).mask
    assert main(["segment", str(picture), "--lasso", POLYGON, "--box", "6,6,36,32", "-o", str(out), "--force"]
                + TINY) == 0
    assert np.array_equal(read_label_map(out) > 0, want_box)


@pytest.mark.parametrize("cmd,args,message", [
    ("propagate", ["--slice", "4", "--scribble", "14,14,50,16"], "--scribble scribble vertex 1 (50, 16) lies outside"),
    ("propagate", ["--slice", "4", "--scribble", "14,14,22"], "needs x,y pairs"),
    ("propagate", ["--slice", "4", "--scribble", "14,14:-1"], "is 1 (positive) or 0 (negative)"),
    ("propagate", ["--slice", "4", "--scribble", "a,b"], "comma-separated numbers"),
    ("propagate", ["--slice", "4", "--lasso", "10,8,30,9"], "at least 3 vertices"),
    ("propagate", ["--slice", "4", "--lasso", "10,8,30,9,32,-1"], "--lasso lasso vertex 2 (32, -1) lies outside"),
    ("propagate", ["--slice", "40", "--lasso", POLYGON], "out of range"),
    ("propagate", ["--lasso", POLYGON], "give --box3d"),
    ("propagate", ["--box3d", "1,1,1,20,20,5", "--scribble", SCRIBBLE], "not both"),
    ("propagate", ["--slice", "4", "--recist", "10,10,20,10", "--lasso", POLYGON], "--recist alone"),
    ("propagate", ["--slice", "4", "--box", "1,1,9,9", "--lasso", POLYGON], "--lasso or --box on the slice"),
    ("segment", ["--slice", "4", "--lasso", POLYGON, "--box", "1,1,9,9", "--box", "2,2,8,8"], "prompt one object"),
    ("segment", ["--slice", "4", "--scribble", "1,1,39,70"], "--scribble scribble vertex 1 (39, 70) lies outside"),
])
def test_bad_drawn_prompts_are_one_line_and_write_nothing(lesion, tmp_path, capsys, cmd, args, message):
    out = tmp_path / "bad.nii.gz"
    assert main([cmd, str(lesion), "-o", str(out)] + args + TINY) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_lasso_on_a_video_frame_seeds_the_tracking_as_the_servers_lasso(tmp_path, capsys, tiny_model):
    """``propagate clip.mp4 --slice F --lasso ...`` tracks from the lasso's mask, as the server's and the API's
    video sessions do (it was refused in the CLI alone); a lasso with a box is one line."""
    pytest.importorskip("av")
    from medisam.io import read_image
    from medisam.io.video import write_video
    from medisam.serve.interactive import InteractiveSession

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    clip = write_video(frames, tmp_path / "clip.mp4", fps=10)
    polygon = [(4, 4), (20, 4), (20, 20)]
    out = tmp_path / "masks.npz"
    assert main(["propagate", str(clip), "--slice", "1", "--lasso", "4,4,20,4,20,20", "-o", str(out)] + TINY) == 0
    labels = np.load(out)["segs"]
    session = InteractiveSession(tiny_model, read_image(clip))
    session.add_lasso(1, polygon)
    session.propagate()
    assert labels.shape[0] == 3 and labels[1].any()
    np.testing.assert_array_equal(labels > 0, session.labels > 0)
    both = tmp_path / "both.npz"
    assert main(["propagate", str(clip), "--slice", "0", "--lasso", "4,4,20,4,20,20", "--box", "2,2,9,9",
                 "-o", str(both)] + TINY) == 2
    assert "not both" in capsys.readouterr().err and not both.exists()


def test_scribbles_on_a_box_correct_its_mask_as_the_servers_scribble(picture, lesion, tmp_path, tiny_model, capsys):
    """With --box (or --lasso) the scribbles correct that prompt's mask: the same mask as the server's
    session (box, then add_scribble), on a 2D image (the 2D walker) and a volume (3D clicks after the
    propagation)."""
    from medisam.io import read_image
    from medisam.serve.interactive import InteractiveSession

    session = InteractiveSession(tiny_model, read_image(picture))
    session.segment(None, box=(8, 6, 34, 30))
    session.add_scribble(None, _vertices(SCRIBBLE), True)
    session.add_scribble(None, [(4.0, 36.0)], False)
    out = tmp_path / "corrected.png"
    assert main(["segment", str(picture), "--box", "8,6,34,30", "--scribble", SCRIBBLE, "--scribble", "4,36:0",
                 "-o", str(out)] + TINY) == 0
    assert "corrective click(s) applied" in capsys.readouterr().err
    assert np.array_equal(read_label_map(out) > 0, session.labels == 1)

    from medisam.predict import VolumeSession

    image = read_image(lesion)
    ref = VolumeSession(tiny_model, image)
    ref.add_box(4, (8, 6, 34, 30))
    ref.propagate(progress=False)
    ref.add_clicks([(4, int(y), int(x)) for x, y in scribble_points(_vertices(SCRIBBLE), (40, 44)).coords.tolist()],
                   True)
    out = tmp_path / "corrected.nii.gz"
    assert main(["propagate", str(lesion), "--slice", "4", "--box", "8,6,34,30", "--scribble", SCRIBBLE, "-o",
                 str(out), "--no-progress"] + TINY) == 0
    assert np.array_equal(_read(out) > 0, ref.label_map().array == 1)
