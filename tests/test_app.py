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
    # shown at a readable size, pixelated; the file behind it (the download link's) keeps the image's own pixels
    shown = _find(browser, "#result img")[0]
    assert shown.rect["height"] >= 384 and shown.value_of_css_property("image-rendering") == "pixelated"
    download = _find(browser, "#result a[download]")[0].get_attribute("href")
    assert download == shown.get_attribute("src")

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
    """Two events on the one pipeline at the same time (issue 24): both finish (the chart is the one recorded during
    the first generation, shown at once), and the image is the one the Python API gives for the same settings."""
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
    from truepose.app import TruePoseApp
    from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

    app = TruePoseApp(tiny_pipeline(seed=0, randomize_new_layers=True))
    image, parsing = tiny_person()
    pose = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    kwargs = app.generation_request(image, parsing, "atr", pose, 2, 2.0, 3, "Euler", 0.2, 0.5, 1, False)
    fractions = []
    generated, shares = app.generate(kwargs, lambda fraction, **_: fractions.append(fraction))
    assert fractions == [(1, 2), (2, 2)]
    config = app.pipe.target_unet.config
    assert (config.hpfa_sigma, config.hpfa_delta, config.caa_top_k) == (1.0, 0.0, 1)  # HPFA off: plain reference
    assert type(app.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    pipeline_kwargs = {k: v for k, v in kwargs.items() if k not in ("seed", "settings")}
    expected = app.pipe(**pipeline_kwargs, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(np.asarray(generated), np.asarray(expected.images[0]))
    chart = app.attention_chart(shares)
    assert isinstance(chart, PIL.Image.Image) and chart.width > 300
    with pytest.raises(ValueError, match="target pose"):
        app.generation_request(image, parsing, "atr", None, 2, 2.0, 0, "DDIM", 0.3, 0.6, 2, True)
    (tmp_path / "pose.json").write_text('{"people": []}')
    with pytest.raises(ValueError, match="has no person"):
        app.pose_from_file(tmp_path / "pose.json", image)


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
        ["pick_example_person", "upload_source", "lambda", "upload_parsing", "pick_gallery_pose", "upload_pose_file",
         "upload_pose_photo", "lambda_1", "pick_example_pose", "check_request", "generate", "chart"]
    )  # fmt: skip
    elements = {block.elem_id for block in blocks.blocks.values()} - {None}
    assert elements == {
        "source", "parsing", "label-map", "overlay", "pose-gallery", "pose-file", "pose-photo", "skeleton", "steps",
        "seed", "generate", "result", "chart", "chart-image",
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Issue 27: an app people enjoy using
# ----------------------------------------------------------------------------------------------------------------------


def _toasts(driver) -> list[str]:
    """The error messages of the page's toasts (Gradio groups several errors in one toast, "Error (2)")."""
    return [text.get_attribute("textContent").strip() for text in _find(driver, "[data-testid=toast-text]")]


def _error_badges(driver) -> int:
    """Gradio's red "Error" badges shown on output components (the toasts' titles are not counted)."""
    return sum(1 for badge in _find(driver, "span.error:not(.toast-title)") if badge.is_displayed())


def test_the_whole_pose_gallery_is_visible_and_uncropped(browser, app_url):
    _open(browser, app_url)
    thumbnails = _wait(lambda: _find(browser, "#pose-gallery button.thumbnail-item"), what="the pose gallery")
    gallery = _find(browser, "#pose-gallery")[0].rect
    assert len(thumbnails) == len(load_pose_gallery()) == 8
    for thumbnail in thumbnails:
        box = thumbnail.rect
        assert gallery["x"] <= box["x"] and box["x"] + box["width"] <= gallery["x"] + gallery["width"]
        assert gallery["y"] <= box["y"] and box["y"] + box["height"] <= gallery["y"] + gallery["height"]
    assert {image.value_of_css_property("object-fit") for image in _find(browser, "#pose-gallery img")} == {"contain"}
    scroll = browser.execute_script(
        "const g = document.querySelector('#pose-gallery .grid-wrap') || document.querySelector('#pose-gallery');"
        "return [g.scrollHeight - g.clientHeight, g.scrollWidth - g.clientWidth];"
    )
    assert max(scroll) <= 1  # nothing hidden behind a scroll bar


def test_a_bad_pose_file_is_one_message_naming_the_file_and_the_formats(browser, app_url, tmp_path):
    (tmp_path / "my pose.txt").write_text("this is not a pose\n")
    (tmp_path / "notes.png").write_text("not an image")
    _open(browser, app_url)
    _upload(browser, "pose-file", tmp_path / "my pose.txt")
    _wait(lambda: _toasts(browser), what="the error message")
    time.sleep(1)  # a second event would have raised its message by now
    (message,) = _toasts(browser)
    assert "The pose file 'my pose.txt' is not readable as OpenPose .json, (18, 2|3) or (T, 18, 2|3) .npy" in message
    assert "/gradio/" not in message and _error_badges(browser) == 0

    _find(browser, "#generate")[0].click()  # nothing to generate from: one more message, still no badge
    _wait(lambda: len(_toasts(browser)) == 2, what="the second message")
    time.sleep(1)
    assert len(_toasts(browser)) == 2 and "Upload a source photo" in _toasts(browser)[1]
    assert _error_badges(browser) == 0

    _upload(browser, "source", tmp_path / "notes.png")  # not an image: our words, and the file is not kept
    _wait(lambda: len(_toasts(browser)) == 3, what="the third message")
    assert "The source photo 'notes.png' is not an image: upload a PNG, JPEG or WebP photo." in _toasts(browser)[2]
    _wait(lambda: not _find(browser, "#source img"), what="the bad source to be removed")
    assert _error_badges(browser) == 0


def test_the_chart_is_recorded_during_the_one_generation(monkeypatch):
    """One pipeline call per generation, and its chart is the one `attention_shares` gives for the same settings."""
    from truepose.analysis import attention_shares, plot_attention_shares
    from truepose.app import TruePoseApp
    from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

    app = TruePoseApp(tiny_pipeline(seed=0, randomize_new_layers=True))
    image, parsing = tiny_person()
    pose = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    request = app.generation_request(image, parsing, "atr", pose, 2, 2.0, 3, "Euler", 0.2, 0.5, 1, True)
    calls = []
    denoise = app.pipe.denoise
    monkeypatch.setattr(app.pipe, "denoise", lambda *args, **kwargs: calls.append(1) or denoise(*args, **kwargs))
    generated, shares = app.generate(request)
    assert len(calls) == 1
    monkeypatch.undo()

    kwargs = {key: value for key, value in request.items() if key not in ("seed", "settings")}
    with app.settings_applied(request["settings"]):
        plain = app.pipe(**kwargs, generator=torch.Generator().manual_seed(3)).images[0]
        expected = attention_shares(
            app.pipe, kwargs.pop("source_image"), kwargs.pop("target_pose"), kwargs.pop("source_parsing"),
            kwargs.pop("parsing_label_map"), generator=torch.Generator().manual_seed(3), heatmap_layers=None, **kwargs,
        )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(generated), np.asarray(plain))  # recording changes nothing
    assert shares["layers"] == expected["layers"] and shares["mean"] == expected["mean"]
    title = "Where TargetNet looked (this generation, all steps)"
    np.testing.assert_array_equal(
        np.asarray(app.attention_chart(shares)), np.asarray(plot_attention_shares(expected, title=title))
    )


class _FakeDetector:
    """Keypoints of `TINY_KEYPOINTS` scaled to the photo."""

    def __call__(self, image):
        from truepose.conditioning import rescale_keypoints
        from truepose.testing import TINY_KEYPOINTS

        return rescale_keypoints(TINY_KEYPOINTS, (64, 64), (image.height, image.width))


@pytest.fixture(scope="module")
def parser_dir(tmp_path_factory):
    from truepose.testing import tiny_parser

    folder = tmp_path_factory.mktemp("parser") / "segformer"
    model, processor = tiny_parser(0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def test_with_a_parser_and_a_detector_a_photo_is_parsed_and_a_pose_photo_works(browser, parser_dir, tmp_path):
    """`build_app` on a pipeline with a human parser attached (as `truepose app --parser` does) and a detector: an
    uploaded photo is parsed at once (overlay, no parsing upload), and a pose photo gives the skeleton."""
    from truepose.app import build_app
    from truepose.conditioning.loaders import load_human_parser
    from truepose.testing import tiny_person

    pipe = load_shipped_model()
    pipe.parser, pipe.parser_processor, label_map = load_human_parser(parser_dir)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks = build_app(pipe, _FakeDetector())
    blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        image, _ = tiny_person(0)
        image.save(tmp_path / "photo.png")
        _open(browser, f"http://127.0.0.1:{port}")
        _upload(browser, "source", tmp_path / "photo.png")
        overlay = _wait(lambda: _image_of(browser, "overlay"), what="the parsing overlay")
        (parsing,), _ = pipe.parse_sources([image], None, None)
        from truepose.app import parsing_overlay

        np.testing.assert_array_equal(np.asarray(overlay), np.asarray(parsing_overlay(image, parsing, label_map)))
        _upload(browser, "pose-photo", tmp_path / "photo.png")
        _wait(lambda: _image_of(browser, "skeleton"), what="the skeleton of the pose photo")
        assert not _toasts(browser)
    finally:
        blocks.close()


def test_app_command_checks_its_parser_and_detector_before_loading(monkeypatch, capsys):
    from truepose import demo
    from truepose.cli import main

    monkeypatch.setattr(demo, "load_shipped_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["app", "--parser", "./no-parser"]) == 2
    assert "--parser './no-parser': this folder does not exist" in capsys.readouterr().err
    assert main(["app", "--detector", "./no-annotators"]) == 2
    assert "--detector './no-annotators': this folder does not exist" in capsys.readouterr().err


def test_app_command_says_pass_share_in_its_own_words(monkeypatch, capsys):
    _require(importlib.util.find_spec("gradio") is not None, 'gradio not installed (pip install "truepose[app]")')
    import gradio

    from truepose.cli import main

    served = []
    monkeypatch.setattr(gradio.Blocks, "block_thread", lambda self: served.append(self) or self.close())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["app", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    assert len(served) == 1
    assert f"truepose app: running on http://127.0.0.1:{port}/" in out
    assert "truepose app: pass --share for a public gradio.live link" in out
    assert "share=True" not in out and "launch()" not in out
