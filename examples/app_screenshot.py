"""Screenshot of the web app for docs/app.md: the shipped model, example person 0 uploaded, gallery pose 2, one
generation and its attention-share chart, in headless Chromium.

    python examples/app_screenshot.py docs/images/app.png
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from truepose.app import launch
from truepose.demo import example_person


def wait_for(driver, css, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found:
            return found
        time.sleep(0.3)
    raise TimeoutError(css)


def main(output: str) -> None:
    folder = Path(tempfile.mkdtemp())
    person = example_person(0)
    person["source_image"].save(folder / "person.png")
    PIL.Image.fromarray(person["source_parsing"].astype(np.uint8)).save(folder / "parsing.png")
    blocks = launch(port=7899, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1900"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get("http://127.0.0.1:7899")
        wait_for(driver, "#source input[type=file]")[0].send_keys(str(folder / "person.png"))
        wait_for(driver, "#source img")
        wait_for(driver, "#parsing input[type=file]")[0].send_keys(str(folder / "parsing.png"))
        wait_for(driver, "#pose-gallery button.thumbnail-item")[2].click()
        wait_for(driver, "#skeleton img")
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        wait_for(driver, "#result img")
        driver.find_element(By.CSS_SELECTOR, "#chart").click()
        wait_for(driver, "#chart-image img")
        time.sleep(1)
        driver.save_screenshot(output)
    finally:
        driver.quit()
        blocks.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "app.png")
