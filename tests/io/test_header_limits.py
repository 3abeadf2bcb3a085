"""The pre-check header reader reports an oversized raster as too large, like the reader does."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medisam.errors import ImageTooLargeError
from medisam.io.header import read_header


def _forged_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR claims ``width x height`` (Pillow reads only the header lazily)."""
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 4  # signature, then the chunk length; the chunk type "IHDR" and its data follow
    body = bytes(data[ihdr:ihdr + 4]) + struct.pack(">II", width, height) + bytes(data[ihdr + 12:ihdr + 17])
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_oversized_png_header_is_a_size_error(tmp_path: Path) -> None:
    png = _forged_png(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ImageTooLargeError, match="400000000 pixels, more than the limit"):
        read_header(png)


def test_rgba_header_counts_colour_bands(tmp_path: Path) -> None:
    png = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((5, 7, 4), np.uint8), "RGBA").save(png)
    header = read_header(png)
    assert header is not None and header.shape == (5, 7) and header.channels == 3


@pytest.mark.parametrize("dtype,shape,channels", [(np.uint16, (5, 6, 7), 1), (np.float32, (3, 5, 6, 7), 3)])
def test_sitk_header_states_the_decoded_size(tmp_path, dtype, shape, channels):
    """``Header.nbytes`` from the header alone equals the decoded array's bytes (a 4D file: all volumes)."""
    import SimpleITK as sitk

    array = np.zeros(shape, dtype=dtype)
    path = tmp_path / "v.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    header = read_header(path)
    assert header.shape == shape[-3:] and header.channels == channels
    assert header.nbytes == array.nbytes
