"""The page in a real headless Chromium: `flowerkit serve` on 127.0.0.1,
real photos uploaded through the file chooser, the predicted classes read
from the page, screenshots at desktop and phone width.

Runs in one tox env (jax); needs Debian's chromium and chromium-driver
(.ci/browser-deps) and selenium (the `browser` extra). In CI
(FLOWERKIT_REQUIRE_SHARED=1) anything missing is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, REQUIRE_SHARED
from tests.serve_fixtures import FLOWER_CLASSES, free_port, photos, save_tiny_run, wait_ready

BROWSER_BACKEND = "jax"  # the one env that runs it (and has selenium: the browser extra)
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Screenshots also go here when set (tmp_path is removed after a passing test).
SCREENSHOT_DIR = os.environ.get("FLOWERKIT_SCREENSHOT_DIR")


pytestmark = pytest.mark.backends(BROWSER_BACKEND)


def _require_browser():
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install 'flowerkit[browser]')")
    if missing:
        message = f"the browser test needs {', '.join(missing)}: run .ci/browser-deps"
        if REQUIRE_SHARED:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def server(tmp_path):
    _require_browser()
    run = save_tiny_run(tmp_path / "run")
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "flowerkit.serve", str(run), "--port", str(port),
                                "--max-batch", "8", "--max-wait-ms", "20"],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=90, process=process)
        yield url, run
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _screenshot(driver, path: Path, width: int, height: int) -> Path:
    driver.set_window_size(width, height)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOT_DIR) / path.name)
    return path


def test_the_page_classifies_dropped_photos(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as condition
    from selenium.webdriver.support.ui import WebDriverWait

    from flowerkit.inference.evaluation import predict

    url, run = server
    chosen = photos(1)  # one photo of each class
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    wait = WebDriverWait(browser, 30)
    browser.get(url + "/")
    wait.until(lambda driver: "classes" in driver.find_element(By.ID, "model-info").text)
    assert "daisy, dandelion, roses, sunflowers, tulips" in browser.find_element(By.ID, "model-info").text

    browser.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in [*chosen, bad]))
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".result:not([data-state=pending])")) == 6)
    wait.until(condition.text_to_be_present_in_element((By.ID, "status"), "server latency"))

    expected = {Path(r["image"]).name: r["top"] for r in predict(run / "model.keras", [str(p) for p in chosen])}
    for card in browser.find_elements(By.CSS_SELECTOR, ".result[data-state=done]"):
        name = card.find_element(By.CSS_SELECTOR, ".name").text
        top_class = card.find_element(By.CSS_SELECTOR, ".bars li:first-child .class").text
        percent = card.find_element(By.CSS_SELECTOR, ".bars li:first-child .percent").text
        assert top_class == expected[name][0]["class"] and top_class in FLOWER_CLASSES
        assert percent == f"{expected[name][0]['probability'] * 100:.1f}%"
        assert len(card.find_elements(By.CSS_SELECTOR, ".bars li")) == 3
    failed = browser.find_element(By.CSS_SELECTOR, ".result[data-state=failed]")
    assert "Cannot read notes.jpg: not an image" in failed.text
    status = browser.find_element(By.ID, "status").text
    assert status.startswith("5 photos in ") and "1 could not be classified" in status

    desktop = _screenshot(browser, tmp_path / "serve-page-desktop.png", 1280, 900)
    phone = _screenshot(browser, tmp_path / "serve-page-phone.png", 390, 844)
    # At phone width nothing overflows sideways.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
    assert desktop.stat().st_size > 10_000 and phone.stat().st_size > 10_000
    print(f"screenshots: {desktop} {phone}")
