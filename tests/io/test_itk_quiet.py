"""quiet_itk: threads that overlap never leave ITK's warning display switched off."""
from __future__ import annotations

import threading

import SimpleITK as sitk

from medisam.io.itk_quiet import quiet_itk


def test_restores_the_flag_after_overlapping_threads() -> None:
    sitk.ProcessObject.SetGlobalWarningDisplay(True)
    inside = threading.Barrier(4)
    seen: list[bool] = []

    def work() -> None:
        with quiet_itk():
            inside.wait(timeout=10)  # all four are inside at once
            seen.append(sitk.ProcessObject.GetGlobalWarningDisplay())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [False] * 4
    assert sitk.ProcessObject.GetGlobalWarningDisplay() is True


def test_keeps_a_flag_that_was_off() -> None:
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        with quiet_itk():
            with quiet_itk():  # re-entrant
                assert sitk.ProcessObject.GetGlobalWarningDisplay() is False
        assert sitk.ProcessObject.GetGlobalWarningDisplay() is False
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(True)
