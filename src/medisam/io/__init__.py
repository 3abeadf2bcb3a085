"""File input/output for medisam: the only package that touches image files.

``read_image`` turns any supported file or DICOM folder into a :class:`MedicalImage`;
``write_mask`` and ``write_overlay_png`` write results; ``to_display``/``apply_window``
map intensities to the [0, 255] RGB that SAM-family encoders take.
"""

from medisam.io.atomic import atomic_write
from medisam.io.intensity import WINDOW_PRESETS, apply_window, to_display
from medisam.io.limits import DEFAULT_MAX_VOXELS
from medisam.io.medical_image import MedicalImage
from medisam.io.overlay import write_overlay_png
from medisam.io.read import read_image
from medisam.io.read_dicom import SeriesInfo, list_dicom_series
from medisam.io.registry import READERS, register_reader
from medisam.io.write_mask import WRITERS, write_mask

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MedicalImage",
    "READERS",
    "SeriesInfo",
    "WINDOW_PRESETS",
    "WRITERS",
    "apply_window",
    "atomic_write",
    "list_dicom_series",
    "read_image",
    "register_reader",
    "to_display",
    "write_mask",
    "write_overlay_png",
]
