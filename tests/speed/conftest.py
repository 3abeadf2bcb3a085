"""Speed-area fixtures: a private export cache so tests never touch ~/.cache/medisam."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def medisam_cache(tmp_path_factory):
    """Point ``$MEDISAM_CACHE`` at a session temp folder (exports are shared within the session)."""
    folder = tmp_path_factory.mktemp("medisam-cache")
    old = os.environ.get("MEDISAM_CACHE")
    os.environ["MEDISAM_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("MEDISAM_CACHE", None)
    else:
        os.environ["MEDISAM_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_onnx(medisam_cache):
    from medisam.models import load_model

    return load_model("litemedsam-tiny", device="cpu", backend="onnx")


@pytest.fixture
def auto_env(monkeypatch, medisam_cache):
    """``backend="auto"`` as a user gets it: no ``$MEDISAM_BACKEND`` pin (the root conftest sets
    it to torch for the rest of the suite) and no speed profile yet."""
    monkeypatch.delenv("MEDISAM_BACKEND", raising=False)
    (medisam_cache / "speed_profile.json").unlink(missing_ok=True)
    yield medisam_cache
    (medisam_cache / "speed_profile.json").unlink(missing_ok=True)
