"""The web UI's view in headless Chromium: wheel slice scrolling, zoom and pan, the object legend's opacity."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from test_app_gui import (  # noqa: F401 - fixtures
    _ball_nifti, _open, _status, _view_geometry, _wait_status, app_url, browser)

pytestmark = [pytest.mark.gui, pytest.mark.real_weights, pytest.mark.slow]
FACTOR = 6  # AppState.view_scale for a 96-pixel slice


def _screen_of(page, x: float, y: float) -> tuple[float, float]:
    """Screen position of view pixel (x, y) under the current zoom/pan (the <img> is CSS-transformed)."""
    g = _view_geometry(page)
    r = min(g["w"] / g["z"] / g["nw"], g["h"] / g["z"] / g["nh"], 1.0) * g["z"]
    return (g["left"] + (g["w"] - g["nw"] * r) / 2 + (x + 0.5) * r,
            g["top"] + (g["h"] - g["nh"] * r) / 2 + (y + 0.5) * r)


def _click_slice_pixel(page, x: int, y: int) -> None:
    page.mouse.click(*_screen_of(page, (x + 0.5) * FACTOR - 0.5, (y + 0.5) * FACTOR - 0.5))


def _shown_rgb(page) -> np.ndarray:
    import cv2

    b64 = page.evaluate("""async () => {
        const im = document.querySelector('#medisam-view img');
        const buf = await (await fetch(im.src)).arrayBuffer();
        let s = ''; new Uint8Array(buf).forEach(c => s += String.fromCharCode(c)); return btoa(s);
    }""")
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def _tinted(rgb: np.ndarray) -> int:
    """Pixels with a label colour: not grey (the image, and the white and black prompt marks)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((r != g) | (g != b)).sum())


def _tinted_until(page, ok, timeout_s: float = 30.0) -> int:
    """The tinted pixels of the shown picture once ``ok(count)`` holds (the browser swaps the
    picture a moment after the status; a loaded machine takes longer), else the last count."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = _tinted(_shown_rgb(page))
        if ok(count) or time.monotonic() > deadline:
            return count
        page.wait_for_timeout(250)


def test_wheel_zoom_pan_and_legend_opacity(app_url, browser, tmp_path):  # noqa: F811
    _ball_nifti(tmp_path / "ball.nii.gz")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open(page, app_url, tmp_path / "ball.nii.gz")
    page.locator("#medisam-view img").wait_for(timeout=30_000)
    page.wait_for_function("() => window.__medisamView !== undefined", timeout=30_000)
    slider = page.locator("#medisam-slice input[type=range]")
    assert slider.input_value() == "4"

    # the wheel over the picture scrolls slices (down = next), and the view follows
    page.mouse.move(*_screen_of(page, 288, 288))
    page.mouse.wheel(0, 120)
    _wait_status(page, "slice 5 of 9")
    assert slider.input_value() == "5"
    for _ in range(2):
        page.wait_for_timeout(200)
        page.mouse.wheel(0, -120)
    _wait_status(page, "slice 3 of 9")

    # Ctrl+wheel zooms about the cursor; a box clicked while zoomed lands on the right pixels
    page.keyboard.down("Control")
    for _ in range(3):
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(100)
    page.keyboard.up("Control")
    assert _view_geometry(page)["z"] == pytest.approx(1.25 ** 3, rel=1e-3)
    assert slider.input_value() == "3"  # zooming does not scroll
    _click_slice_pixel(page, 40, 30)
    _wait_status(page, "box corner at (40, 30)")
    _click_slice_pixel(page, 62, 58)
    _wait_status(page, "pixels")
    assert "on slice 3" in _status(page)

    # Shift+drag pans and is no click; "reset view" undoes zoom and pan
    before = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--msx')")
    page.keyboard.down("Shift")
    page.mouse.move(*_screen_of(page, 300, 300))
    page.mouse.down()
    page.mouse.move(*_screen_of(page, 200, 250), steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    after = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--msx')")
    assert after != before and "corner" not in _status(page)
    page.locator("#medisam-reset-view").click()
    assert _view_geometry(page)["z"] == 1

    # the legend lists the object; opacity 0 hides it in the picture, 1 fills it
    page.wait_for_function("() => document.querySelector('#medisam-legend')?.textContent.includes('object 1')",
                           timeout=30_000)
    assert "opacity 40%" in page.locator("#medisam-legend").inner_text()
    shown = _tinted(_shown_rgb(page))
    assert shown > 500
    number = page.locator("#medisam-opacity input[type=number]")
    number.fill("0")
    number.press("Enter")
    _wait_status(page, "object 1: opacity 0%")
    page.wait_for_function("() => document.querySelector('#medisam-legend')?.textContent.includes('hidden')",
                           timeout=30_000)
    assert _tinted_until(page, lambda n: n == 0) == 0
    number.fill("1")
    number.press("Enter")
    _wait_status(page, "object 1: opacity 100%")
    assert _tinted_until(page, lambda n: n >= shown) >= shown
    page.close()
