"""The page of ``ae-anomaly serve`` in a real headless Chromium, against a real server.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
selenium. Where they are missing the tests are skipped, unless
``AE_ANOMALY_REQUIRE_BROWSER`` is set (as in CI), where that is a failure.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ae_anomaly.data.sources import Dataset
from tests.helpers import running_server

TIMEOUT = 60


def _browser_parts() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    parts = _browser_parts()
    if parts is None:
        message = "needs selenium, chromium and chromedriver (apt install chromium-driver)"
        if os.environ.get("AE_ANOMALY_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = parts[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--no-proxy-server")
    options.add_argument("--window-size=1200,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=parts[1]))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT).until(condition)


def _cards(driver: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, "#results .card"))


def _shown(card: Any) -> dict[str, Any]:
    """What a result card shows: the name, the verdict, the numbers, the images' sizes."""
    from selenium.webdriver.common.by import By

    sizes = card.parent.execute_script(
        "return Array.from(arguments[0].querySelectorAll('img')).map(i => i.naturalWidth)", card
    )
    return {
        "name": card.find_element(By.CSS_SELECTOR, ".name").text,
        "verdict": card.find_element(By.CSS_SELECTOR, ".verdict").text,
        "numbers": card.find_element(By.CSS_SELECTOR, ".numbers").text,
        "score": float(card.get_attribute("data-score")),
        "image_widths": sizes,
    }


def _api_score(base: str, png: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    import httpx

    files = {"file": ("x.png", png, "image/png")}
    response = httpx.post(f"{base}/v1/score", files=files, headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json()["results"][0])


def _draw_stroke(driver: Any) -> bytes:
    """A stroke drawn with the mouse across the canvas; the canvas as PNG bytes."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "canvas")
    actions = ActionChains(driver).move_to_element_with_offset(canvas, -20, -90)
    actions.click_and_hold()
    for dx, dy in [(15, 40), (10, 40), (5, 40), (0, 40)]:
        actions.move_by_offset(dx, dy)
    actions.release().perform()
    url = driver.execute_script("return document.getElementById('canvas').toDataURL()")
    return base64.b64decode(url.split(",", 1)[1])


def test_e2e_the_page_scores_an_upload_and_a_drawing(
    browser: Any, tiny_detector_dir: Path, mnist: Dataset, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    digit = tmp_path / "seven.png"
    Image.fromarray(mnist.test_images[0]).save(digit)
    with running_server(tiny_detector_dir) as (_, base):
        browser.get(f"{base}/")
        # The page read /v1/model and says what the detector is.
        _wait(browser, lambda d: "conv-bn" in d.find_element(By.ID, "model").text)
        assert "28 \u00d7 28 grey" in browser.find_element(By.ID, "model").text

        browser.find_element(By.ID, "files").send_keys(str(digit))
        _wait(browser, lambda d: len(_cards(d)) == 1)
        upload = _shown(_cards(browser)[0])
        expected = _api_score(base, digit.read_bytes())
        assert upload["name"] == "seven.png"
        assert upload["verdict"] == ("Anomaly" if expected["is_anomaly"] else "Normal")
        assert upload["score"] == pytest.approx(expected["score"], rel=1e-6)
        assert upload["numbers"].startswith("score ") and "threshold" in upload["numbers"]
        assert upload["image_widths"] == [28, 28, 28]  # input, reconstruction, error map

        drawn = _draw_stroke(browser)
        pixels = np.asarray(Image.open(io.BytesIO(drawn)).convert("L"))
        assert pixels.max() == 255 and (pixels > 128).mean() > 0.02  # a stroke is there
        browser.find_element(By.ID, "score-drawing").click()
        _wait(browser, lambda d: len(_cards(d)) == 2)
        drawing = _shown(_cards(browser)[0])  # the newest card comes first
        expected = _api_score(base, drawn)
        assert drawing["name"] == "drawing.png"
        assert drawing["verdict"] == ("Anomaly" if expected["is_anomaly"] else "Normal")
        assert drawing["score"] == pytest.approx(expected["score"], rel=1e-6)
        assert drawing["image_widths"] == [28, 28, 28]

        # Everything the page loaded came from this server (it works offline).
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(url.startswith(base) for url in loaded), loaded
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        if shot := os.environ.get("AE_ANOMALY_PAGE_SCREENSHOT"):
            browser.save_screenshot(shot)


def test_e2e_the_page_asks_for_the_token(
    browser: Any, tiny_detector_dir: Path, mnist: Dataset
) -> None:
    from selenium.webdriver.common.by import By

    token = "page-s3cret"
    env = {"AE_ANOMALY_TOKEN": token}
    with running_server(tiny_detector_dir, env=env, token=token) as (_, base):
        browser.get(f"{base}/")
        _wait(browser, lambda d: d.find_element(By.ID, "token-box").is_displayed())
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "token-use").click()
        _wait(browser, lambda d: "conv-bn" in d.find_element(By.ID, "model").text)
        assert not browser.find_element(By.ID, "token-box").is_displayed()
