"""End-to-end test of ``medisam app`` in headless Chromium: upload, box by two clicks, download."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.real_weights, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src" / "medisam" / "samples" / "ct_spleen_msd_10003_26.jpg"
SAMPLE_MASK = REPO / "src" / "medisam" / "samples" / "ct_spleen_msd_10003_26_mask.png"
#: What a wait for the page allows past the model's last pass: the rest of a click's or a propagation's
#: work (the Gradio round trip, one slice's PNG, the browser's draw) took under 1 s here, quiet or beside
#: 3 busy processes on 2 cores, while one encoding took 1.2-1.5 s quiet and 7.5-16 s so loaded.
PAGE_ALLOWANCE_S = 30.0
#: Screenshots go to the test's tmp folder; set MEDISAM_SCREENSHOTS=docs/screenshots to refresh the docs.
SHOTS_ENV = os.environ.get("MEDISAM_SCREENSHOTS")


def _shots(tmp_path: Path) -> Path:
    folder = Path(SHOTS_ENV) if SHOTS_ENV else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(model):  # noqa: ANN001, ANN201 - yields the URL of `medisam app` on ``model``
    pytest.importorskip("gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from medisam.app import build_ui

    demo = build_ui(model)
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        ssr_mode=False, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def app_url(real_model):
    yield from serve_app(real_model)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def _view_geometry(page) -> dict:
    """The shown picture's box on screen, its natural size and the view's zoom, once it has settled.

    Loaded AND laid out, read in one step and twice alike: while Gradio swaps the picture the new
    <img> can have pixels but no size yet, or no pixels for a moment after it had them.
    """
    geometry = """() => {
        const e = document.querySelector('#medisam-view img');
        if (!e || !(e.naturalWidth > 0) || !(e.naturalHeight > 0)) return null;
        const r = e.getBoundingClientRect(), z = Number(document.querySelector('#medisam-view').dataset.zoom || 1);
        return r.width > 0 && r.height > 0 && z > 0 ? {left: r.x, top: r.y, w: r.width, h: r.height,
            nw: e.naturalWidth, nh: e.naturalHeight, z: z} : null; }"""
    seen = None
    for _ in range(300):
        now = page.evaluate(geometry)
        if now is not None and now == seen:
            return now
        seen = now
        page.wait_for_timeout(100)
    raise AssertionError("the picture never settled in the page")


def _click_pixel(page, x: float, y: float) -> None:
    """Click the shown picture at pixel (x, y) of the *view* image (the app may upscale small slices).

    Gradio draws the <img> centred and only scaled down (object-fit: scale-down).
    """
    g = _view_geometry(page)
    box = {"x": g["left"], "y": g["top"], "width": g["w"], "height": g["h"]}
    nat = (g["nw"], g["nh"])
    scale = min(1.0, box["width"] / nat[0], box["height"] / nat[1])
    left = box["x"] + (box["width"] - nat[0] * scale) / 2
    top = box["y"] + (box["height"] - nat[1] * scale) / 2
    cx, cy = left + (x + 0.5) * scale, top + (y + 0.5) * scale
    # nothing over the picture there: a pending event's progress overlay would swallow the click
    page.wait_for_function("([x, y]) => document.elementFromPoint(x, y) === document.querySelector('#medisam-view img')",
                           arg=[cx, cy], timeout=60_000)
    page.mouse.click(cx, cy)


def _click_image_pixel(page, x: float, y: float, factor: int) -> None:
    """Click image pixel (x, y) of a slice the app shows enlarged ``factor`` times."""
    _click_pixel(page, (x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5)


def _status(page) -> str:
    return page.locator("#medisam-status textarea").input_value()


class ModelClock:
    """The real model's encoded images and decoder passes, and when it last ran. The app serves from
    this process, so a wait for what a click shows can be the model's own time for it, measured as it
    runs (seconds on a quiet machine, a minute on a busy one), plus :data:`PAGE_ALLOWANCE_S`."""

    def __init__(self, model, monkeypatch) -> None:  # noqa: ANN001 - a PromptableModel, pytest's monkeypatch
        self.encoded = self.decodes = self.busy = 0
        self.last = time.monotonic()
        for name in ("encode", "decode"):
            monkeypatch.setattr(model, name, self._timed(getattr(model, name), name == "encode"))

    def _timed(self, run, encoder: bool):  # noqa: ANN001, ANN202 - the model's method, wrapped
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.busy += 1
            try:
                return run(*args, **kwargs)
            finally:
                self.busy -= 1
                self.last = time.monotonic()
                if encoder:
                    self.encoded += int(args[0].shape[0])
                else:
                    self.decodes += 1
        return timed

    def counts(self) -> tuple[int, int]:
        """(images encoded, decoder passes) so far."""
        return self.encoded, self.decodes

    def wait_status(self, page, shows, since: float, cap_s: float = 600.0) -> None:  # noqa: ANN001
        """Wait until ``shows(status)``: while the model runs, and :data:`PAGE_ALLOWANCE_S` past its last
        pass or ``since`` (the click), whichever is later; ``cap_s`` bounds the whole wait."""
        while not shows(_status(page)):
            now = time.monotonic()
            idle = now - max(since, self.last)
            if now - since > cap_s or (not self.busy and idle > PAGE_ALLOWANCE_S):
                raise AssertionError(f"the status shows {_status(page)!r} {now - since:.0f} s after the click, "
                                     f"{idle:.0f} s after the model's last pass ({self.encoded} images encoded, "
                                     f"{self.decodes} decoder passes)")
            page.wait_for_timeout(200)


def test_box_by_two_clicks_segments_the_spleen(app_url, browser, tmp_path):
    import cv2

    from medisam.io import read_image
    from medisam.metrics_basic import dice

    gt = cv2.imread(str(SAMPLE_MASK), cv2.IMREAD_GRAYSCALE) > 0
    ys, xs = np.nonzero(gt)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#medisam-upload").wait_for(timeout=60_000)
    page.locator("#medisam-upload input[type=file]").set_input_files(str(SAMPLE))
    page.wait_for_function("() => document.querySelector('#medisam-status textarea')?.value.startsWith('opened')",
                           timeout=60_000)
    page.locator("#medisam-view img").wait_for(timeout=30_000)
    _click_pixel(page, xs.min() - 5, ys.min() - 5)
    page.wait_for_function("() => document.querySelector('#medisam-status textarea')?.value.includes('corner')",
                           timeout=30_000)
    _click_pixel(page, xs.max() + 5, ys.max() + 5)
    page.wait_for_function("() => document.querySelector('#medisam-status textarea')?.value.includes('pixels')",
                           timeout=60_000)
    assert "object 1" in _status(page)
    page.screenshot(path=str(_shots(tmp_path) / "app_box_spleen.png"), full_page=True)

    page.locator("#medisam-download").click()
    link = page.locator("#medisam-mask a").first
    link.wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as dl:
        link.click()
    out = tmp_path / "mask.png"
    dl.value.save_as(out)
    mask = read_image(out).array > 0
    assert mask.shape == gt.shape
    assert dice(mask, gt) > 0.8
    page.close()


def test_volume_slider_box_propagate_and_download(app_url, browser, tmp_path, real_model, monkeypatch):
    """A CT NIfTI: box the ball on the shown slice (one encoding, one decoder pass), propagate, download
    the .nii.gz mask. The waits for the mask and the propagation are the model's measured time plus a
    fixed allowance (:class:`ModelClock`): a busy machine once took over 60 s for the box's encoding."""
    import SimpleITK as sitk

    from medisam.io import read_image

    z, y, x = np.mgrid[:9, :96, :96]
    ball = ((z - 4) / 3.5) ** 2 + ((y - 44) / 22) ** 2 + ((x - 50) / 18) ** 2 <= 1
    hu = np.where(ball, 60, -900).astype(np.int16)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((0.9, 0.9, 3.0))
    nii = tmp_path / "ball_ct.nii.gz"
    sitk.WriteImage(img, str(nii))

    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#medisam-upload").wait_for(timeout=60_000)
    page.locator("#medisam-upload input[type=file]").set_input_files(str(nii))
    page.wait_for_function("() => document.querySelector('#medisam-status textarea')?.value.startsWith('opened volume')",
                           timeout=60_000)
    page.locator("#medisam-view img").wait_for(timeout=30_000)
    factor = 6  # AppState.view_scale for a 96-pixel slice
    _click_image_pixel(page, 50 - 20, 44 - 24, factor)
    page.wait_for_function("() => document.querySelector('#medisam-status textarea')?.value.includes('corner')",
                           timeout=30_000)
    clock = ModelClock(real_model, monkeypatch)
    _click_image_pixel(page, 50 + 20, 44 + 24, factor)
    clock.wait_status(page, lambda status: "on slice 4" in status, since=time.monotonic())
    assert clock.counts() == (1, 1), clock.counts()  # the box: its slice encoded once, one decoder pass
    page.locator("#medisam-propagate").click()
    clock.wait_status(page, lambda status: status.startswith("propagated"), since=time.monotonic())
    page.screenshot(path=str(_shots(tmp_path) / "app_volume_propagated.png"), full_page=True)
    page.locator("#medisam-download").click()
    link = page.locator("#medisam-mask a").first
    link.wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as dl:
        link.click()
    out = tmp_path / "mask.nii.gz"
    dl.value.save_as(out)
    mask = read_image(out)
    assert mask.array.shape == hu.shape and mask.spacing == pytest.approx((0.9, 0.9, 3.0))
    got = mask.array > 0
    assert 2 * (got & ball).sum() / (got.sum() + ball.sum()) > 0.7
    assert got[2:7].reshape(5, -1).any(axis=1).all()  # propagated beyond the prompted slice
    page.close()


