"""``medisam app``: a Gradio web UI over the same interactive sessions as the REST server."""

from medisam.app.state import AppState


def build_ui(model, max_voxels=1 << 27):  # noqa: ANN001, ANN201
    """Build the Gradio Blocks (needs the ``app`` extra); see :func:`medisam.app.ui.build_ui`."""
    from medisam.app.ui import build_ui as _build

    return _build(model, max_voxels)


__all__ = ["AppState", "build_ui"]
