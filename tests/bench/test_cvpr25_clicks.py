"""CVPR25 interactive-3D protocol: click placement and start boxes on hand-made volumes."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.bench import cvpr25
from medisam.errors import PromptError
from medisam.prompting import clicks3d


def test_click_goes_to_the_centre_of_the_largest_error_component():
    truth = np.zeros((11, 20, 20), dtype=bool)
    truth[1:10, 2:17, 2:17] = True       # a 9 x 15 x 15 block
    pred = truth.copy()
    pred[2:9, 6:13, 6:13] = False        # a 7 x 7 x 7 hole (miss) centred at (5, 9, 9)
    pred[0, 18:20, 18:20] = True         # a 4-voxel false positive (smaller)
    click = clicks3d.corrective_click(pred, truth)
    assert click == clicks3d.Click((5, 9, 9), True)


def test_background_click_and_26_connectivity():
    truth = np.zeros((7, 12, 12), dtype=bool)
    pred = np.zeros_like(truth)
    # two 3x3x3 false-positive cubes touching only at a corner: one 26-connected component
    pred[1:4, 1:4, 1:4] = True
    pred[4:7, 4:7, 4:7] = True
    pred[0, 10, 10] = True  # a separate single voxel
    comp = clicks3d.largest_error_component(pred, truth)
    assert comp.sum() == 54
    click = clicks3d.corrective_click(pred, truth)
    assert not click.positive and comp[click.zyx]
    # EDT on the padded bounding box: the cube centres are the farthest voxels (ties -> seed 42)
    assert click.zyx in {(2, 2, 2), (5, 5, 5)}
    assert click == clicks3d.corrective_click(pred, truth)  # reproducible


def test_click_on_the_error_box_equals_the_whole_volume_click():
    """corrective_click works on the bounding box of the error; the protocol's code labels and
    measures the whole volume: the same click (ties, offsets, several components) on random cases."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for trial in range(120):
        shape = tuple(int(v) for v in rng.integers(2, 24, 3))
        truth = ndimage.binary_dilation(rng.random(shape) < 0.02, iterations=int(rng.integers(0, 3)))
        pred = ndimage.binary_dilation(rng.random(shape) < 0.02, iterations=int(rng.integers(0, 3)))
        component = clicks3d.largest_error_component(pred, truth)
        expected = None
        if component is not None:
            zyx = clicks3d.farthest_voxel(clicks3d.padded_edt(component))
            expected = clicks3d.Click(zyx, bool(truth[zyx]))
        assert clicks3d.corrective_click(pred, truth) == expected, trial


def test_padding_makes_the_box_edge_count_as_outside():
    comp = np.zeros((5, 5, 12), dtype=bool)
    comp[:, :, :] = True  # fills its own bounding box: without padding EDT would peak at an edge
    edt = clicks3d.padded_edt(comp)
    z, y, x = np.unravel_index(int(np.argmax(edt)), edt.shape)
    assert (z, y) == (2, 2) and edt[2, 2, 0] == 1.0


def test_ties_are_broken_by_seed_42_in_scan_order():
    edt = np.zeros((2, 2, 3))
    edt[0, 0, 0] = edt[1, 1, 2] = edt[0, 1, 1] = 5.0
    ties = np.argwhere(edt == 5.0)
    expected = tuple(int(v) for v in ties[np.random.RandomState(42).choice(len(ties))])
    assert clicks3d.farthest_voxel(edt) == expected


def test_perfect_prediction_gives_no_click():
    truth = np.zeros((3, 4, 4), dtype=bool)
    truth[1, 1:3, 1:3] = True
    assert clicks3d.corrective_click(truth.copy(), truth) is None


def test_protocol_box_on_the_median_slice_grown_with_seed_2025():
    labels = np.zeros((10, 256, 512), dtype=np.uint8)
    labels[2:9, 100:120, 200:260] = 1     # z 2..8: scan-order median voxel on z = 5
    labels[3:5, 10:20, 10:30] = 2
    boxes = clicks3d.protocol_boxes(labels)
    rng = np.random.RandomState(2025)
    s1, s2 = rng.randint(0, 6), rng.randint(0, 6)  # one draw per class, ascending labels
    b1 = boxes[1]
    assert (b1.z_min, b1.z_max, b1.z_mid) == (2, 8, 5)
    gx, gy = int(s1 * 512 / 256), int(s1 * 256 / 256)
    assert (b1.x_min, b1.y_min, b1.x_max, b1.y_max) == (200 - gx, 100 - gy, 259 + gx, 119 + gy)
    b2 = boxes[2]
    assert (b2.z_min, b2.z_max, b2.z_mid) == (3, 4, 4)
    gx2 = int(s2 * 2)
    assert (b2.x_min, b2.x_max) == (max(0, 10 - gx2), 29 + gx2)
    assert b1.box.x1 == b1.x_max + 1  # pixel edges for the session


def test_protocol_box_is_clipped_to_the_image_and_extent_box():
    labels = np.zeros((4, 8, 8), dtype=np.uint8)
    labels[1:3, 0:8, 0:8] = 1
    b = clicks3d.protocol_boxes(labels)[1]
    assert (b.x_min, b.y_min, b.x_max, b.y_max) == (0, 0, 7, 7)
    e = clicks3d.extent_box(labels == 1)
    assert (e.x0, e.y0, e.z0, e.x1, e.y1, e.z1) == (0, 0, 1, 7, 7, 2)
    with pytest.raises(PromptError):
        clicks3d.extent_box(np.zeros((2, 2, 2), dtype=bool))


