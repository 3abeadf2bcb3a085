"""The catalogue of model specs: ``register`` and ``get_spec`` (the entries are added by
:mod:`medisam.models.registry` and :mod:`medisam.models.sam2_family`)."""

from __future__ import annotations

from medisam.errors import ModelError
from medisam.models.spec import ModelSpec

MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the registry (names are unique)."""
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name`` (ModelError listing the known names otherwise)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
