"""PNG label maps that people can see and programs read back exactly.

Written by :func:`encode_label_png` (``write_mask(..., "x.png")``):

* one object (labels 0/1): 8-bit grey, background 0 and object **255** (white);
* labels up to 255: a **palette** PNG whose pixel indices are the label values (0 black,
  each label its own colour), so viewers show colours and readers get the labels;
* labels above 255: 16-bit grey holding the label values (no viewer shows these well).

:func:`read_label_png` undoes each case: palette indices are the labels, and a grey PNG
holding only 0 and 255 is a single-object mask (255 -> label 1). Other grey PNGs (0/1,
0..N label maps from datasets) are read as they are. Files written here carry a PNG text
chunk ``medisam: labels``, so :func:`~medisam.io.read_image` returns their label values too.
"""

from __future__ import annotations

import colorsys
import io
from pathlib import Path

import numpy as np

from medisam.errors import InputError

#: The value an object of a single-object mask PNG gets.
OBJECT_VALUE = 255
#: PNG text chunk marking a label map written by medisam.
MARKER = ("medisam", "labels")


def palette(n: int = 256) -> list[int]:
    """Flat RGB palette: 0 black, then well separated hues (golden-ratio steps)."""
    colours = [(0, 0, 0)]
    for i in range(1, n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return [c for rgb in colours for c in rgb]


def encode_label_png(labels: np.ndarray, top: int | None = None) -> bytes:
    """PNG bytes of a 2D non-negative integer label map (see the module docstring).

    ``top`` is the largest label of the whole output (the frames of a label video share one
    encoding); by default this map's own maximum.
    """
    from PIL import Image, PngImagePlugin

    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise InputError(f"a PNG mask must be 2D, got shape {arr.shape}")
    top = max(int(arr.max(initial=0)), int(top or 0))
    if top > 65535:
        raise InputError("label values above 65535 do not fit a PNG")
    if top <= 1:
        im = Image.fromarray((arr.astype(np.uint8) * OBJECT_VALUE), mode="L")
    elif top <= 255:
        im = Image.fromarray(arr.astype(np.uint8), mode="P")
        im.putpalette(palette())
    else:
        im = Image.fromarray(arr.astype(np.uint16))
    info = PngImagePlugin.PngInfo()
    info.add_text(*MARKER)
    buf = io.BytesIO()
    im.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def is_label_image(im) -> bool:  # noqa: ANN001 - an open PIL image
    """True for an opened PNG that :func:`encode_label_png` wrote (its header marker)."""
    return im.format == "PNG" and im.info.get(MARKER[0]) == MARKER[1]


def is_label_png(path: str | Path) -> bool:
    """True for a PNG mask written by :func:`encode_label_png` (reads the header only)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return is_label_image(im)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the pixel reader
        return False


def read_label_png(path: str | Path) -> np.ndarray:
    """The label map of a PNG mask: palette indices, 0/255 -> 0/1, other grey values as stored."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("RGB", "RGBA", "LA"):
                arr = np.asarray(im.convert("RGB"))
                if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                    raise InputError(f"{path}: a colour PNG is not a label map; save labels as grey or "
                                     "palette PNG")
                arr = arr[..., 0]
            else:
                arr = np.asarray(im)
    except InputError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(f"{path}: cannot read mask ({type(exc).__name__}: {exc})") from None
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if mode != "P" and arr.size and int(arr.max()) == OBJECT_VALUE:
        values = np.unique(arr)
        if len(values) <= 2 and values[0] in (0, OBJECT_VALUE):
            return (arr == OBJECT_VALUE).astype(np.uint8)
    if arr.dtype.kind == "i":
        arr = arr.astype(np.uint16 if arr.max(initial=0) < 65536 else np.uint32)
    return arr


def read_label_map(path: str | Path) -> np.ndarray:
    """A mask file's label array: PNGs by :func:`read_label_png`, other formats as stored."""
    path = Path(path)
    if path.name.lower().endswith(".png"):
        return read_label_png(path)
    from medisam.io.read import read_image

    raw = read_image(path)
    return raw.array[..., 0] if raw.is_rgb else raw.array
