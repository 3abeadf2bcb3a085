"""User-facing error types.

Every error a user can cause (bad file, bad prompt, missing weights) is a
:class:`MedisamError` whose message is one line that names the problem. The CLI
prints that line and exits with code 2; library callers can catch the class.
"""

from __future__ import annotations


class MedisamError(Exception):
    """Base class for errors caused by input, configuration or environment."""


class InputError(MedisamError):
    """A file, array or prompt that cannot be used (missing, corrupt, wrong shape, NaN...)."""


class ImageTooLargeError(InputError):
    """An image with more voxels than the configured limit (checked from the header).

    Attributes:
        voxels: the image's voxel count (times channels).
        limit: the limit it exceeded.
    """

    def __init__(self, message: str, voxels: int = 0, limit: int = 0):
        super().__init__(message)
        self.voxels = voxels
        self.limit = limit


class PromptError(InputError):
    """A prompt that is malformed or lies outside the image."""


class ModelError(MedisamError):
    """Unknown model, missing or corrupt checkpoint, mismatched state dict."""


class CheckpointError(ModelError):
    """A weights file that cannot be used: missing, corrupt, of another model or architecture. The
    file is at fault, so no other backend is tried with it."""


class OutputExistsError(MedisamError):
    """An output file exists and ``force`` was not given."""


class MissingExtraError(MedisamError):
    """An optional dependency is not installed; the message says which extra to install."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``str(exc)`` (at most ``limit`` characters), or the class name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def require(module: str, extra: str):
    """Import ``module`` or raise a one-line error naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"'{module}' is not installed: pip install 'medisam[{extra}]'"
        ) from exc
