"""Fixtures of the web UI's tests."""

from __future__ import annotations

import pytest

from medisam.app import AppState


@pytest.fixture()
def state(tiny_model):  # noqa: ANN001, ANN201 - a PromptableModel -> AppState
    """The web UI's logic on the tiny random model, closed after the test."""
    st = AppState(tiny_model)
    yield st
    st.close()
