"""The web app in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) through selenium.

Under ``CI`` a missing browser, driver, gradio or selenium is a failure; elsewhere these tests are skipped.
"""

import base64
import importlib.util
import io
import os
import re
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.demo import example_person, load_pose_gallery, load_shipped_model

STEPS = 3
GALLERY_POSE = 2


def _require(condition: bool, reason: str) -> None:
    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


@pytest.fixture(scope="module")
def app_url():
    _require(shutil.which("chromium") and shutil.which("chromedriver"), "chromium/chromedriver not installed")
    for module in ("gradio", "selenium"):
        try:
            __import__(module)
        except ImportError:
            _require(False, f'{module} not installed (pip install "truepose[app]")')
    from truepose.app import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks = launch(host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    blocks.close()


@pytest.fixture(scope="module")
def browser(app_url):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(condition, timeout=120, what="the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _upload(driver, elem_id, path):
    _wait(lambda: _find(driver, f"#{elem_id} input[type=file]"), what=f"#{elem_id}")[0].send_keys(str(path))


def _image_of(driver, elem_id) -> PIL.Image.Image | None:
    images = _find(driver, f"#{elem_id} img")
    src = images[0].get_attribute("src") if images else None
    if not src:
        return None
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        with urllib.request.urlopen(src) as response:
            data = response.read()
    return PIL.Image.open(io.BytesIO(data)).convert("RGB")


def _open(driver, app_url):
    driver.get(app_url)
    _wait(lambda: _find(driver, "#generate"), what="the app")


def test_generation_in_the_browser_equals_the_python_api(browser, app_url, tmp_path):
    person = example_person(0)
    person["source_image"].save(tmp_path / "person.png")
    PIL.Image.fromarray(person["source_parsing"].astype(np.uint8)).save(tmp_path / "parsing.png")
    _open(browser, app_url)

    _upload(browser, "source", tmp_path / "person.png")
    _wait(lambda: _find(browser, "#source img"), what="the source preview")
    _upload(browser, "parsing", tmp_path / "parsing.png")
    thumbnails = _wait(lambda: _find(browser, "#pose-gallery button.thumbnail-item"), what="the pose gallery")
    thumbnails[GALLERY_POSE].click()
    _wait(lambda: _image_of(browser, "skeleton"), what="the skeleton preview")
    steps = _find(browser, "#steps input[type=number]")[0]
    steps.clear()
    steps.send_keys(str(STEPS))
    steps.send_keys("\t")
    time.sleep(0.5)
    _find(browser, "#generate")[0].click()
    generated = _wait(lambda: _image_of(browser, "result"), what="the generated image")

    pipe = load_shipped_model()
    expected = pipe(
        person["source_image"],
        load_pose_gallery()[GALLERY_POSE],
        source_parsing=person["source_parsing"],
        parsing_label_map="atr",
        num_inference_steps=STEPS,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert generated.size == expected.size
    np.testing.assert_array_equal(np.asarray(generated), np.asarray(expected))


def _set_number(driver, elem_id, value):
    field = _find(driver, f"#{elem_id} input[type=number]")[0]
    field.clear()
    field.send_keys(str(value))
    field.send_keys("\t")
    time.sleep(0.5)


def test_generate_and_attention_shares_pressed_together_both_succeed(browser, app_url, tmp_path):
    """Two events on the one pipeline at the same time (issue 24): both finish, and the image is the one the Python
    API gives for the same settings."""
    steps = 12  # long enough for the two events to overlap
    person = example_person(0)
    person["source_image"].save(tmp_path / "person.png")
    PIL.Image.fromarray(person["source_parsing"].astype(np.uint8)).save(tmp_path / "parsing.png")
    _open(browser, app_url)
    _upload(browser, "source", tmp_path / "person.png")
    _wait(lambda: _find(browser, "#source img"), what="the source preview")
    _upload(browser, "parsing", tmp_path / "parsing.png")
    _wait(lambda: _find(browser, "#pose-gallery button.thumbnail-item"), what="the pose gallery")[GALLERY_POSE].click()
    _wait(lambda: _image_of(browser, "skeleton"), what="the skeleton preview")
    _set_number(browser, "steps", steps)
    _find(browser, "#generate")[0].click()
    first = _wait(lambda: _image_of(browser, "result"), what="the first generated image")
    _wait(lambda: _find(browser, "#chart")[0].is_enabled(), what="the attention-shares button")
    _set_number(browser, "seed", 1)  # another image, so the new result is told from the first

    browser.execute_script("document.querySelector('#generate').click(); document.querySelector('#chart').click();")
    chart = _wait(lambda: _image_of(browser, "chart-image"), timeout=300, what="the attention-shares chart")
    generated = _wait(
        lambda: (image := _image_of(browser, "result")) and image.tobytes() != first.tobytes() and image,
        timeout=300,
        what="the second generated image",
    )
    assert "Error" not in " ".join(toast.text for toast in _find(browser, ".toast-body"))
    assert chart.width > 100 and chart.height > 100

    expected = load_shipped_model()(
        person["source_image"],
        load_pose_gallery()[GALLERY_POSE],
        source_parsing=person["source_parsing"],
        parsing_label_map="atr",
        num_inference_steps=steps,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(1),
    ).images[0]
    np.testing.assert_array_equal(np.asarray(generated), np.asarray(expected))


def test_a_bad_upload_shows_an_error_message(browser, app_url, tmp_path):
    (tmp_path / "parsing.png").write_text("not an image")
    _open(browser, app_url)
    _upload(browser, "parsing", tmp_path / "parsing.png")
    _wait(lambda: "is not an image: upload a PNG of label ids" in browser.page_source, what="the error message")
    assert _find(browser, "#generate")[0].is_enabled()  # the page is still alive


def test_docs_app_python_block_builds_the_app():
    _require(importlib.util.find_spec("gradio") is not None, 'gradio not installed (pip install "truepose[app]")')
    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "docs" / "app.md").read_text(), re.S)
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/app.md", "exec"), namespace)
    assert {"#generate", "#result", "#pose-gallery"} <= {f"#{b.elem_id}" for b in namespace["blocks"].blocks.values()}


def test_app_actions_settings_and_attention_chart_without_a_browser(tmp_path):
    """The actions behind the page on a tiny model: settings reach the pipeline, the chart is of that generation."""
    from truepose.app import TruePoseApp, read_pose_file
    from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

    app = TruePoseApp(tiny_pipeline(seed=0, randomize_new_layers=True))
    image, parsing = tiny_person()
    pose = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    kwargs = app.generation_request(image, parsing, "atr", pose, 2, 2.0, 3, "Euler", 0.2, 0.5, 1, False)
    fractions = []
    generated = app.generate(kwargs, lambda fraction, **_: fractions.append(fraction))
    assert fractions == [(1, 2), (2, 2)]
    config = app.pipe.target_unet.config
    assert (config.hpfa_sigma, config.hpfa_delta, config.caa_top_k) == (1.0, 0.0, 1)  # HPFA off: plain reference
    assert type(app.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    pipeline_kwargs = {k: v for k, v in kwargs.items() if k not in ("seed", "settings")}
    expected = app.pipe(**pipeline_kwargs, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(np.asarray(generated), np.asarray(expected.images[0]))
    chart = app.attention_chart(kwargs)
    assert isinstance(chart, PIL.Image.Image) and chart.width > 300
    with pytest.raises(ValueError, match="target pose"):
        app.generation_request(image, parsing, "atr", None, 2, 2.0, 0, "DDIM", 0.3, 0.6, 2, True)
    (tmp_path / "pose.json").write_text('{"people": []}')
    with pytest.raises(ValueError, match="has no person"):
        read_pose_file(tmp_path / "pose.json")


def test_the_apps_generation_request_changes_nothing_and_the_page_keeps_its_events():
    from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

    _require(importlib.util.find_spec("gradio") is not None, 'gradio not installed (pip install "truepose[app]")')
    from truepose.app import TruePoseApp, build_app

    pipe = tiny_pipeline(seed=0, randomize_new_layers=True)

    app = TruePoseApp(pipe)
    assert not hasattr(app, "generation_kwargs")
    scheduler, config = pipe.scheduler, dict(pipe.target_unet.config)
    source, parsing = tiny_person()
    pose = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    request = app.generation_request(source, parsing, "atr", pose, 2, 2.0, 3, "Euler", 0.2, 0.5, 1, True)
    assert pipe.scheduler is scheduler and dict(pipe.target_unet.config) == config
    assert request["settings"] == {"scheduler": "Euler", "hpfa_sigma": 0.2, "hpfa_delta": 0.5, "caa_top_k": 1}
    assert (request["seed"], request["height"], request["width"], request["num_inference_steps"]) == (3, 64, 64, 2)

    blocks = build_app(pipe)
    events = sorted(dependency["api_name"] for dependency in blocks.get_config_file()["dependencies"])
    assert events == sorted(
        ["pick_example_person", "lambda", "upload_parsing", "pick_gallery_pose", "upload_pose_file",
         "upload_pose_photo", "pick_example_pose", "generate", "chart"]
    )  # fmt: skip
    elements = {block.elem_id for block in blocks.blocks.values()} - {None}
    assert elements == {
        "source", "parsing", "pose-gallery", "pose-file", "pose-photo", "skeleton", "steps", "seed", "generate",
        "result", "chart", "chart-image",
    }  # fmt: skip
