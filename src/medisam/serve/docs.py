"""Offline API docs: Swagger UI from the ``swagger-ui-bundle`` package and a bearer scheme.

``/docs`` and ``/openapi.json`` are public (they hold no data, only the API's shape); the
page's assets are served from ``/docs-assets`` (never a CDN), and the spec declares a
``bearer`` security scheme so Swagger UI's *Authorize* button sends the token on API calls.
"""

from __future__ import annotations

from pathlib import Path

#: URL prefix of the Swagger UI assets.
ASSETS = "/docs-assets"
#: Paths (and the asset prefix) reachable without the token.
DOCS_PATHS = frozenset({"/docs", "/openapi.json"})


def swagger_dir() -> Path | None:
    """The folder with ``swagger-ui-bundle.js`` and ``swagger-ui.css``, or None when not installed."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def add_docs(app, bearer: bool) -> None:  # noqa: ANN001 - a FastAPI app
    """Mount ``/docs`` (local assets) and make ``/openapi.json`` declare the bearer scheme."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            if bearer:
                spec.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer",
                               "description": "the server's token ($MEDISAM_TOKEN or the one it printed)"}}
                spec["security"] = [{"bearer": []}]
                spec["paths"].get("/healthz", {}).get("get", {})["security"] = []
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi
    assets = swagger_dir()

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        return JSONResponse(openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return HTMLResponse("<p>Swagger UI is not installed (pip install swagger-ui-bundle); "
                                "the API spec is at <a href='/openapi.json'>/openapi.json</a>.</p>", status_code=501)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
                                   swagger_ui_parameters={"persistAuthorization": True})

    if assets is not None:
        app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")
