"""Window presets, apply_window and to_display rules."""

from __future__ import annotations

import numpy as np
import pytest

from medisam.errors import InputError
from medisam.io import WINDOW_PRESETS, apply_window, to_display


def test_presets():
    assert WINDOW_PRESETS["soft_tissue"] == (400, 40)
    assert WINDOW_PRESETS["abdomen"] == (400, 40)
    assert WINDOW_PRESETS["liver"] == (150, 30)
    assert WINDOW_PRESETS["lung"] == (1500, -600)
    assert WINDOW_PRESETS["bone"] == (1800, 400)
    assert WINDOW_PRESETS["brain"] == (80, 40)
    assert WINDOW_PRESETS["mediastinum"] == (350, 50)


def test_apply_window():
    hu = np.array([-1000, -160, 40, 240, 3000], np.int16)
    out = apply_window(hu, "abdomen")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 127.5, 255, 255])
    np.testing.assert_allclose(apply_window(np.array([-1350.0, -600, 150]), (1500, -600)), [0, 127.5, 255])


def test_unknown_window():
    with pytest.raises(InputError, match="presets: .*lung"):
        apply_window(np.zeros(3), "kidney")
    with pytest.raises(InputError):
        apply_window(np.zeros(3), (0, 10))


def test_uint8_passthrough_bit_identical():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = to_display(rgb, "ES")
    assert out.dtype == np.float32 and out.shape == (5, 6, 3)
    np.testing.assert_array_equal(out, rgb.astype(np.float32))
    grey = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    out = to_display(grey, "CT")
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, -1).astype(np.float32))


