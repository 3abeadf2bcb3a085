"""A progress line on stderr for steps that may take more than two seconds.

On a terminal a rich spinner shows while the step runs. Elsewhere (logs, pipes, tests)
nothing is printed unless the step is still running after ``after`` seconds; then one
line ``medisam: <what>...`` and, when it succeeds, ``medisam: <what> done (N s)`` (a step that
fails prints no "done": its ``error:`` line follows). Commands refuse what they can before a
step starts, so a bad argument is one ``error:`` line, not a progress line and then the error.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

#: Steps shorter than this print nothing off a terminal.
QUIET_SECONDS = 2.0


@contextmanager
def step(what: str, after: float = QUIET_SECONDS) -> Iterator[None]:
    """Show that ``what`` is running (spinner on a terminal, a delayed line elsewhere)."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(f"{what}..."):
            yield
        return
    start = time.perf_counter()
    shown = threading.Event()

    def announce() -> None:
        shown.set()
        print(f"medisam: {what}...", file=sys.stderr, flush=True)

    timer = threading.Timer(after, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    except BaseException:  # no "done" line for a step that failed: the error line comes next
        timer.cancel()
        raise
    timer.cancel()
    if shown.is_set():
        print(f"medisam: {what} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
