"""``medisam app`` starts on a busy machine: Gradio's one 3 s check of its own server is given time."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")


def test_the_startup_check_waits_for_a_slow_server(monkeypatch):
    import gradio.networking as networking

    from medisam.cli.app_cmd import patient_startup_check

    answers = iter([False, False, True])  # two 3 s timeouts, then the busy server answers
    monkeypatch.setattr(networking, "url_ok", lambda url: next(answers))
    quick = networking.url_ok
    with patient_startup_check(seconds=30.0):
        assert networking.url_ok("http://127.0.0.1:7860/") is True  # it stopped the app at the first False
    assert networking.url_ok is quick  # put back afterwards
    monkeypatch.setattr(networking, "url_ok", lambda url: False)
    with patient_startup_check(seconds=0.0):
        assert networking.url_ok("http://127.0.0.1:7860/") is False  # a server that never answers still fails
