"""medisam: Segment Anything for medical images, volumes and videos.

The public API is imported lazily so that ``import medisam`` stays fast and sets nothing::

    import medisam
    model = medisam.load_model("litemedsam")          # bundled weights, offline
    image = medisam.read_image("ct_series_dir/")
    pred = medisam.Predictor(model).set_image(image, slice=45, window="abdomen")
    result = pred.predict(box=(x0, y0, x1, y1))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "medisam.models",
    "MODELS": "medisam.models",
    "Predictor": "medisam.predict",
    "Prediction": "medisam.predict",
    "read_image": "medisam.io",
    "write_mask": "medisam.io",
    "MedicalImage": "medisam.io",
    "Box": "medisam.prompts",
    "Points": "medisam.prompts",
    "MaskPrompt": "medisam.prompts",
    "Box3D": "medisam.prompts",
    "MedisamError": "medisam.errors",
    "VolumeSession": "medisam.predict",
    "VideoSession": "medisam.predict",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medisam' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
