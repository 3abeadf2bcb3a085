"""Deployment: the REST server (``create_app``) and the interactive session it shares with the web UI.

``medisam.serve.interactive`` needs only the core dependencies; the FastAPI app needs the
``serve`` extra (imported when ``create_app`` is called).
"""

from medisam.serve.interactive import InteractiveSession, SliceResult
from medisam.serve.settings import ServerSettings


def create_app(settings: ServerSettings | None = None, model=None):  # noqa: ANN001, ANN201
    """Build the FastAPI app (see :func:`medisam.serve.app.create_app`)."""
    from medisam.serve.app import create_app as _create

    return _create(settings, model)


__all__ = ["InteractiveSession", "ServerSettings", "SliceResult", "create_app"]
