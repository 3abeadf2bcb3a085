"""The one parser of an intensity window given as text (CLI options, server fields, configs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medisam.errors import InputError
from medisam.io.intensity import WINDOW_PRESETS, check_window, default_window, resolve_window

if TYPE_CHECKING:
    from medisam.io.medical_image import MedicalImage


def parse_window(text: str | None, what: str = "window") -> str | tuple[float, float] | None:
    """A preset name (``lung``, ``soft-tissue``...) or ``"WIDTH,LEVEL"`` -> the preset key or
    ``(width, level)``; None or an empty string -> None (the modality's default).

    ``what`` names the value in error messages (the CLI passes its option, ``--window``).
    """
    if text is None or not str(text).strip():
        return None
    text = str(text)
    if "," not in text:
        key = text.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in WINDOW_PRESETS:
            raise InputError(f"unknown {what} {text!r}; choose one of {', '.join(WINDOW_PRESETS)} or WIDTH,LEVEL")
        return key
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        width, level = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"{what} {text!r} must be a preset name or two numbers WIDTH,LEVEL") from None
    return check_window(width, level, f"{what} {text!r}")


def hu_window_warning(window: str | tuple[float, float] | None, image: MedicalImage, name: str = "the image",
                      what: str = "window", instead: str = "use the modality's default window") -> str | None:
    """The warning (without ``warning:``) every surface gives when a named window (a CT preset in
    Hounsfield units) is applied to an image that is not in HU: an MR, ultrasound, PET... or an image
    of no named modality whose values never go below 0 (air is -1000 HU, fat about -100); None when
    there is nothing to say. The window is applied as asked; the sentence says why the model may see a
    blank or white plane, and what to give instead (``instead``, e.g. the CLI's "leave --window out").

    ``name`` names the image, ``what`` the window's field or option. Cheap: a CT, or a pair of
    numbers, reads no voxel; else one min and max pass.
    """
    if not isinstance(window, str) or image.array.size == 0:
        return None
    kind = image.modality.upper()
    if kind == "CT":  # in HU by its modality: no pass over the voxels
        return None
    lowest = float(image.array.min())
    if kind == "OT" and lowest < 0:
        return None
    highest = float(image.array.max())
    width, level = resolve_window(window)
    units = f"{'' if kind == 'OT' else kind + ', '}values {lowest:g} .. {highest:g}"
    return (f"{what} {window.replace('_', '-')} is a CT window in Hounsfield units ({level - width / 2:g} .. "
            f"{level + width / 2:g}), but {name} ({units}) is not in HU: it is clipped there as asked; give "
            f"WIDTH,LEVEL in the image's own units, or {instead} (then: "
            f"{default_window(image.array, kind, image.is_rgb)})")
