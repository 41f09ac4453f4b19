"""A new user's first ten minutes (issue 27): the README tells the truth, the demo's panels are labelled, one command
from a photo (--parser/--detector, checked before anything loads), one rule for the frame of a pose file."""

import json
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from truepose import demo
from truepose.cli import main
from truepose.conditioning import rescale_keypoints
from truepose.conditioning.pose_files import fit_pose_to_frame
from truepose.testing import TINY_KEYPOINTS, tiny_parser, tiny_person

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parser_dir(tmp_path_factory):
    """A tiny random Segformer with the ATR labels, saved like a Hub human parser."""
    folder = tmp_path_factory.mktemp("parser") / "segformer"
    model, processor = tiny_parser(0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def files(tmp_path):
    image, parsing = tiny_person(0)
    image.save(tmp_path / "person.png")
    PIL.Image.fromarray(parsing.astype(np.uint8)).save(tmp_path / "parsing.png")
    np.save(tmp_path / "pose.npy", TINY_KEYPOINTS)
    return tmp_path


def no_model_load(monkeypatch):
    from truepose.pipeline import TruePosePipeline

    monkeypatch.setattr(TruePosePipeline, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))


def test_readme_first_screen_says_what_runs_and_what_is_a_placeholder():
    head = " ".join((ROOT / "README.md").read_text().split("## Usage")[0].split()).lower()
    assert "placeholder id" in head and "org/truepose" in head
    assert "no trained real-person truepose checkpoint exists yet" in head
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[3] == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && truepose demo --output demo.png"
    )
    assert lines[4] == 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest'
    assert lines[4] in (ROOT / ".ci/run").read_text()  # CI runs exactly the README's test command


def test_demo_panels_are_labelled(tiny_model, tmp_path):
    path = demo.run_demo(tmp_path / "demo.png", model=tiny_model, num_inference_steps=1, scale=2)
    height, width = demo.DEMO_RESOLUTION
    with PIL.Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape == (height * 2 + demo.LABEL_HEIGHT, 4 * width * 2)
    strip = pixels[: demo.LABEL_HEIGHT]
    for i in range(4):  # dark text in each panel's strip, and nothing else there
        assert (strip[:, i * width * 2 : (i + 1) * width * 2] < 128).sum() > 20
    assert demo.DEMO_PANEL_LABELS == ["source", "target pose", "result", "ground truth"]


def test_a_model_without_parser_and_no_parsing_is_refused_at_once(tiny_model, files, monkeypatch, capsys):
    no_model_load(monkeypatch)
    argv = [
        "generate",
        "--model",
        tiny_model,
        "--source",
        str(files / "person.png"),
        "--pose",
        str(files / "pose.npy"),
    ]
    assert main([*argv, "--output", str(files / "out.png")]) == 2
    error = capsys.readouterr().err
    assert "has no human parser" in error and "--parsing PARSING.png" in error and "--parser PARSER" in error
    assert main(["animate", "--source", str(files / "person.png"), "--poses", str(files / "pose.npy"),
                 "--output", str(files / "out.gif")]) == 2  # fmt: skip
    assert "the shipped model has no human parser" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["./no-parser", "no_parser_dir", "/nowhere/parser", "{tmp}/a/b"])
def test_a_parser_folder_that_does_not_exist_is_refused_at_once(
    missing, tiny_model, files, monkeypatch, capsys, caplog
):
    no_model_load(monkeypatch)
    monkeypatch.chdir(files)
    missing = missing.format(tmp=files)
    argv = ["generate", "--model", tiny_model, "--source", "person.png", "--pose", "pose.npy", "--output", "o.png"]
    start = time.monotonic()
    assert main([*argv, "--parser", missing]) == 2
    assert f"--parser {missing!r}: this folder does not exist" in capsys.readouterr().err
    assert main(["preprocess", str(files), str(files / "out"), "--parser", missing]) != 0
    assert f"the local path {missing!r} does not exist" in caplog.text
    assert time.monotonic() - start < 10  # no network retries


def test_a_detector_folder_that_does_not_exist_is_refused_before_the_model(tiny_model, files, monkeypatch, capsys):
    no_model_load(monkeypatch)
    argv = ["generate", "--model", tiny_model, "--source", str(files / "person.png"), "--pose", str(files / "person.png"),
            "--pose-is-photo", "--parsing", str(files / "parsing.png"), "--output", str(files / "o.png")]  # fmt: skip
    assert main([*argv, "--detector", "./no-annotators"]) == 2
    assert "--detector './no-annotators': this folder does not exist" in capsys.readouterr().err


def test_placeholder_model_id_is_refused_without_download_advice(files, capsys):
    argv = ["generate", "--model", "org/truepose", "--source", str(files / "person.png"),
            "--pose", str(files / "pose.npy"), "--parsing", str(files / "parsing.png"), "--output", str(files / "o.png")]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "placeholder id" in error and "hf download" not in error


