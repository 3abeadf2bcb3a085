"""The bundled demo: real CT slices with ground truth, segmented from a box prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from medisam.errors import OutputExistsError
from medisam.io import read_image, write_mask, write_overlay_png
from medisam.io.intensity import to_display
from medisam.metrics_basic import dice
from medisam.models import load_model
from medisam.predict import Predictor
from medisam.predict.segment import segment_image
from medisam.prompts import Box
from medisam.samples import sample_pairs  # noqa: F401 - also part of this module's API

#: Margin (pixels) added around the ground-truth extent to make the demo box prompt.
DEMO_BOX_MARGIN = 5


@dataclass(frozen=True)
class DemoResult:
    name: str
    box: tuple[float, float, float, float]
    dice: float
    mask_path: Path
    overlay_path: Path


def run_demo(output: Path, model: str = "litemedsam", checkpoint: Path | None = None,
             device: str = "auto", force: bool = False) -> list[DemoResult]:
    """Segment every bundled sample into ``output``; refuse existing files unless ``force``."""
    pairs = sample_pairs()
    targets = [(output / f"{n}_pred.png", output / f"{n}_overlay.png") for n, _, _ in pairs]
    existing = [str(p) for pair in targets for p in pair if p.exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} exists; pass --force to overwrite")
    predictor = Predictor(load_model(model, checkpoint=checkpoint, device=device))
    results = []
    for (name, image_path, mask_path), (out_mask, out_overlay) in zip(pairs, targets):
        image = read_image(image_path, modality="CT")
        truth = read_image(mask_path).array > 0
        box = Box.from_mask(truth, margin=DEMO_BOX_MARGIN)
        labels = segment_image(predictor, image, [box])
        write_mask(labels, out_mask, reference=image, force=force)
        write_overlay_png(to_display(image.array, image.modality), labels.array, out_overlay, force=force)
        results.append(DemoResult(name, tuple(box.as_array().tolist()), dice(labels.array > 0, truth),
                                  out_mask, out_overlay))
    return results
