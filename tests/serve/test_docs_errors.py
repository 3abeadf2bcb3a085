"""Offline /docs with a bearer scheme, and unexpected errors as JSON 500 without leaks."""

from __future__ import annotations

import http.client
from urllib.parse import urlparse

import pytest
from serve_data import TOKEN, disk, png_bytes

pytest.importorskip("swagger_ui_bundle")


def test_docs_page_and_assets_are_local_and_public(make_client):
    tc = make_client(token=TOKEN)
    page = tc.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "/docs-assets/swagger-ui-bundle.js" in html and "/docs-assets/swagger-ui.css" in html
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = tc.get(f"/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
    assert tc.get("/docs-assets/../settings.py").status_code in (401, 404)  # only the asset folder


def test_openapi_declares_bearer_scheme_and_the_token_still_guards_the_api(make_client):
    tc = make_client(token=TOKEN)
    spec = tc.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]}
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "/sessions/{sid}/box3d" in spec["paths"]
    assert tc.get("/capabilities").status_code == 401
    # what Swagger UI sends after Authorize
    assert tc.get("/capabilities", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_no_security_scheme_without_token(make_client):
    spec = make_client().get("/openapi.json").json()
    assert "security" not in spec and "securitySchemes" not in spec.get("components", {})


def _boom(*args, **kwargs):
    import tempfile

    raise RuntimeError(f"disk exploded at {tempfile.gettempdir()}/medisam-serve-1-abc/s1/upload.png")


def test_unexpected_error_is_json_500_and_the_new_session_is_discarded(make_client, monkeypatch):
    import medisam.serve.routes as routes

    tc = make_client()
    monkeypatch.setattr(routes, "read_upload", _boom)
    r = tc.post("/sessions", files={"file": ("a.png", png_bytes(disk()), "image/png")})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error: the server log has the details"}
    assert tc.get("/sessions").json() == {"open": 0}


def test_medisam_error_messages_carry_no_temp_path(make_client, monkeypatch):
    import medisam.serve.routes as routes
    from medisam.errors import InputError

    def bad(saved, *args, **kwargs):  # saved: the upload's path inside the session folder
        raise InputError(f"cannot read {saved}: broken")

    tc = make_client()
    monkeypatch.setattr(routes, "read_upload", bad)
    r = tc.post("/sessions", files={"file": ("a.png", png_bytes(disk()), "image/png")})
    assert r.status_code == 400
    assert r.json()["detail"] == "cannot read upload.png: broken"
    assert tc.get("/sessions").json() == {"open": 0}


def test_live_500_keeps_the_connection(tiny_model, monkeypatch):
    """On a real server the 500 arrives as a full response and the same connection serves the next request."""
    import medisam.serve.routes as routes
    from medisam.serve import ServerSettings, create_app
    from medisam.serve.background import BackgroundServer

    monkeypatch.setattr(routes, "read_upload", _boom)
    app = create_app(ServerSettings(model="litemedsam-tiny", token=TOKEN), model=tiny_model)
    with BackgroundServer(app) as url:
        u = urlparse(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        body = png_bytes(disk())
        boundary = "xyzBOUNDARY"
        data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
        conn.request("POST", "/sessions", body=data, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
        r = conn.getresponse()
        assert r.status == 500 and b"internal server error" in r.read()
        conn.request("GET", "/sessions", headers={"Authorization": f"Bearer {TOKEN}"})  # same connection
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b'{"open":0}'
        conn.close()


def test_client_takes_the_token_from_medisam_token(monkeypatch):
    """Client() without token= sends $MEDISAM_TOKEN, as `medisam serve` reads it; an explicit token wins."""
    from medisam.client import Client

    monkeypatch.setenv("MEDISAM_TOKEN", "from-the-environment")
    with Client("http://127.0.0.1:9") as c:
        assert c._http.headers["authorization"] == "Bearer from-the-environment"
    with Client("http://127.0.0.1:9", token="explicit-token") as c:
        assert c._http.headers["authorization"] == "Bearer explicit-token"
    monkeypatch.delenv("MEDISAM_TOKEN")
    with Client("http://127.0.0.1:9") as c:
        assert "authorization" not in c._http.headers
