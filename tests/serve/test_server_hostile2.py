"""Hostile-client audit, part 2 (/work/notes/server_audit2.md): runs with a token, browsers of a listed
origin (CORS), and what a refused upload leaves in the system temp folder."""

from __future__ import annotations

import os
import tempfile

import pytest
from serve_data import TOKEN

from medisam.errors import InputError

APP = "https://app.example.org"


@pytest.mark.parametrize("header", [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"])
def test_the_bearer_scheme_is_case_insensitive(make_client, header):
    """RFC 7235: the scheme is case-insensitive and the token follows one or more spaces (``bearer`` was a 401)."""
    tc = make_client(token=TOKEN)
    assert tc.get("/capabilities", headers={"Authorization": header}).status_code == 200


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "bearer",
                                    f"Bearer{TOKEN}", f"xbearer {TOKEN}", ""])
def test_a_wrong_token_or_scheme_stays_401(make_client, header):
    tc = make_client(token=TOKEN)
    r = tc.get("/capabilities", headers={"Authorization": header})
    assert r.status_code == 401
    assert r.json() == {"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"}


@pytest.mark.parametrize("token", ["my secret token", "secret-token\n", "\tsecret-token", "tést-token-123",
                                   "x" * 5000, "secret\x00token"])
def test_a_token_no_client_can_send_is_refused_at_start(token):
    """A space, line break, tab, accent or NUL cannot travel in an Authorization header (or is trimmed):
    such a server answered 401 to everyone; a token over 4096 characters hardly fits a request head."""
    from medisam.serve import ServerSettings

    with pytest.raises(InputError, match="token must be"):
        ServerSettings(token=token)


def test_tokens_of_visible_ascii_are_accepted():
    from medisam.serve import ServerSettings
    from medisam.serve.auth import generate_token

    for token in (generate_token(), "abc~!#$%&'*+-.^_`|", "x" * 4096):
        assert ServerSettings(token=token).token == token


def test_a_listed_origin_gets_cors_and_still_needs_the_token(make_client):
    """``--allowed-origin`` allowed nothing: the browser's preflight (sent without the token) was a 401
    and no answer carried Access-Control-Allow-Origin, so a browser hid every answer."""
    tc = make_client(token=TOKEN, allowed_origins=(APP,))
    pre = tc.options("/sessions", headers={"Origin": APP, "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code == 204, pre.text
    assert pre.headers["access-control-allow-origin"] == APP
    assert "authorization" in pre.headers["access-control-allow-headers"]
    assert "POST" in pre.headers["access-control-allow-methods"]
    ok = tc.get("/capabilities", headers={"Origin": APP, "Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
    refused = tc.get("/capabilities", headers={"Origin": APP})  # the script can read why
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP


def test_other_origins_get_no_cors(make_client):
    tc = make_client(token=TOKEN, allowed_origins=(APP,))
    for origin in ("https://evil.example", "null", APP + ".evil.example"):
        r = tc.options("/sessions", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    same = tc.get("/capabilities", headers={"Origin": "http://testserver", "Authorization": f"Bearer {TOKEN}"})
    assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
    plain = tc.options("/sessions", headers={"Origin": APP})  # not a preflight: the token check answers
    assert plain.status_code == 401


def test_a_refused_upload_leaves_nothing_in_the_system_temp_folder(make_client, monkeypatch, tmp_path):
    """Starlette spools a multipart upload over 1 MiB to an (unnamed) file in the temp folder before the
    route runs; a refusal (bad type, unreadable, unknown session, over the limit) must not leave it open."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tc = make_client(max_upload_bytes=3 << 20)
    junk = os.urandom(2 << 20)
    for url, name, data, status in (("/sessions", "x.exe", junk, 400), ("/sessions", "x.nii.gz", junk, 400),
                                    ("/sessions/nope/guides", "g.nii", junk, 404),
                                    ("/sessions", "x.nii", os.urandom(5 << 20), 413)):
        r = tc.post(url, files={"file": (name, data, "application/octet-stream")})
        assert r.status_code == status, r.text
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [p for p in held if p.startswith(str(tmp_path))]
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("medisam-serve")] == []
