"""Reader for the CVPR 2024 "MedSAM on Laptop" challenge ``.npz`` files.

Keys: ``imgs`` (2D ``(H, W, 3)`` uint8 or 3D ``(D, H, W)``), optional ``gts`` (labels, same
grid), ``boxes`` (prompts) and ``spacing``. A file with ``segs`` and no ``imgs`` (a mask medisam
wrote, as the challenge's outputs are) is read as that label map.

Spacing order: the challenge's preprocessing (MedSAM ``pre_CT_MR.py``) saves
``spacing=img_sitk.GetSpacing()``, i.e. ITK ``(x, y, z)`` order, although ``imgs`` is
``(z, y, x)``. medisam therefore reads ``spacing`` as ITK order, which is also
MedicalImage's order, and the npz writer writes it back the same way. (The challenge's
own NSD script passes it unchanged to a ``(D, H, W)`` array; for in-plane-isotropic CT the
two orders differ only in which axis gets the slice thickness.)
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from medisam.errors import InputError
from medisam.io.limits import check_size
from medisam.io.medical_image import MedicalImage
from medisam.io.registry import ReadOptions, register_reader

log = logging.getLogger(__name__)


def _npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of ``key`` read from the .npy header inside the zip, without decompressing data."""
    with zipfile.ZipFile(path) as zf:
        with zf.open(f"{key}.npy") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(fh)
    return tuple(shape)


def read_npz(path: Path, opts: ReadOptions) -> MedicalImage:
    """Read a CVPR24-challenge npz; ``gts``/``boxes`` go to ``source``."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path}: not a readable .npz file") from exc
    # an image ("imgs"), else a mask medisam wrote ("segs": its npz output, a video's too), read as labels
    key = "imgs" if "imgs" in names else "segs" if "segs" in names else None
    if key is None:
        raise InputError(f"{path}: npz has no 'imgs' (image) or 'segs' (mask) array "
                         f"(keys: {', '.join(sorted(names)) or 'none'})")
    try:
        check_size(_npz_shape(path, key), path, opts.max_voxels)
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}: corrupt '{key}' array header") from exc
    try:
        with np.load(path, allow_pickle=False) as npz:
            imgs = np.asarray(npz[key])
            extras = {k: np.asarray(npz[k]) for k in ("gts", "boxes", "spacing") if k in npz.files}
    except Exception as exc:  # zlib.error, ValueError, EOFError...
        raise InputError(f"{path}: cannot read npz arrays ({type(exc).__name__})") from exc
    if imgs.dtype.kind not in "biuf":  # complex or text: refused at reading, not at the first prompt
        raise InputError(f"{path}: 'imgs' has pixel type {imgs.dtype}; medisam reads bool, integer and "
                         "floating-point images")
    n_sp = np.size(extras["spacing"]) if "spacing" in extras else 0
    if key == "imgs" and imgs.ndim == 3 and imgs.shape[-1] == 3 and n_sp < 3:
        is_rgb = True  # 2D colour image (H, W, 3); 3D volumes come with a 3-value spacing
    elif imgs.ndim in (2, 3):
        is_rgb = False
    else:
        raise InputError(f"{path}: 'imgs' must be (H, W, 3), (H, W) or (D, H, W), got {imgs.shape}")
    nd = imgs.ndim - (1 if is_rgb else 0)
    spacing = None
    if "spacing" in extras:
        sp = [float(v) for v in np.ravel(extras["spacing"])]
        if len(sp) >= nd:
            spacing = tuple(sp[:nd])
        else:
            log.warning("%s: spacing %s does not fit a %dD image; using 1 mm", path, sp, nd)
    image = MedicalImage.from_array(imgs, spacing=spacing, modality=opts.modality or "OT", is_rgb=is_rgb)
    if key == "segs":
        image = replace(image, kind="labels")
    source = {"format": "npz"}
    for key in ("gts", "boxes"):
        if key in extras:
            source[key] = extras[key]
    return replace(image, source=source)


register_reader((".npz",), read_npz)
