"""Tiny synthetic datasets for training tests (written by the tests, a few kB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_tiny_dataset(root: Path, n: int = 4, size: tuple[int, int] = (64, 80)) -> Path:
    """``images/`` + ``masks/`` with two bright disks per image (labels 1 and 2)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.normal(30, 4, (h, w))
        lab = np.zeros((h, w), np.uint8)
        for value, (cy, cx, r) in enumerate([(20 + i, 20, 8), (40, 55 - i, 10)], start=1):
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[m] = 200
            lab[m] = value
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"case{i}.png")
        Image.fromarray(lab).save(root / "masks" / f"case{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")