def test_ct_rules():
    hu = np.linspace(-1000, 1000, 30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_array_equal(to_display(hu, "CT")[..., 0], apply_window(hu, "soft_tissue"))
    np.testing.assert_array_equal(to_display(hu, "CT", window="lung")[..., 1], apply_window(hu, "lung"))
    not_hu = np.linspace(0, 2000, 30, dtype=np.float32).reshape(5, 6)  # e.g. stored values, no HU
    out = to_display(not_hu, "CT")
    assert out.min() == 0 and out.max() == 255
    grey = np.full((5, 6), 200, np.uint8)
    assert to_display(grey, "CT", window=(100, 150)).max() == 255  # explicit window wins


def test_mr_percentiles():
    mr = np.arange(1000, dtype=np.float32).reshape(25, 40)
    mr[0, 0] = 1e6  # outlier clipped by the 99.5th percentile
    out = to_display(mr, "MR")
    assert out.shape == (25, 40, 3) and out.min() == 0 and out.max() == 255
    assert out[12, 20, 0] == pytest.approx(127.5, abs=2)
    assert to_display(np.zeros((4, 4), np.float32), "MR").max() == 0  # constant image


def test_a_large_slice_gets_the_percentiles_of_every_pixel_a_volume_those_of_a_sample():
    """to_display and a volume's display share one rule chain (display_mapping); a slice of more
    than 4 M pixels still gets its exact percentiles, a volume's whole-volume window is sampled."""
    from medisam.io.intensity import display_mapping, percentile_range

    rng = np.random.default_rng(3)
    big = rng.gamma(2.0, 100.0, (2048, 2048)).astype(np.float32)
    big[:, ::2] *= 3.0  # even columns brighter: the sample (every 2nd pixel) sees only them
    lo, hi = np.percentile(big.astype(np.float64), [0.5, 99.5])
    expected = np.clip((big - lo) / (hi - lo), 0, 1) * 255
    assert np.allclose(to_display(big, "MR")[..., 0], expected, atol=1e-3)
    sampled = percentile_range(big)
    assert sampled[0] > 2 * lo and sampled[1] > 1.05 * hi  # the sample differs here ...
    assert percentile_range(big, sample=False) == pytest.approx((lo, hi))
    volume_map = display_mapping(big[None], "MR")
    assert np.allclose(volume_map(big[:1]), np.clip((big[:1] - sampled[0]) / (sampled[1] - sampled[0]), 0, 1) * 255,
                       atol=1e-3)  # ... and the volume's map uses it


def test_in_hounsfield():
    from medisam.io.intensity import in_hounsfield

    air = np.array([[-1024.0, 40.0], [300.0, 1000.0]], np.float32)
    assert in_hounsfield(air, "CT") and in_hounsfield(air, "OT") and in_hounsfield(air.astype(np.int16), "ot")
    assert not in_hounsfield(air, "MR") and not in_hounsfield(air, "PT")
    fat = np.array([-150.0, 40.0], np.float32)  # a CT crop without air: HU for a CT, not enough for "OT"
    assert in_hounsfield(fat, "CT") and not in_hounsfield(fat, "OT")
    assert not in_hounsfield(np.zeros(4, np.uint8), "CT") and not in_hounsfield(np.zeros(0, np.float32), "CT")


def test_region_window_spans_the_region_percentiles():
    from medisam.io.intensity import region_window

    volume = np.full((4, 10, 10), -1000.0, np.float32)
    volume[:, 2:8, 2:8] = np.linspace(0.0, 200.0, 36, dtype=np.float32).reshape(6, 6)
    width, level = region_window(volume, (slice(None), slice(2, 8), slice(2, 8)))
    lo, hi = np.percentile(volume[:, 2:8, 2:8], [0.5, 99.5])
    assert (width, level) == pytest.approx((hi - lo, (hi + lo) / 2))
    assert region_window(volume, (slice(None), slice(2, 8), slice(2, 8)), 400.0) == pytest.approx((400.0, level))
    assert region_window(volume, (slice(None), slice(2, 8), slice(2, 8)), 50.0) == pytest.approx((width, level))
    assert region_window(volume, (slice(None), slice(0, 1), slice(None))) is None  # constant: no window
    assert region_window(volume, (slice(0, 0),)) is None  # empty


def test_ct_box_window():
    """A CT in HU gets its box's window, at least 400 HU wide; an MR, no box or a constant box gets None."""
    from medisam.io.intensity import ct_box_window, region_window

    ct = np.full((3, 20, 20), -1000.0, np.float32)
    ct[:, 5:15, 5:15] = 40.0
    ct[:, 8:12, 8:12] = 100.0
    whole = (slice(None), slice(None), slice(None))
    assert ct_box_window(ct, "CT", whole) == pytest.approx(region_window(ct, whole))  # 1100 HU wide: as is
    inside = (slice(None), slice(6, 14), slice(6, 14))
    assert ct_box_window(ct, "OT", inside) == pytest.approx((400.0, 70.0))  # 40..100 HU, widened to 400
    assert ct_box_window(ct, "MR", whole) is None and ct_box_window(ct, "CT", None) is None
    assert ct_box_window(ct, "CT", (slice(None), slice(0, 2), slice(None))) is None  # all air: constant


def test_region_window_of_a_large_box_samples_planes_without_copying_it():
    """A box of > 8 M voxels of a bigger volume is thinned to every n-th plane before it is flattened,
    so its window costs a fraction of the box's bytes, and stays within a few HU of the exact one."""
    import tracemalloc

    from medisam.io.intensity import region_window

    volume = np.random.default_rng(0).normal(40.0, 100.0, (300, 330, 330)).astype(np.float32)  # 131 MB
    region = (slice(None), slice(0, 320), slice(0, 320))  # 30.7 M voxels (123 MB), not contiguous
    tracemalloc.start()
    width, level = region_window(volume, region)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 80e6  # flattening the whole box would copy 123 MB
    lo, hi = np.percentile(volume[:, :320, :320][::10], [0.5, 99.5])
    assert width == pytest.approx(hi - lo, rel=0.02) and level == pytest.approx((hi + lo) / 2, abs=5.0)
