"""Every bad-input class of docs/bad-input.md: one line, the right code, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.io.bad_input_cases import CASES, Case

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.layer}:{c.input[:50]}" for c in CASES])
def test_bad_input_case(case: Case, tmp_path):
    if case.layer == "server":
        pytest.importorskip("fastapi")
        pytest.importorskip("httpx")
    outcome = case.run(tmp_path)
    assert "TRACEBACK" not in outcome.message and "\n" not in outcome.message
    assert case.expect in outcome.message, outcome.message
    assert outcome.code == case.code, outcome


def test_doc_table_lists_every_case():
    """docs/bad-input.md is written by `python -m tests.io.bad_input_table`; it must hold every case."""
    text = DOC.read_text()
    for case in CASES:
        assert f"| {case.layer} | {case.input} |" in text, f"run python -m tests.io.bad_input_table ({case.input})"
    assert len(re.findall(r"^\| (cli|api|server) \|", text, re.M)) == len(CASES)
