"""The Space in a real browser: Playwright drives Debian's headless chromium through upload, Generate and the results.

The page screenshot is kept as a test artefact: ``test-artifacts/app_browser.png`` (git-ignored).
"""
from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_app import ROOT, app, person_photo, serve

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 240_000  # numba's first compile and a CPU reconstruction on a shared 2-core machine

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

VIDEO_READY = """() => { const v = document.querySelector('#video video');
                         return v !== null && v.readyState >= 1 && v.duration > 0; }"""


@pytest.fixture(scope="module")
def page():
    demo = app.build_demo()
    url = serve(demo)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.locator("#generate").wait_for()
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app_browser_last.png"), full_page=True)
            browser.close()
    demo.close()


def set_sliders(page, values: dict) -> None:
    """Type each value into its gradio slider's number box ({elem_id: value}) until all of them hold."""
    for _ in range(10):
        wrong = {k: v for k, v in values.items()
                 if float(page.locator(f"#{k} input[type=number]").input_value()) != float(v)}
        if not wrong:
            return
        for elem_id, value in wrong.items():
            box = page.locator(f"#{elem_id} input[type=number]")
            box.fill(str(value))
            box.press("Enter")
            box.blur()
        page.wait_for_timeout(500)  # a slider that was still mounting can reset itself meanwhile
    raise AssertionError(f"the sliders did not take {values}")


def upload(page, path: Path) -> None:
    """Replace the photo with ``path``."""
    clear = page.locator("#photo button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#photo input[type=file]").set_input_files(str(path))


def canvas_variance(page) -> float:
    """Pixel variance of the 3D preview's canvas as the browser shows it."""
    png = page.locator("#model3d canvas").first.screenshot()
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32).var())


def test_bad_upload_then_good_upload(page, tmp_path):
    page.locator("button", has_text="Options").first.click()
    page.locator("#size input[type=number]").wait_for(state="visible")
    set_sliders(page, {"size": 256, "fps": 12, "seconds": 1})

    bad = tmp_path / "notes.png"
    bad.write_text("this is a shopping list, not a photo")
    upload(page, bad)
    page.locator("#generate").click()
    toast = page.locator(".toast-body, [data-testid='toast-body']").first
    toast.wait_for()
    message = toast.inner_text()
    assert "notes.png" in message or "image" in message.lower(), message
    assert "Something went wrong" not in message and "Traceback" not in message

    upload(page, person_photo())
    set_sliders(page, {"size": 256, "fps": 12, "seconds": 1})
    page.locator("#generate").click()
    page.wait_for_function(VIDEO_READY, timeout=TIMEOUT_MS)
    page.locator("#model3d canvas").first.wait_for()
    # the splats appear a moment after the canvas: poll until it is no longer flat
    deadline, variance = time.monotonic() + 60, 0.0
    while time.monotonic() < deadline and (variance := canvas_variance(page)) <= 20.0:
        time.sleep(1.0)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "app_browser.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert variance > 20.0, f"the 3D preview canvas looks blank (pixel variance {variance:.1f})"
    duration, width = page.evaluate("() => { const v = document.querySelector('#video video');"
                                    " return [v.duration, v.videoWidth]; }")
    assert 0.5 < duration < 2.0, f"a 1 s video was asked for, the page plays {duration} s"
    assert width == 256, f"a 256 px video was asked for, the page plays {width} px"
    listed = re.sub(r"\s", "", page.locator("#downloads").inner_text())
    for name in ("tpose.ply", "canonical.ply", "avatar.splat", "animation.mp4"):
        assert name in listed, listed
