"""An undo step's 3D click layer is stored bit-packed: 1 bit a voxel, not a bool byte."""

import numpy as np
import pytest

from medisam.errors import InputError
from medisam.predict.edits import EditLayer, merged


def _array_bytes(layer: EditLayer) -> int:
    """Bytes of every array the layer object holds (what each undo step keeps alive)."""
    return sum(v.nbytes for v in vars(layer).values() if isinstance(v, np.ndarray))


def test_layer_holds_one_bit_per_voxel_and_gives_the_mask_back():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 50, 60)) > 0.5  # 120_000 voxels: a small tumour box
    layer = EditLayer((3, 4, 5), mask)
    assert _array_bytes(layer) == mask.size // 8  # 15_000 bytes, not 120_000
    assert layer.shape == mask.shape and layer.origin == (3, 4, 5)
    assert np.array_equal(layer.mask, mask) and layer.mask.dtype == bool
    assert not layer.mask.flags.writeable  # an unpacked copy: writing to it would change nothing


def test_odd_sized_layer_round_trips_and_merges():
    old = EditLayer((0, 0, 0), np.ones((3, 5, 7), dtype=bool))  # 105 voxels: not a multiple of 8
    new = EditLayer((2, 4, 6), np.zeros((2, 2, 2), dtype=bool))
    out = merged(old, new, lambda crop: np.zeros([s.stop - s.start for s in crop], dtype=bool))
    assert out.shape == (4, 6, 8) and out.mask.sum() == 105 - 1  # new's one overlapping voxel cleared
    want = np.ones((3, 5, 7), dtype=bool)
    want[2, 4, 6] = False
    assert np.array_equal(out.apply(np.zeros((5, 6, 9), dtype=bool))[:3, :5, :7], want)


def test_layer_mask_must_be_3d():
    with pytest.raises(InputError, match="must be 3D"):
        EditLayer((0, 0, 0), np.ones((4, 4), dtype=bool))
