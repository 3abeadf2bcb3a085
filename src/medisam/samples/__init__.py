"""Bundled CT samples with ground truth (see ATTRIBUTION.md): the demo and the backend calibration."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def sample_pairs() -> list[tuple[str, Path, Path]]:
    """``(name, image, mask)`` for each bundled sample (files next to ATTRIBUTION.md)."""
    root = Path(str(importlib.resources.files("medisam.samples")))
    pairs = []
    for image in sorted(root.glob("*.jpg")):
        pairs.append((image.stem, image, image.with_name(image.stem + "_mask.png")))
    return pairs
