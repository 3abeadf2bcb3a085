"""benchmarks/true_box_ceiling.py: each slice's tight true box reaches the model on the session's own planes."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from true_box_ceiling import class_windows, painted, true_box_masks  # noqa: E402


class BoxFiller:
    """A stand-in predictor whose mask is its box, filled: a box-shaped truth comes back exactly when the
    boxes are the truth's, on the planes and in the (x, y) order the session shows."""

    def __init__(self) -> None:
        self.shape: tuple[int, int] | None = None
        self.boxes: list[tuple[float, ...]] = []

    def set_display_image(self, image: np.ndarray) -> "BoxFiller":
        self.shape = image.shape[:2]
        return self

    def predict(self, box):  # noqa: ANN001, ANN201 - a Prediction-like object
        self.boxes.append(tuple(box))
        mask = np.zeros(self.shape, dtype=bool)
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[y0:y1, x0:x1] = True
        return SimpleNamespace(masks=mask[None])


def test_every_slice_gets_its_class_tight_box_along_a_sagittal_axis(tiny_model):
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    vol = np.random.default_rng(0).uniform(0, 100, (10, 24, 16)).astype(np.float32)
    truth = np.zeros(vol.shape, dtype=np.uint8)
    truth[2:7, 3:12, 4:9] = 1  # a block: a rectangle on every plane it crosses, along any axis
    truth[5:9, 14:20, 10:14] = 2
    session = VolumeSession(tiny_model, MedicalImage.from_array(vol, spacing=(2.0, 1.0, 1.0)), axis=2)
    planes = np.stack([session.geometry.take(truth, t) for t in range(session.num_slices)])
    predictor = BoxFiller()
    masks = true_box_masks(session, predictor, planes, [1, 2])
    for c in (1, 2):
        assert np.array_equal(masks[c], planes == c)
    assert len(predictor.boxes) == 5 + 4  # the planes (x = 4..8 and 10..13) holding each class
    assert not any(masks[1][t].any() for t in range(session.num_slices) if not (planes[t] == 1).any())


def test_the_label_map_paints_the_smaller_mask_on_top():
    big = np.zeros((2, 4, 4), dtype=bool)
    big[:, :3, :3] = True
    small = np.zeros_like(big)
    small[:, 1:2, 1:2] = True
    labels = painted({1: small, 2: big})
    assert labels[0, 1, 1] == 1 and labels[0, 0, 0] == 2 and labels[0, 3, 3] == 0


def test_a_ct_class_is_shown_in_its_own_box_window_and_an_mr_in_the_display(tiny_model):
    """As the protocol's 3D-box start encodes it: on a CT in HU each class's box picks its window from its
    voxels (a lung nodule and a bone get different ones); elsewhere every class shares the display."""
    from medisam.io import MedicalImage
    from medisam.predict import VolumeSession

    rng = np.random.default_rng(0)
    ct = np.full((6, 32, 32), -1000.0, dtype=np.float32)  # air
    ct[2:4, 6:9, 6:9] = rng.uniform(-700, 60, (2, 3, 3))  # a nodule with the lung around it
    ct[2:4, 23:25, 23:25] = rng.uniform(300, 1500, (2, 2, 2))  # bone
    truth = np.zeros(ct.shape, dtype=np.uint8)
    truth[2:4, 6:9, 6:9] = 1
    truth[2:4, 23:25, 23:25] = 2
    session = VolumeSession(tiny_model, MedicalImage.from_array(ct, modality="CT"))
    groups = class_windows(session, truth, [1, 2])
    assert None not in groups and sorted(c for g in groups.values() for c in g) == [1, 2] and len(groups) == 2
    mr = VolumeSession(tiny_model, MedicalImage.from_array(np.abs(ct) / 10.0, modality="MR"))
    assert class_windows(mr, truth, [1, 2]) == {None: [1, 2]}