def test_class_boxes_are_each_class_extent_box():
    labels = np.zeros((12, 20, 24), dtype=np.uint8)
    labels[3:9, 4:15, 5:7] = 2
    labels[10:12, 1:2, 13:23] = 4
    labels[0, 0, 0] = 4  # a stray voxel widens its class's box
    boxes = clicks3d.class_boxes(labels)
    assert sorted(boxes) == [2, 4]  # classes absent (1, 3) have no box
    for c, box in boxes.items():
        assert box == clicks3d.extent_box(labels == c)
    assert boxes[4] == clicks3d.extent_box(labels == 4) and (boxes[4].x1, boxes[4].z1) == (22, 11)


def test_metrics_auc_and_nsd_rule():
    assert cvpr25.auc([0.1, 0.5, 0.5, 0.5, 0.5, 0.5]) == pytest.approx(2.0)  # steps 1..5 only
    assert cvpr25.auc([0, 0, 1, 1, 1, 1]) == pytest.approx(3.5)
    truth = np.zeros((6, 10, 10), dtype=np.uint8)
    truth[1:5, 2:8, 2:8] = 1
    truth[2:4, 0:2, 0:2] = 2
    seg = truth.copy()
    seg[truth == 2] = 0  # class 2 missed: DSC (1 + 0) / 2
    steps = [cvpr25.Step(0, np.zeros_like(truth), 1.0), cvpr25.Step(1, seg, 1.0), cvpr25.Step(2, truth, 1.0)]
    scores = cvpr25.score_steps(steps, truth, (1.0, 1.0, 1.0))
    assert scores[0] == (0.0, 0.0)              # DSC <= 0.2 -> NSD 0
    assert scores[1][0] == pytest.approx(0.5) and scores[1][1] == pytest.approx(0.5)
    assert scores[2] == (1.0, 1.0)


def test_class_clicks_on_each_class_box_equal_the_whole_volume_clicks():
    """class_clicks crops each class to its boxes in both label maps: the same clicks as
    corrective_click on whole-volume masks, classes missing from either map included."""
    from scipy import ndimage

    rng = np.random.default_rng(11)
    for trial in range(40):
        shape = tuple(int(v) for v in rng.integers(4, 28, 3))
        truth = np.zeros(shape, np.uint16)
        seg = np.zeros(shape, np.uint16)
        for value in (1, 7, 300):
            for labels in (truth, seg):
                if rng.random() < 0.85:  # sometimes a class is absent from one map
                    blobs = ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=int(rng.integers(0, 3)))
                    labels[blobs] = value
        classes = [1, 7, 300, 5]  # 5 is in neither map
        got = clicks3d.class_clicks(seg, truth, classes)
        assert got == {c: clicks3d.corrective_click(seg == c, truth == c) for c in classes}, trial
    assert got[5] is None


def test_class_scores_on_each_class_box_equal_the_whole_volume_scores():
    from medisam.bench.metrics import nsd
    from medisam.metrics_basic import dice

    rng = np.random.default_rng(5)
    truth = np.zeros((12, 30, 34), np.uint16)
    truth[2:7, 3:12, 4:15], truth[5:11, 15:28, 18:31], truth[1:3, 20:24, 2:6] = 1, 900, 4
    seg = truth.copy()
    seg[4:9, 5:14, 6:16] = 1  # shifted
    seg[rng.random(truth.shape) < 0.02] = 900  # scattered false positives everywhere
    seg[truth == 4] = 0  # a class missed entirely
    spacing = (0.8, 0.9, 2.5)
    got = cvpr25.class_scores(truth, seg, spacing)
    for c in (1, 4, 900):
        assert got[c] == pytest.approx((dice(seg == c, truth == c), nsd(seg == c, truth == c, spacing)), abs=1e-12)
    assert got[4] == (0.0, 0.0) and 0 < got[900][0] < 1


def test_label_slices_of_32_bit_instance_ids_are_not_a_list_as_long_as_the_largest_id():
    labels = np.zeros((3, 8, 9), np.uint32)
    labels[0, 1:3, 2:5], labels[2, 4:8, 0:2], labels[1, 0, 8] = 7, 4_000_000_000, 2_000_000
    from medisam.label_boxes import label_slices

    boxes = label_slices(labels)
    assert boxes == {7: (slice(0, 1), slice(1, 3), slice(2, 5)), 2_000_000: (slice(1, 2), slice(0, 1), slice(8, 9)),
                     4_000_000_000: (slice(2, 3), slice(4, 8), slice(0, 2))}
    small = labels.astype(np.int64)
    small[small > 7] = 3  # the direct path gives the same boxes for small ids
    assert label_slices(small) == {3: (slice(1, 3), slice(0, 8), slice(0, 9)), 7: boxes[7]}


def test_protocol_boxes_on_each_class_box_equal_the_whole_volume_boxes():
    from scipy import ndimage

    rng = np.random.default_rng(21)
    for trial in range(30):
        shape = tuple(int(v) for v in rng.integers(3, 30, 3))
        labels = np.zeros(shape, np.uint16)
        for value in (2, 5, 700):
            labels[ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=int(rng.integers(0, 3)))] = value
        classes = [int(c) for c in np.unique(labels) if c]
        whole = np.random.RandomState(clicks3d.BOX_SEED)
        expected = {c: clicks3d.protocol_box(labels == c, whole) for c in classes}  # the draws in class order
        assert clicks3d.protocol_boxes(labels) == expected, trial
