"""PNG/JPEG/TIFF/BMP and CVPR24 npz reading."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from medisam.errors import InputError
from medisam.io import read_image, write_mask


def test_png_8bit_grey(tmp_path):
    arr = np.arange(200, dtype=np.uint8).reshape(10, 20)
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.array.dtype == np.uint8 and not img.is_rgb and img.modality == "OT"
    np.testing.assert_array_equal(img.array, arr)
    assert img.spacing == (1.0, 1.0) and img.source["format"] == "png"


def test_png_16bit_grey(tmp_path):
    arr = (np.arange(200, dtype=np.uint16) * 300).reshape(10, 20)
    cv2.imwrite(str(tmp_path / "g16.png"), arr)
    img = read_image(tmp_path / "g16.png", modality="XR")
    assert img.array.dtype == np.uint16 and img.modality == "XR"
    np.testing.assert_array_equal(img.array, arr)


def test_png_16bit_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 65535, (8, 9, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    img = read_image(tmp_path / "c16.png")
    assert img.is_rgb
    np.testing.assert_array_equal(img.array, rgb)


def test_png_rgb_and_rgba(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (8, 9, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    img = read_image(tmp_path / "c.png")
    assert img.is_rgb and img.array.shape == (8, 9, 3)
    np.testing.assert_array_equal(img.array, rgb)
    rgba = np.concatenate([rgb, np.full((8, 9, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png").array, rgb)


def test_grey_looking_rgb_becomes_grey(tmp_path):
    g = np.arange(72, dtype=np.uint8).reshape(8, 9)
    Image.fromarray(np.stack([g] * 3, -1)).save(tmp_path / "g.bmp")
    img = read_image(tmp_path / "g.bmp")
    assert not img.is_rgb and img.array.shape == (8, 9)
    np.testing.assert_array_equal(img.array, g)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".tif", ".tiff"])
def test_other_formats(tmp_path, ext):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[4:12, 4:12, 2] = 150
    Image.fromarray(rgb).save(tmp_path / f"x{ext}")
    img = read_image(tmp_path / f"x{ext}")
    assert img.is_rgb and img.array.shape == (16, 16, 3)
    if "tif" in ext:
        np.testing.assert_array_equal(img.array, rgb)


def test_real_jpeg_matches_pil(data_dir):
    folder = data_dir / "kvasir_seg" / "images"
    path = sorted(folder.iterdir())[0]
    img = read_image(path)
    assert img.is_rgb and img.array.dtype == np.uint8
    ref = np.asarray(Image.open(path).convert("RGB"))
    assert img.array.shape == ref.shape
    assert np.abs(img.array.astype(int) - ref).max() <= 3  # decoders may differ by rounding


def test_npz_3d(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (4, 10, 12)).astype(np.uint8)
    gts = (imgs > 128).astype(np.uint8)
    boxes = np.array([[1, 2, 8, 9]])
    np.savez_compressed(tmp_path / "case.npz", imgs=imgs, gts=gts, boxes=boxes, spacing=np.array([0.7, 0.8, 5.0]))
    img = read_image(tmp_path / "case.npz")
    assert img.array.shape == (4, 10, 12) and img.spacing == (0.7, 0.8, 5.0)  # ITK (x, y, z) order
    np.testing.assert_array_equal(img.source["gts"], gts)
    np.testing.assert_array_equal(img.source["boxes"], boxes)
    out = write_mask(gts, tmp_path / "seg.npz", reference=img)
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["segs"], gts)
        np.testing.assert_allclose(npz["spacing"], (0.7, 0.8, 5.0))


def test_npz_2d_rgb(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (10, 12, 3)).astype(np.uint8)
    np.savez_compressed(tmp_path / "c.npz", imgs=imgs, gts=np.zeros((10, 12), np.uint8))
    img = read_image(tmp_path / "c.npz")
    assert img.is_rgb and img.spatial_shape == (10, 12)


@pytest.mark.parametrize("imgs", [np.ones((8, 9), np.complex128), np.full((8, 9), "a")])
def test_npz_of_complex_or_text_pixels_is_refused_when_read(tmp_path, imgs):
    """It was read, and every prompt then failed ('unsupported pixel type complex128'; the server's upload took it)."""
    np.savez(tmp_path / "c.npz", imgs=imgs)
    with pytest.raises(InputError, match=f"'imgs' has pixel type {imgs.dtype}"):
        read_image(tmp_path / "c.npz")


@pytest.mark.parametrize("shape", [(3, 6, 8), (6, 8)])
def test_a_mask_npz_medisam_wrote_reads_back_as_its_labels(tmp_path, shape):
    """medisam's npz output (``segs`` + ``spacing``, a video's or a volume's masks) was refused by its own
    reader ("npz has no 'imgs' array"); it reads back as the label map, a 3-slice one not taken for RGB."""
    labels = np.zeros(shape, np.uint8)
    labels[..., 1:3, 2:5] = 2
    out = write_mask(labels, tmp_path / "m.npz")
    back = read_image(out)
    assert back.kind == "labels" and not back.is_rgb and np.array_equal(back.array, labels)
    np.savez(tmp_path / "none.npz", other=labels)
    with pytest.raises(InputError, match="no 'imgs' \\(image\\) or 'segs' \\(mask\\) array"):
        read_image(tmp_path / "none.npz")