def _ball_nifti(path: Path, slices: int = 9) -> np.ndarray:
    import SimpleITK as sitk

    z, y, x = np.mgrid[:slices, :96, :96]
    c = (slices - 1) / 2
    ball = ((z - c) / (slices / 2.2)) ** 2 + ((y - 44) / 22) ** 2 + ((x - 50) / 18) ** 2 <= 1
    img = sitk.GetImageFromArray(np.where(ball, 60, -900).astype(np.int16))
    img.SetSpacing((0.9, 0.9, 3.0))
    sitk.WriteImage(img, str(path))
    return ball


def _open(page, app_url: str, path: Path, expect: str = "opened volume") -> None:
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#medisam-upload").wait_for(timeout=60_000)
    page.locator("#medisam-upload input[type=file]").set_input_files(str(path))
    page.wait_for_function(f"() => document.querySelector('#medisam-status textarea')?.value.startsWith({expect!r})",
                           timeout=60_000)


def _wait_status(page, text: str | tuple[str, ...], timeout: int = 60_000) -> None:
    """Wait until the status shows ``text`` (a tuple: any of them)."""
    texts = (text,) if isinstance(text, str) else text
    shows = " || ".join(f"v.includes({t!r})" for t in texts)
    try:
        page.wait_for_function(f"() => {{ const v = document.querySelector('#medisam-status textarea')?.value;"
                               f" return v !== undefined && ({shows}); }}", timeout=timeout)
    except Exception:
        raise AssertionError(f"status never showed {text!r}; it shows {_status(page)!r}") from None


