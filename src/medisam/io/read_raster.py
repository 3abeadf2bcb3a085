"""PNG / JPEG / TIFF / BMP reader.

Pixels are decoded with OpenCV (``IMREAD_UNCHANGED``) because it keeps 16-bit grey and
16-bit RGB exactly, while Pillow reads the header cheaply for the size check. Colour
images become ``(Y, X, 3)`` RGB (alpha dropped); an RGB image whose three channels are
identical becomes grey ``(Y, X)``, so that greyscale scans saved as RGB are treated as
the single-channel images they are. Multi-page TIFFs of equally sized grey pages are
read as a ``(Z, Y, X)`` stack with unit spacing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from medisam.errors import ImageTooLargeError, InputError
from medisam.io.label_png import is_label_image, read_label_png
from medisam.io.limits import check_size
from medisam.io.medical_image import MedicalImage
from medisam.io.registry import ReadOptions, register_reader

log = logging.getLogger(__name__)

RASTER_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def raster_header(path: Path) -> tuple[tuple[int, ...], int, bool]:
    """(shape, number of pages, whether it is a label PNG medisam wrote) from the file header,
    without decoding pixels. The shape's last axis counts colour bands, alpha left out (the
    reader drops it)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            pages = int(getattr(im, "n_frames", 1))
            bands = len([b for b in im.getbands() if b != "A"])
            label_png = is_label_image(im)
    except Image.DecompressionBombError as exc:  # above twice Pillow's MAX_IMAGE_PIXELS
        n = re.search(r"\((\d+) pixels\)", str(exc))
        voxels = int(n.group(1)) if n else 0
        raise ImageTooLargeError(f"{path}: image has {voxels} pixels, more than the limit of "
                                 f"{2 * Image.MAX_IMAGE_PIXELS} for this format", voxels=voxels,
                                 limit=2 * int(Image.MAX_IMAGE_PIXELS)) from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(f"{path}: cannot read image header ({type(exc).__name__}: {exc})") from exc
    shape = (pages, h, w, bands) if pages > 1 else (h, w, bands)
    return shape, pages, label_png


def _to_rgb_or_grey(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """OpenCV BGR(A)/grey -> RGB or grey; grey-looking RGB becomes grey."""
    if arr.ndim == 2:
        return arr, False
    if arr.shape[2] == 1:
        return arr[..., 0], False
    if arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    else:
        raise InputError(f"unsupported number of colour channels: {arr.shape[2]}")
    if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        return np.ascontiguousarray(arr[..., 0]), False
    return arr, True


def read_raster(path: Path, opts: ReadOptions) -> MedicalImage:
    """Read a 2D raster image (8/16-bit, grey or colour) as a MedicalImage with unit spacing."""
    shape, pages, label_png = raster_header(path)
    check_size(shape, path, opts.max_voxels)
    if label_png:  # a mask medisam wrote: its label values
        labels = MedicalImage.from_array(read_label_png(path), is_rgb=False)
        return replace(labels, kind="labels", source={"format": "png"})
    data = np.fromfile(path, dtype=np.uint8)
    if pages > 1:
        ok, frames = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
        if not ok or not frames:
            raise InputError(f"{path}: cannot decode multi-page image")
        frames = [_to_rgb_or_grey(f) for f in frames]
        if any(rgb for _, rgb in frames) or len({f.shape for f, _ in frames}) != 1:
            raise InputError(f"{path}: multi-page image with colour or differently sized pages is not supported")
        arr, is_rgb = np.stack([f for f, _ in frames]), False
    else:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise InputError(f"{path}: cannot decode image (corrupt or unsupported encoding)")
        arr, is_rgb = _to_rgb_or_grey(arr)
    if arr.dtype == np.int8 or arr.dtype.kind not in "uif":
        raise InputError(f"{path}: unsupported pixel type {arr.dtype}")
    image = MedicalImage.from_array(arr, modality=opts.modality or "OT", is_rgb=is_rgb)
    image = replace(image, source={"format": path.suffix.lower().lstrip(".").replace("jpeg", "jpg")})
    log.debug("read %s: shape %s dtype %s rgb=%s", path, arr.shape, arr.dtype, is_rgb)
    return image


register_reader(RASTER_EXTENSIONS, read_raster)
