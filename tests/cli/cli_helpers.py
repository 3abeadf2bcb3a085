"""Helpers of the CLI tests: the installed entry point, the bundled sample, the tiny model flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src" / "medisam" / "samples" / "ct_spleen_msd_10003_26.jpg"
TINY = ["--model", "litemedsam-tiny", "--device", "cpu"]


def entry_point() -> list[str]:
    """The ``medisam`` console script installed beside this Python (else ``python -m medisam``)."""
    script = Path(sys.executable).parent / "medisam"
    return [str(script)] if script.exists() else [sys.executable, "-m", "medisam"]


def run_cli(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(entry_point() + [str(a) for a in args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)