def test_3d_box_from_box_and_slice_range_then_cancel_and_error(app_url, browser, tmp_path):
    """Slice range 3..5 + a box -> labels only on slices 3..5; a long propagation cancels; a bad file -> one line."""

    _ball_nifti(tmp_path / "ball.nii.gz")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    _open(page, app_url, tmp_path / "ball.nii.gz")
    page.locator("#medisam-view img").wait_for(timeout=30_000)
    page.locator("#medisam-range textarea, #medisam-range input").first.fill("3,5")
    page.locator("#medisam-range textarea, #medisam-range input").first.press("Enter")
    _wait_status(page, "3D box on slices 3..5")
    _click_image_pixel(page, 50 - 20, 44 - 24, 6)
    _wait_status(page, "corner")
    _click_image_pixel(page, 50 + 20, 44 + 24, 6)
    _wait_status(page, "pixels")
    page.screenshot(path=str(_shots(tmp_path) / "app_box3d.png"), full_page=True)
    # the seed slice lies in 3..5; propagating the fused 3-view box with the real model takes
    # minutes on the 2-core CI machine, so the labels-stay-in-range check is in test_app_box3d.py
    assert any(f"on slice {k}:" in _status(page) for k in (3, 4, 5)), _status(page)

    # cancel: a long volume, a 2D box, propagate, cancel at once
    _ball_nifti(tmp_path / "long.nii.gz", slices=60)
    _open(page, app_url, tmp_path / "long.nii.gz")
    page.locator("#medisam-view img").wait_for(timeout=30_000)
    _click_image_pixel(page, 50 - 20, 44 - 24, 6)
    _wait_status(page, "corner")
    _click_image_pixel(page, 50 + 20, 44 + 24, 6)
    _wait_status(page, "pixels")
    page.locator("#medisam-propagate").click()
    page.wait_for_timeout(1500)
    page.locator("#medisam-cancel").click()
    # "cancelling" may show for only the current slice's time before the propagation's next update
    # replaces it with the outcome, so either counts here; the outcome is checked next
    _wait_status(page, ("cancelling", "propagation cancelled after"))
    _wait_status(page, "propagation cancelled after", 180_000)

    # an unreadable file: one line, no temp path
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    _open(page, app_url, bad, expect="error: ")
    status = _status(page)
    assert "\n" not in status and "/tmp" not in status
    page.close()
