"""One switch for ITK's process-wide warning display, safe under parallel server threads.

SimpleITK prints reader notes (e.g. "non uniform sampling", "unexpected scales in sform") to stderr;
medisam reports those problems itself, in one line. The display flag is global to the process, so
threads that save and restore it each on their own can interleave and leave it off (or on) for good.
``quiet_itk()`` counts its users under a lock: the first one in turns warnings off, the last one out
restores what was there before.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import SimpleITK as sitk

_lock = threading.Lock()
_users = 0
_saved = True


@contextmanager
def quiet_itk() -> Iterator[None]:
    """Silence ITK's warning display for the duration of the block (re-entrant, thread-safe)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = sitk.ProcessObject.GetGlobalWarningDisplay()
            sitk.ProcessObject.SetGlobalWarningDisplay(False)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sitk.ProcessObject.SetGlobalWarningDisplay(_saved)
