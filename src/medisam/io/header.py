"""Image size from the file header, without decoding pixels (for checks before heavy work).

:func:`read_header` answers for raster images (Pillow's lazy open) and SimpleITK formats
(``ImageFileReader.ReadImageInformation``); it returns ``None`` for everything else (DICOM
folders, npz, videos), whose size is known only once :func:`~medisam.io.read_image` ran.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from medisam.errors import InputError


@dataclass(frozen=True)
class Header:
    """What a header says about an image.

    Attributes:
        shape: spatial array shape, ``(Y, X)`` for 2D and ``(Z, Y, X)`` for a volume / page stack.
        channels: components per pixel (1 grey, 3 RGB...) or, for a 4D file, volumes.
        pixel_bytes: bytes of one spatial pixel/voxel, all channels and components together,
            where the header states its pixel type (SimpleITK formats); else None.
    """

    shape: tuple[int, ...]
    channels: int = 1
    pixel_bytes: int | None = None

    @property
    def nbytes(self) -> int | None:
        """Bytes of the decoded pixels, where the header states the pixel type."""
        return None if self.pixel_bytes is None else math.prod(self.shape) * self.pixel_bytes

    @property
    def is_volume(self) -> bool:
        return len(self.shape) == 3


def _raster(path: Path) -> Header:
    from medisam.io.read_raster import raster_header

    shape, _pages, _label_png = raster_header(path)  # the reader's own header check, size limit included
    return Header(tuple(shape[:-1]), shape[-1])


def _sitk(path: Path) -> Header:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{path}: cannot read image header (corrupt or unsupported file)") from None
    size = reader.GetSize()
    comps = reader.GetNumberOfComponents()
    bits = re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    item = comps * (int(bits.group(1)) // 8 if bits else 8)
    if len(size) == 4:
        return Header(tuple(reversed(size[:3])), size[3], item * size[3])
    return Header(tuple(int(s) for s in reversed(size)), comps, item)


RASTER = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SITK = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def read_header(path: str | Path) -> Header | None:
    """The header of a raster or SimpleITK file; ``None`` for other inputs or a missing file."""
    p = Path(path).expanduser()
    if not p.is_file():
        return None
    name = p.name.lower()
    if name.endswith(RASTER):
        return _raster(p)
    if name.endswith(SITK):
        return _sitk(p)
    return None
