"""Fixtures for the server tests: an app factory on the tiny random model, images, a DICOM series."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture()
def make_client(tiny_model):
    """``make_client(**settings) -> TestClient`` (lifespan started); closed after the test."""
    from fastapi.testclient import TestClient

    from medisam.serve import ServerSettings, create_app

    opened = []

    def make(**overrides):
        overrides.setdefault("allowed_hosts", ("testserver",))  # TestClient's Host header
        settings = ServerSettings(model="litemedsam-tiny", device="cpu", **overrides)
        tc = TestClient(create_app(settings, model=tiny_model))
        tc.__enter__()
        opened.append(tc)
        return tc

    yield make
    for tc in opened:
        tc.__exit__(None, None, None)
