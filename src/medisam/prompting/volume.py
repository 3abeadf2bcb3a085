"""Volume prompt protocols through :class:`medisam.predict.VolumeSession` (array axis 0).

* ``box3d`` (CVPR24 "MedSAM on Laptop"): the target's 3D bounding box; the session
  prompts its x/y extent on the middle slice of the box's z range and propagates within it.
* ``keyslice`` (MedSAM / SAM-Med3D style): the tight 2D box on the slice with the largest
  target area, propagated up and down until the mask vanishes.
* ``recist`` (MedSAM2's lesion workflow): a RECIST line -- the longest diameter of the target's
  largest connected component on the slice of largest area (:func:`recist_line`) -- turned
  into the lesion's 3D box as every client does it
  (:func:`~medisam.prompting.shapes.recist_to_box3d`), then propagated.

``run_volume`` returns one :class:`~medisam.prompting.strategies.Outcome` whose mask is the
``(Z, Y, X)`` prediction. The session reuses the caller's predictor and its embedding
cache, so slices already encoded (e.g. by 2D strategies on the key slice) are not
encoded again when the cache is large enough.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from medisam.errors import PromptError
from medisam.io.medical_image import MedicalImage
from medisam.prompting import sampling
from medisam.prompting.shapes import recist_to_box3d
from medisam.prompting.strategies import Outcome, PromptSet, Strategy
from medisam.prompts import Box3D


def volume_box3d(truth: np.ndarray) -> Box3D:
    """The inclusive voxel-index 3D box ``(x0, y0, z0, x1, y1, z1)`` of a ``(Z, Y, X)`` mask."""
    idx = np.nonzero(np.asarray(truth, dtype=bool))
    if len(idx[0]) == 0:
        raise PromptError("cannot make a 3D box for an empty mask")
    z, y, x = idx
    return Box3D(int(x.min()), int(y.min()), int(z.min()), int(x.max()), int(y.max()), int(z.max()))


def key_slice(truth: np.ndarray) -> int:
    """Index (axis 0) of the slice with the largest target area (first on ties)."""
    truth = np.asarray(truth, dtype=bool)
    return int(np.argmax(truth.reshape(truth.shape[0], -1).sum(1)))


def recist_line(mask: np.ndarray, pixel_mm: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float, float, float]:
    """A reader's RECIST line on a 2D mask: ``(x0, y0, x1, y1)`` (pixel centres) of the longest
    diameter, in mm (``pixel_mm``: pixel size ``(x, y)``), of its largest 8-connected component;
    at least one pixel long (a one-pixel lesion gets a line across its pixel)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise PromptError("a RECIST line needs a non-empty 2D mask")
    comps, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    largest = comps == 1 + int(np.argmax(ndimage.sum(mask, comps, range(1, n + 1))))
    contours, _ = cv2.findContours(largest.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(contours)).reshape(-1, 2).astype(float)  # (x, y) pixel indices
    scaled = hull * np.asarray(pixel_mm, dtype=float)
    d2 = ((scaled[:, None, :] - scaled[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    a, b = hull[i] + 0.5, hull[j] + 0.5
    length = float(np.hypot(*(b - a)))
    if length < 1.0:  # a one-pixel lesion: a line one pixel long through its centre
        centre, direction = (a + b) / 2, ((b - a) / length if length > 0 else np.array([1.0, 0.0]))
        a, b = centre - direction / 2, centre + direction / 2
    return float(a[0]), float(a[1]), float(b[0]), float(b[1])


class VolumeStrategy(Strategy):
    dims = 3

    def run(self, predictor, truth, rng):
        raise PromptError(f"strategy {self.name!r} needs a volume: use run_volume")

    def run_volume(self, predictor, image: MedicalImage, truth: np.ndarray, rng: np.random.Generator,
                   window=None) -> list[Outcome]:
        """Segment the ``(Z, Y, X)`` object ``truth`` of ``image`` with ``predictor``'s model."""
        from medisam.predict.contract import tracks_with_memory
        from medisam.predict.factory import open_session

        truth = np.asarray(truth, dtype=bool)
        if truth.shape != tuple(image.spatial_shape):
            raise PromptError(f"truth {truth.shape} does not match the volume {image.spatial_shape}")
        # SAM 2 tracks with its memory (Sam2Session); the others propagate slice by slice (VolumeSession)
        kw = {} if tracks_with_memory(predictor.model) else {"axis": 0, "predictor": predictor}
        session = open_session(predictor.model, image, window=window, **kw)
        prompt = self._prompt(session, truth, image)
        labels = session.propagate(progress=False)
        mask = labels.array == 1
        results = session.results(1)
        scores = [r.score for r in results.values() if r.mask.any()]
        return [Outcome(mask, float(np.mean(scores)) if scores else float("nan"), None, prompt)]

    def _prompt(self, session, truth: np.ndarray, image: MedicalImage) -> dict:
        raise NotImplementedError


class Box3DStrategy(VolumeStrategy):
    name = "box3d"

    def _prompt(self, session, truth, image):  # noqa: ARG002
        b = volume_box3d(truth)
        session.add_box3d(b, obj_id=1)
        return {"box3d": [b.x0, b.y0, b.z0, b.x1, b.y1, b.z1]}


class KeySliceStrategy(VolumeStrategy):
    name = "keyslice"

    def _prompt(self, session, truth, image):  # noqa: ARG002
        k = key_slice(truth)
        box = sampling.tight_box(truth[k])
        session.add_box(k, box, obj_id=1)
        return {"slice": k, **PromptSet(box=box).describe()}


class RecistStrategy(VolumeStrategy):
    name = "recist"

    def _prompt(self, session, truth, image):
        k = key_slice(truth)
        spacing = image.spacing_zyx
        line = recist_line(truth[k], (spacing[2], spacing[1]))
        b = recist_to_box3d(line, k, truth.shape, spacing)
        session.add_box3d(b, obj_id=1, drawn_on=k)  # the line's box bounds the lesion on its slice only
        return {"slice": k, "recist": [round(v, 2) for v in line], "box3d": [b.x0, b.y0, b.z0, b.x1, b.y1, b.z1]}


VOLUME_STRATEGIES = {"box3d": Box3DStrategy, "keyslice": KeySliceStrategy, "recist": RecistStrategy}
