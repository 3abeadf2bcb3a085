"""The one parser of an intensity window given as text (CLI options, server fields, configs)."""

from __future__ import annotations

import math

from medisam.errors import InputError
from medisam.io.intensity import WINDOW_PRESETS


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
    if not (math.isfinite(width) and math.isfinite(level)) or width <= 0:
        raise InputError(f"{what} {text!r} needs a finite WIDTH > 0 and a finite LEVEL")
    return (width, level)