def test_one_command_from_a_photo_with_a_parser(tiny_model, parser_dir, files, capsys):
    argv = ["generate", "--model", tiny_model, "--source", str(files / "person.png"), "--pose", str(files / "pose.npy"),
            "--parser", parser_dir, "--parsing-overlay", str(files / "overlay.png"), "--output", str(files / "o.png"),
            "--steps", "1"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    for name in ("o.png", "overlay.png"):
        with PIL.Image.open(files / name) as image:
            assert image.size == (64, 64)
    assert main([*argv[:-6], "--parsing", str(files / "parsing.png"), "--output", str(files / "o.png")]) == 2
    assert "give one of --parsing" in capsys.readouterr().err


def test_animate_with_a_parser(tiny_model, parser_dir, files, capsys):
    poses = np.stack([TINY_KEYPOINTS, TINY_KEYPOINTS])
    np.save(files / "poses.npy", poses)
    argv = ["animate", "--model", tiny_model, "--source", str(files / "person.png"), "--poses", str(files / "poses.npy"),
            "--parser", parser_dir, "--output", str(files / "frames"), "--steps", "1"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert len(list((files / "frames").glob("*.png"))) == 2


# --- One rule for the frame of a pose file ---


def test_fit_pose_to_frame_is_the_apps_rescale():
    fitted = fit_pose_to_frame(TINY_KEYPOINTS[None], (128, 96), (64, 64))
    np.testing.assert_array_equal(fitted[0], rescale_keypoints(TINY_KEYPOINTS, (64, 64), (128, 96)))
    with pytest.raises(ValueError, match=r"top-left .* of the 256x256 .*--pose-frame HEIGHTxWIDTH"):
        fit_pose_to_frame(TINY_KEYPOINTS[None], (256, 256), None)
    np.testing.assert_array_equal(fit_pose_to_frame(TINY_KEYPOINTS[None], (64, 64), None)[0], TINY_KEYPOINTS)


def _big_photo(files):
    image, _ = tiny_person(0, size=128)
    image.save(files / "big.png")
    _, parsing = tiny_person(0, size=128)
    PIL.Image.fromarray(parsing.astype(np.uint8)).save(files / "big-parsing.png")


def test_generate_fits_a_pose_file_to_the_photo(tiny_model, files, capsys, monkeypatch):
    _big_photo(files)
    seen = {}
    import truepose.cli as cli

    original = cli._load_pose
    monkeypatch.setattr(cli, "_load_pose", lambda *a, **k: seen.setdefault("pose", original(*a, **k)))
    argv = ["generate", "--model", tiny_model, "--source", str(files / "big.png"), "--parsing",
            str(files / "big-parsing.png"), "--output", str(files / "o.png"), "--steps", "1"]  # fmt: skip
    assert main([*argv, "--pose", str(files / "pose.npy")]) == 2  # 64x64 keypoints in a corner of 128x128
    assert "--pose-frame" in capsys.readouterr().err
    assert main([*argv, "--pose", str(files / "pose.npy"), "--pose-frame", "64x64"]) == 0
    np.testing.assert_array_equal(seen.pop("pose"), rescale_keypoints(TINY_KEYPOINTS, (64, 64), (128, 128)))
    people = [{"pose_keypoints_2d": TINY_KEYPOINTS.ravel().tolist()}]
    (files / "pose.json").write_text(json.dumps({"people": people, "canvas_height": 64, "canvas_width": 64}))
    assert main([*argv, "--pose", str(files / "pose.json")]) == 0  # the frame stored in the file
    np.testing.assert_array_equal(seen.pop("pose"), rescale_keypoints(TINY_KEYPOINTS, (64, 64), (128, 128)))


def test_animate_fits_a_pose_file_to_the_photo(tiny_model, files, capsys):
    _big_photo(files)
    np.save(files / "poses.npy", np.stack([TINY_KEYPOINTS, TINY_KEYPOINTS]))
    argv = ["animate", "--model", tiny_model, "--source", str(files / "big.png"), "--parsing",
            str(files / "big-parsing.png"), "--poses", str(files / "poses.npy"), "--steps", "1"]  # fmt: skip
    assert main([*argv, "--output", str(files / "a")]) == 2
    assert "top-left" in capsys.readouterr().err and not (files / "a").exists()
    assert main([*argv, "--pose-frame", "64x64", "--output", str(files / "b")]) == 0


def test_load_pose_sequence_uses_the_same_rule(files):
    from truepose.animation import load_pose_sequence

    np.save(files / "poses.npy", np.stack([TINY_KEYPOINTS]))
    with pytest.raises(ValueError, match="top-left"):
        load_pose_sequence(files / "poses.npy", frame_size=(128, 128))
    fitted = load_pose_sequence(files / "poses.npy", frame_size=(128, 128), pose_frame=(64, 64))
    np.testing.assert_array_equal(fitted[0], rescale_keypoints(TINY_KEYPOINTS, (64, 64), (128, 128)))
    (files / "seq").mkdir()
    people = [{"pose_keypoints_2d": TINY_KEYPOINTS.ravel().tolist()}]
    (files / "seq" / "0.json").write_text(json.dumps({"people": people, "canvas_height": 64, "canvas_width": 64}))
    np.testing.assert_array_equal(load_pose_sequence(files / "seq", frame_size=(128, 128))[0], fitted[0])
