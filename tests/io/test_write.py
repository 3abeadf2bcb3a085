"""write_mask / write_overlay_png / atomic_write: formats, refusal to overwrite, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medisam.errors import InputError, OutputExistsError
from medisam.io import MedicalImage, atomic_write, read_image, write_mask, write_overlay_png


@pytest.fixture()
def image_nii(tmp_path) -> MedicalImage:
    img = sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5))
    img.SetSpacing((0.5, 0.75, 2.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    sitk.WriteImage(img, str(tmp_path / "in.nii.gz"))
    return read_image(tmp_path / "in.nii.gz")


def test_existing_output_refused_then_forced(tmp_path, image_nii):
    mask = np.ones(image_nii.array.shape, np.uint8)
    out = write_mask(mask, tmp_path / "m.nii.gz", reference=image_nii)
    with pytest.raises(OutputExistsError, match="force"):
        write_mask(mask * 2, out, reference=image_nii)
    assert read_image(out).array.max() == 1
    write_mask(mask * 2, out, reference=image_nii, force=True)
    assert read_image(out).array.max() == 2


def test_input_never_overwritten(tmp_path, image_nii, ct_series):
    before = (tmp_path / "in.nii.gz").read_bytes()
    with pytest.raises(InputError, match="input file"):
        write_mask(np.ones(image_nii.array.shape, np.uint8), tmp_path / "in.nii.gz", reference=image_nii, force=True)
    assert (tmp_path / "in.nii.gz").read_bytes() == before
    folder, _, files = ct_series
    ct = read_image(folder)
    with pytest.raises(InputError, match="input file"):
        write_mask(np.ones(ct.array.shape, np.uint8), files[1], reference=ct, force=True)
    # a mask read from a file is protected too
    m = read_image(write_mask(np.ones(image_nii.array.shape, np.uint8), tmp_path / "m.nii.gz", reference=image_nii))
    with pytest.raises(InputError, match="input file"):
        write_mask(m, tmp_path / "m.nii.gz", force=True)


def test_parent_dirs_and_no_leftovers(tmp_path, image_nii):
    out = write_mask(np.zeros(image_nii.array.shape, np.uint8), tmp_path / "a" / "b" / "m.nrrd", reference=image_nii)
    assert out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["m.nrrd"]
    with pytest.raises(InputError, match="2D"):  # fails inside the atomic block
        write_mask(np.zeros(image_nii.array.shape, np.uint8), tmp_path / "a" / "m.png", reference=image_nii)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def test_png_masks_are_visible_and_read_back(tmp_path):
    from medisam.io.label_png import read_label_png

    mask = np.zeros((6, 7), bool)
    mask[2:4, 3:5] = True
    out = write_mask(mask, tmp_path / "m.png")
    im = Image.open(out)
    assert im.mode == "L" and set(np.unique(np.asarray(im))) == {0, 255}  # one object: white on black
    np.testing.assert_array_equal(read_label_png(out), mask.astype(np.uint8))
    np.testing.assert_array_equal(read_image(out).array, mask.astype(np.uint8))  # marked as a label map
    labels = np.zeros((6, 7), np.uint8)
    labels[1:3, 1:3], labels[4:6, 4:7] = 2, 7
    im = Image.open(write_mask(labels, tmp_path / "p.png"))
    assert im.mode == "P" and im.getpalette()[7 * 3: 7 * 3 + 3] != [0, 0, 0]  # coloured, indices = labels
    np.testing.assert_array_equal(read_label_png(tmp_path / "p.png"), labels)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png").array, labels)
    many = np.arange(42).reshape(6, 7) * 10
    np.testing.assert_array_equal(read_label_png(write_mask(many, tmp_path / "m16.png")), many)
    np.testing.assert_array_equal(read_image(tmp_path / "m16.png").array, many)


def test_bad_masks(tmp_path, image_nii):
    with pytest.raises(InputError, match="integer"):
        write_mask(np.full((4, 5), 0.5), tmp_path / "a.png")
    with pytest.raises(InputError, match="negative"):
        write_mask(np.full((4, 5), -1), tmp_path / "a.png")
    with pytest.raises(InputError, match="does not match"):
        write_mask(np.zeros((2, 4, 5), np.uint8), tmp_path / "a.nii.gz", reference=image_nii)
    with pytest.raises(InputError, match="unsupported mask format"):
        write_mask(np.zeros((4, 5), np.uint8), tmp_path / "a.jpg")


def test_mask_geometry_from_reference(tmp_path, image_nii):
    back = read_image(write_mask(np.ones(image_nii.array.shape, np.uint8), tmp_path / "m.mha", reference=image_nii))
    assert back.spacing == image_nii.spacing and back.origin == image_nii.origin
    assert back.direction == image_nii.direction


def test_overlay(tmp_path):
    img = np.full((20, 30, 3), 100.0, np.float32)
    labels = np.zeros((20, 30), np.uint8)
    labels[5:15, 5:15] = 1
    labels[2:4, 20:28] = 2
    out = write_overlay_png(img, labels, tmp_path / "o" / "ov.png")
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.shape == (20, 30, 3)
    assert (rgb[0, 0] == 100).all()  # background untouched
    assert not (rgb[10, 10] == 100).all() and not (rgb[10, 10] == rgb[5, 5]).all()  # fill vs contour
    assert not (rgb[3, 21] == rgb[10, 10]).all()  # labels get different colours
    with pytest.raises(OutputExistsError):
        write_overlay_png(img, labels, out)
    with pytest.raises(InputError):
        write_overlay_png(img, labels[:5], tmp_path / "x.png")


def test_atomic_write_failure_leaves_nothing(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]


def test_an_unwritable_output_is_named_by_its_own_path(tmp_path, monkeypatch):
    """`-o /proc/m.png` loaded the model, then failed naming a temporary folder
    ('/proc/.medisam-tmp-wqpfzpe6'); a folder the user may not write in is told before any work."""
    import errno
    import os
    import tempfile

    from medisam.io.atomic import check_output

    def refuse(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / ".medisam-tmp-x"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(OSError, match=r"^cannot write .*m\.png: No such file or directory$"):
        with atomic_write(tmp_path / "m.png") as tmp:
            tmp.write_bytes(b"x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match=r"m\.png: cannot write in .* \(permission denied\)"):
        check_output(tmp_path / "sub" / "m.png", force=False)
