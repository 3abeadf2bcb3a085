"""Visible PNG masks (0/255, palette) and reading them back: ``segment --mask`` and ``bench``."""

from __future__ import annotations

import numpy as np
from cli_helpers import TINY
from PIL import Image

from medisam.bench.datasets import DatasetOptions, discover_cases
from medisam.cli import main
from medisam.io import write_mask
from medisam.io.label_png import read_label_png


def test_segment_writes_visible_masks_and_reads_them_back(tmp_path, png, capsys):
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main(["segment", str(png), "-o", str(one), "--box", "150,150,350,350"] + TINY) == 0
    im = Image.open(one)
    assert im.mode == "L" and set(np.unique(np.asarray(im))) == {0, 255}
    assert main(["segment", str(png), "-o", str(two), "--box", "100,100,250,250", "--box", "300,300,450,450"]
                + TINY) == 0
    im = Image.open(two)
    assert im.mode == "P" and set(np.unique(np.asarray(im))) == {0, 1, 2}
    # labels 3 and 7 from an earlier map: each label's box is prompted again and keeps its value
    earlier = np.zeros((512, 512), np.uint8)
    earlier[120:260, 120:260], earlier[300:420, 300:420] = 3, 7
    prior = write_mask(earlier, tmp_path / "prior.png")
    again = tmp_path / "again.png"
    assert main(["segment", str(png), "-o", str(again), "--mask", str(prior)] + TINY) == 0
    labels = read_label_png(again)
    assert set(np.unique(labels)) <= {0, 3, 7} and {3, 7} & set(np.unique(labels))  # (random tiny model)
    # a 0/255 single-object mask is label 1 again
    assert main(["segment", str(png), "-o", str(tmp_path / "r.png"), "--mask", str(one)] + TINY) == 0
    assert set(np.unique(read_label_png(tmp_path / "r.png"))) <= {0, 1}
    assert "wrote" in capsys.readouterr().out


def test_bench_reads_visible_masks_as_labels(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((20, 20), np.uint8)
    image[5:12, 6:14] = 200
    Image.fromarray(image).save(root / "images" / "a.png")
    Image.fromarray(image).save(root / "images" / "b.png")
    single = np.zeros((20, 20), np.uint8)
    single[5:12, 6:14] = 1
    write_mask(single, root / "masks" / "a.png")              # 0/255 grey
    multi = single.copy()
    multi[14:18, 2:6] = 4
    write_mask(multi, root / "masks" / "b.png")               # palette, labels 1 and 4
    cases = {ref.case_id: ref.load() for ref in discover_cases(root, DatasetOptions())}
    assert [t.label for t in cases["a"].targets] == [1] and cases["a"].targets[0].area == 56
    assert sorted(t.label for t in cases["b"].targets) == [1, 4]
