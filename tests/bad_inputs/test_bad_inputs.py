"""Bad input, tried as a new user would: every case gets a clear error of the right type naming the argument (or the
command-line option), before any work; legal but suspicious values warn. One tiny pipeline serves the module."""

import json
import math
import os
import re

import numpy as np
import PIL.Image
import pytest
import torch

import truepose
from truepose import TruePosePipeline
from truepose.cli import main as cli_main
from truepose.conditioning import (
    PoseDetector,
    get_label_map,
    prepare_pose_image,
    read_deepfashion_annotations,
    read_openpose_json,
    rescale_keypoints,
)
from truepose.data.preprocess import preprocess
from truepose.evaluation import metrics
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline
from truepose.train import check_output_dir, parse_args

SOURCE, PARSING = tiny_person(0)  # 64x64 RGB person and its ATR parsing
SIZE = 64


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


def call(pipe, **kwargs):
    arguments = {"source_image": SOURCE, "target_pose": TINY_KEYPOINTS, "source_parsing": PARSING}
    arguments.update(num_inference_steps=1, output_type="latent")
    arguments.update(kwargs)
    return pipe(**arguments)


def keypoints_with(joint: int, x: float, y: float) -> np.ndarray:
    keypoints = TINY_KEYPOINTS.copy()
    keypoints[joint, :2] = (x, y)
    return keypoints


# ----------------------------------------------------------------------------------------------------------------
# Pipeline call
# ----------------------------------------------------------------------------------------------------------------

source_float = np.asarray(SOURCE, dtype=np.float32)
PIPELINE_CASES = {
    # source_image
    "empty source list": ({"source_image": []}, ValueError, "source_image"),
    "source path string": ({"source_image": "person.jpg"}, TypeError, "source_image"),
    "source float tensor in 0..255": (
        {"source_image": torch.from_numpy(source_float).permute(2, 0, 1)},
        ValueError,
        r"source_image.*\[0, 1\]",
    ),
    "source float array in 0..255": ({"source_image": source_float}, ValueError, r"source_image.*255"),
    "source array with NaN": ({"source_image": np.full((64, 64, 3), np.nan, np.float32)}, ValueError, "source_image"),
    "source tensor in [-1, 1]": ({"source_image": torch.full((3, 64, 64), -0.5)}, ValueError, "source_image"),
    "source int32 array": ({"source_image": np.zeros((64, 64, 3), np.int32)}, ValueError, "source_image.*dtype"),
    "source RGBA image": ({"source_image": SOURCE.convert("RGBA")}, ValueError, "source_image.*alpha"),
    "source array channels first": ({"source_image": np.zeros((3, 64, 64), np.uint8)}, ValueError, "source_image"),
    "source tensor channels last": ({"source_image": torch.zeros(64, 64, 3)}, ValueError, "source_image"),
    "source list holding a batch": (
        {"source_image": [np.zeros((2, 64, 64, 3), np.uint8)]},
        ValueError,
        r"source_image\[0\]",
    ),
    "sources of different sizes": (
        {"source_image": [SOURCE, SOURCE.resize((32, 32))], "source_parsing": [PARSING, PARSING]},
        ValueError,
        "source_image",
    ),
    # sizes and numbers
    "height as float": ({"height": 64.0}, TypeError, "height"),
    "width as string": ({"width": "64"}, TypeError, "width"),
    "height not a multiple of the VAE factor": ({"height": 63}, ValueError, "height"),
    "width zero": ({"width": 0}, ValueError, "width"),
    "num_inference_steps zero": ({"num_inference_steps": 0}, ValueError, "num_inference_steps"),
    "num_inference_steps float": ({"num_inference_steps": 2.5}, TypeError, "num_inference_steps"),
    "num_images_per_prompt zero": ({"num_images_per_prompt": 0}, ValueError, "num_images_per_prompt"),
    "guidance_scale inf": ({"guidance_scale": math.inf}, ValueError, "guidance_scale"),
    "guidance_scale nan": ({"guidance_scale": math.nan}, ValueError, "guidance_scale"),
    "guidance_scale negative": ({"guidance_scale": -1.0}, ValueError, "guidance_scale"),
    "guidance_scale string": ({"guidance_scale": "2"}, TypeError, "guidance_scale"),
    "eta nan": ({"eta": math.nan}, ValueError, "eta"),
    "eta negative": ({"eta": -0.5}, ValueError, "eta"),
    "latents with NaN": ({"latents": torch.full((1, 4, 32, 32), math.nan)}, ValueError, "latents"),
    "latents of the wrong shape": ({"latents": torch.zeros(1, 4, 8, 8)}, ValueError, "latents"),
    "latents as an array": ({"latents": np.zeros((1, 4, 32, 32))}, TypeError, "latents"),
    "output_type unknown": ({"output_type": "jpg"}, ValueError, "output_type"),
    "generator an int": ({"generator": 0}, TypeError, "generator"),
    "generator list of the wrong length": (
        {"generator": [torch.Generator(), torch.Generator()]},
        ValueError,
        "generator",
    ),
    "callback tensor input unknown": (
        {"callback_on_step_end_tensor_inputs": ["noise"]},
        ValueError,
        "callback_on_step_end_tensor_inputs",
    ),
    "callback not callable": ({"callback_on_step_end": 5}, TypeError, "callback_on_step_end"),
    # target_pose
    "keypoints (17, 2)": ({"target_pose": np.zeros((17, 2))}, ValueError, r"target_pose.*\(18, 2\).*\(17, 2\)"),
    "17 (x, y) tuples": ({"target_pose": [(1.0, 2.0)] * 17}, ValueError, r"target_pose.*\(17, 2\)"),
    "empty pose list": ({"target_pose": []}, ValueError, "target_pose"),
    "pose path string": ({"target_pose": "pose.png"}, TypeError, "target_pose"),
    "pose dict": ({"target_pose": {"keypoints": TINY_KEYPOINTS.tolist()}}, TypeError, "target_pose"),
    "wrist at x = -30": ({"target_pose": keypoints_with(4, -30, 30)}, ValueError, "target_pose.*right_wrist"),
    "wrist at x = 70": ({"target_pose": keypoints_with(4, 70, 30)}, ValueError, "target_pose.*right_wrist"),
    "normalised keypoints": ({"target_pose": TINY_KEYPOINTS / 64}, ValueError, "target_pose.*normalised"),
    "3 poses for 2 sources": (
        {"source_image": [SOURCE] * 2, "source_parsing": [PARSING] * 2, "target_pose": [TINY_KEYPOINTS] * 3},
        ValueError,
        "target_pose",
    ),
    "pose list holding a batch": ({"target_pose": [np.stack([TINY_KEYPOINTS] * 2)]}, ValueError, r"target_pose\[0\]"),
    "second of two poses (17, 2)": (
        {
            "source_image": [SOURCE] * 2,
            "source_parsing": [PARSING] * 2,
            "target_pose": [TINY_KEYPOINTS, np.zeros((17, 2))],
        },
        ValueError,
        r"^`target_pose\[1\]` must have shape \(18, 2\)",  # the bad element, by its index
    ),
    "second of two poses out of the frame": (
        {
            "source_image": [SOURCE] * 2,
            "source_parsing": [PARSING] * 2,
            "target_pose": [TINY_KEYPOINTS, keypoints_with(4, 70, 30)],
        },
        ValueError,
        r"^`target_pose\[1\]` has joints outside .*right_wrist",
    ),
    "skeleton array with alpha": ({"target_pose": np.zeros((64, 64, 4), np.uint8)}, ValueError, "target_pose.*alpha"),
    "skeleton float array in 0..255": ({"target_pose": np.full((64, 64, 3), 200.0)}, ValueError, "target_pose"),
    "photo without a detector": (
        {"target_pose": SOURCE, "target_pose_is_photo": True},
        ValueError,
        "pose_detector",
    ),
    "detector not callable": (
        {"target_pose": SOURCE, "target_pose_is_photo": True, "pose_detector": "openpose"},
        TypeError,
        "pose_detector",
    ),
    "retarget keypoints": ({"retarget_pose": True}, ValueError, "retarget_pose"),
    # source_parsing and its label map
    "parsing of another aspect ratio": ({"source_parsing": PARSING[:, :32]}, ValueError, "source_parsing.*aspect"),
    "parsing with an unknown label id": ({"source_parsing": np.full((64, 64), 30)}, ValueError, "source_parsing.*30"),
    "parsing as a colour picture": (
        {"source_parsing": PIL.Image.new("RGB", (64, 64), (255, 0, 0))},
        ValueError,
        "source_parsing.*colour",
    ),
    "parsing with fractional ids": ({"source_parsing": PARSING + 0.5}, ValueError, "source_parsing.*integer"),
    "two maps for one source": ({"source_parsing": [PARSING, PARSING]}, ValueError, "source_parsing"),
    "empty parsing list": ({"source_parsing": []}, ValueError, "source_parsing"),
    "no parsing and no parser": ({"source_parsing": None}, ValueError, "source_parsing"),
    "parsing without a person": ({"source_parsing": np.zeros((64, 64), np.int64)}, ValueError, "source_parsing"),
    "parsing path string": ({"source_parsing": "parsing.png"}, TypeError, "source_parsing"),
    "label map unknown": ({"parsing_label_map": "nonsense"}, ValueError, "parsing_label_map"),
    "label map dict without groups": (
        {"parsing_label_map": {"labels": {0: "background"}}},
        ValueError,
        "parsing_label_map",
    ),
}


@pytest.mark.parametrize("kwargs, error, match", PIPELINE_CASES.values(), ids=PIPELINE_CASES.keys())
def test_pipeline_call_refuses_bad_input_before_any_work(pipe, kwargs, error, match, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("a model ran before the bad input was refused")

    monkeypatch.setattr(pipe.image_encoder, "forward", no_work)
    monkeypatch.setattr(pipe.source_unet, "forward", no_work)
    with pytest.raises(error, match=match):
        call(pipe, **kwargs)


# The pipeline's own argument checks, message by message (the conditioning helpers' messages are checked in
# tests/conditioning/).
MULTIPLES = "`height` and `width` must be positive multiples of 2"  # the tiny VAE's factor
DETECTOR_HINT = "`truepose.conditioning.PoseDetector.from_pretrained('lllyasviel/Annotators')`."
GENERATOR = "`generator` must be a torch.Generator or a list of them, got"
NO_PARSER = (
    "`source_parsing` is required: this pipeline has no `parser`. Pass a parsing map per source image, or load a human "
    "parser into the pipeline (see docs/inputs.md)."
)
RETARGET = (
    "`retarget_pose=True` needs `target_pose_is_photo=True` (the source person's keypoints come from the "
    "`pose_detector`); keypoints and skeleton images are used as they are."
)
CHECK_MESSAGES = {
    "height float": ({"height": 64.0}, TypeError, "`height` must be an int, got float 64.0."),
    "width string": ({"width": "64"}, TypeError, "`width` must be an int, got str '64'."),
    "height 63": ({"height": 63}, ValueError, f"{MULTIPLES}, got 63x64."),
    "height 0": ({"height": 0}, ValueError, f"{MULTIPLES}, got 0x64."),
    "width -2": ({"width": -2}, ValueError, f"{MULTIPLES}, got 64x-2."),
    "steps float": ({"num_inference_steps": 2.5}, TypeError, "`num_inference_steps` must be an int, got float 2.5."),
    "images 0": ({"num_images_per_prompt": 0}, ValueError, "`num_images_per_prompt` must be a positive int, got 0."),
    "images True": (
        {"num_images_per_prompt": True},
        TypeError,
        "`num_images_per_prompt` must be an int, got bool True.",
    ),
    "guidance string": ({"guidance_scale": "2"}, TypeError, "`guidance_scale` must be a number, got str '2'."),
    "guidance -1": ({"guidance_scale": -1.0}, ValueError, "`guidance_scale` must be a finite number >= 0, got -1.0."),
    "eta nan": ({"eta": math.nan}, ValueError, "`eta` must be a finite number >= 0, got nan."),
    "eta None": ({"eta": None}, TypeError, "`eta` must be a number, got NoneType None."),
    "sources of two sizes": (
        {"source_image": [SOURCE, SOURCE.resize((32, 32))], "source_parsing": [PARSING, PARSING]},
        ValueError,
        "All `source_image`s must have the same size, got [(64, 64), (32, 32)].",
    ),
    "2 sources, 3 poses": (
        {"source_image": [SOURCE] * 2, "source_parsing": [PARSING] * 2, "target_pose": [TINY_KEYPOINTS] * 3},
        ValueError,
        "`source_image` and `target_pose` batch sizes must match (or one be 1), got 2 and 3.",
    ),
    "2 maps, 1 source": (
        {"source_parsing": [PARSING] * 2},
        ValueError,
        "`source_parsing` has 2 maps for 1 source images.",
    ),
    "no parsing, no parser": ({"source_parsing": None}, ValueError, NO_PARSER),
    "no parsing maps": (
        {"source_parsing": []},
        ValueError,
        "`source_parsing` is an empty list; pass one parsing map per source image.",
    ),
    "photo, no detector": (
        {"target_pose": SOURCE, "target_pose_is_photo": True},
        ValueError,
        f"`target_pose_is_photo=True` needs a `pose_detector`, e.g. {DETECTOR_HINT}",
    ),
    "detector a string": (
        {"target_pose": SOURCE, "target_pose_is_photo": True, "pose_detector": "openpose"},
        TypeError,
        "`pose_detector` must be callable (image -> keypoints), got str.",
    ),
    "retarget keypoints": ({"retarget_pose": True}, ValueError, RETARGET),
    "generator 0": ({"generator": 0}, TypeError, f"{GENERATOR} 0."),
    "generator []": ({"generator": []}, TypeError, f"{GENERATOR} []."),
    "3 generators, 2 images": (
        {"generator": [torch.Generator()] * 3, "num_images_per_prompt": 2},
        ValueError,
        "`generator` is a list of 3 generators for 2 images.",
    ),
    "latents array": (
        {"latents": np.zeros((1, 4, 32, 32))},
        TypeError,
        "`latents` must be a torch.Tensor, got ndarray.",
    ),
    "latents 8x8": (
        {"latents": torch.zeros(1, 4, 8, 8)},
        ValueError,
        "`latents` must have shape (1, 4, 32, 32), got (1, 4, 8, 8).",
    ),
    "latents NaN": (
        {"latents": torch.full((1, 4, 32, 32), math.nan)},
        ValueError,
        "`latents` holds non-finite values (NaN or inf).",
    ),
    "output_type jpg": (
        {"output_type": "jpg"},
        ValueError,
        "`output_type` must be 'pil', 'np', 'pt' or 'latent', got 'jpg'.",
    ),
    "callback 5": ({"callback_on_step_end": 5}, TypeError, "`callback_on_step_end` must be callable, got int."),
    "callback input noise": (
        {"callback_on_step_end_tensor_inputs": ["noise"]},
        ValueError,
        "`callback_on_step_end_tensor_inputs` must be in ['latents']: ['noise'].",
    ),
}


@pytest.mark.parametrize("kwargs, error, message", CHECK_MESSAGES.values(), ids=CHECK_MESSAGES.keys())
def test_pipeline_argument_errors_say_what_was_expected(pipe, kwargs, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call(pipe, **kwargs)


def test_parse_sources_names_the_argument_and_the_map_at_fault(pipe):
    """`parse_sources` (public, also called outside `__call__`) names each map of a batch by its index."""
    no_person = np.zeros((64, 64), np.int64)
    person_hint = ": none of its pixels has a body, clothing or face label. Check that the parsing map and its "
    cases = [
        (([SOURCE], [], "atr"), "`source_parsing` is an empty list; pass one parsing map per source image."),
        (([SOURCE], PARSING, "nonsense"), "Unknown `parsing_label_map` 'nonsense'; known names are ['atr', 'cihp', 'deepfashion', 'lip']."),
        (([SOURCE], no_person, "atr"), f"no person found in source_parsing{person_hint}`label_map` match the image."),
        (([SOURCE] * 2, [PARSING, no_person], "atr"), f"no person found in source_parsing[1]{person_hint}`label_map` match the image."),
        (([SOURCE] * 2, [PARSING[:, :32], PARSING], "atr"), "`source_parsing[0]` has size (H, W) = (64, 32) but the image is (64, 64)"),
    ]  # fmt: skip
    for arguments, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            pipe.parse_sources(*arguments)
    lip = np.where(PARSING > 0, 19, 0)  # 19: LIP's right shoe, beyond ATR's ids 0-17
    maps, label_map = pipe.parse_sources([SOURCE], lip, "lip")
    assert label_map.name == "lip" and np.array_equal(maps[0], lip)


def test_legal_calls_near_the_limits_run_without_a_warning(pipe):
    """A source at the output's (non-square) aspect ratio, 36 pixels wide (a multiple of the tiny VAE's factor 2, not
    of SD's 8), one source for two poses, every callable and output type the checks accept (any warning fails the
    test: pyproject.toml turns warnings into errors)."""
    tall, tall_parsing = SOURCE.crop((14, 0, 50, 64)), PARSING[:, 14:50]
    tall_pose = rescale_keypoints(TINY_KEYPOINTS, (64, 64), (64, 36))
    latents = call(pipe, source_image=tall, source_parsing=tall_parsing, target_pose=tall_pose, width=36).images
    assert latents.shape[-2:] == (32, 18)
    assert len(call(pipe, target_pose=[TINY_KEYPOINTS] * 2, output_type="pt").images) == 2
    detector_calls = []
    detector = lambda image: detector_calls.append(image.size) or TINY_KEYPOINTS.copy()  # noqa: E731
    call(
        pipe, target_pose=SOURCE, target_pose_is_photo=True, pose_detector=detector, callback_on_step_end=lambda *a: {}
    )
    assert detector_calls == [(64, 64), (64, 64)]  # the target photo, then the source to retarget onto
    call(pipe, pose_detector=detector)  # keypoints: the detector is not needed, not called
    assert len(detector_calls) == 2
    assert len(call(pipe, generator=[torch.Generator()] * 2, num_images_per_prompt=2).images) == 2


# ----------------------------------------------------------------------------------------------------------------
# Legal but suspicious: one warning, and the call still runs
# ----------------------------------------------------------------------------------------------------------------

missing_all = np.full((18, 3), -1.0)
WARNING_CASES = {
    "pose with every joint -1": ({"target_pose": missing_all}, "target_pose.*no visible joint"),
    "pose of NaN": ({"target_pose": np.full((18, 2), np.nan)}, "target_pose.*no visible joint"),
    "pose with confidence 0": (
        {"target_pose": np.concatenate([TINY_KEYPOINTS[:, :2], np.zeros((18, 1))], axis=1)},
        "target_pose.*no visible joint",
    ),
    "source of another aspect ratio": (
        {"width": 32, "target_pose": rescale_keypoints(TINY_KEYPOINTS, (64, 64), (64, 32))},
        "source_image.*aspect ratio",
    ),
    "skeleton of another aspect ratio": ({"target_pose": PIL.Image.new("RGB", (32, 64))}, "target_pose.*aspect ratio"),
}


@pytest.mark.parametrize("kwargs, match", WARNING_CASES.values(), ids=WARNING_CASES.keys())
def test_suspicious_input_warns_once(pipe, kwargs, match):
    with pytest.warns(UserWarning, match=match) as record:
        latents = call(pipe, **kwargs).images
    assert len([w for w in record if issubclass(w.category, UserWarning)]) == 1
    # attributed to the caller's line (here), not to TruePose's or torch's no_grad wrapper's
    assert not record[0].filename.startswith((os.path.dirname(truepose.__file__), os.path.dirname(torch.__file__)))
    assert torch.isfinite(latents).all()


# ----------------------------------------------------------------------------------------------------------------
# Loading, saving and conditioning helpers
# ----------------------------------------------------------------------------------------------------------------


def test_loading_and_saving_name_the_problem(tmp_path, pipe):
    with pytest.raises(OSError, match="does not exist"):
        TruePosePipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(OSError, match="model_index.json"):
        TruePosePipeline.from_pretrained(tmp_path)
    (tmp_path / "model_index.json").write_text("{")
    with pytest.raises(ValueError, match="model_index.json"):
        TruePosePipeline.from_pretrained(tmp_path)


EMPTY_SAVE_DIRECTORY = (
    "`save_directory` is empty; name the folder to write the checkpoint into (use '.' for the current directory)."
)
SAVE_CASES = {
    "empty path": ("", ValueError, EMPTY_SAVE_DIRECTORY),
    "blank path": ("  ", ValueError, EMPTY_SAVE_DIRECTORY),
    "a file": ("file.txt", ValueError, "`save_directory` 'file.txt' is a file, not a folder."),
    "None": (None, TypeError, "`save_directory` must be a folder path, got NoneType."),
    "a number": (5, TypeError, "`save_directory` must be a folder path, got int."),
}


@pytest.mark.parametrize("directory, error, message", SAVE_CASES.values(), ids=SAVE_CASES.keys())
def test_save_pretrained_refuses_unintended_folders(pipe, tmp_path, monkeypatch, directory, error, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("keep me")
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        pipe.save_pretrained(directory)
    assert sorted(os.listdir(tmp_path)) == ["file.txt"] and (tmp_path / "file.txt").read_text() == "keep me"


def test_conditioning_helpers_name_the_argument(tmp_path):
    cases = [
        (lambda: PoseDetector.from_pretrained(str(tmp_path / "no-such-folder")), OSError, "does not exist"),
        (lambda: PoseDetector(None, kind="yolo"), ValueError, "kind"),
        (lambda: get_label_map("nonsense"), ValueError, "label_map"),
        (lambda: get_label_map(3), TypeError, "label_map"),
        (lambda: read_openpose_json({"people": [{"pose_keypoints_2d": [1, 2]}]}), ValueError, r"people\[0\]"),
        (lambda: read_openpose_json(5), TypeError, "path_or_dict"),
        (lambda: read_deepfashion_annotations(tmp_path / "missing.csv"), FileNotFoundError, "missing.csv"),
        (lambda: rescale_keypoints(TINY_KEYPOINTS, (0, 64), (64, 64)), ValueError, "height"),
        (lambda: rescale_keypoints(TINY_KEYPOINTS, (64, 64.0), (64, 64)), TypeError, "width"),
        (lambda: prepare_pose_image(TINY_KEYPOINTS, 64, 64, retarget=True), ValueError, "source_keypoints"),
    ]
    for function, error, match in cases:
        with pytest.raises(error, match=match):
            function()


# ----------------------------------------------------------------------------------------------------------------
# Command line: one line naming the option, before any work
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    SOURCE.save(root / "source.png")
    PIL.Image.fromarray(PARSING.astype(np.uint8)).save(root / "parsing.png")
    np.save(root / "pose.npy", TINY_KEYPOINTS)
    (root / "nobody.json").write_text(json.dumps({"people": []}))
    return root


def generate_argv(files, **options):
    values = {
        "--model": str(files / "no-model-needed"),
        "--source": str(files / "source.png"),
        "--pose": str(files / "pose.npy"),
        "--parsing": str(files / "parsing.png"),
        "--output": str(files / "out.png"),
    }
    values.update(options)
    return ["generate"] + [item for pair in values.items() for item in pair]


CLI_CASES = {
    "output folder missing": ({"--output": "{files}/nodir/out.png"}, "--output.*does not exist"),
    "output extension unknown": ({"--output": "{files}/out.xyz"}, "--output.*extension"),
    "output is a folder": ({"--output": "{files}"}, "--output.*folder"),
    "source missing": ({"--source": "{files}/missing.png"}, "--source.*no such file"),
    "pose missing": ({"--pose": "{files}/missing.npy"}, "--pose.*no such file"),
    "parsing missing": ({"--parsing": "{files}/missing.png"}, "--parsing.*no such file"),
    "OpenPose JSON without people": ({"--pose": "{files}/nobody.json"}, "--pose.*no person"),
    "model folder missing": ({}, "does not exist"),
    "label map unknown": ({"--label-map": "nonsense"}, "--label-map"),
}


@pytest.mark.parametrize("options, match", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_prints_one_line_before_any_work(files, capsys, options, match):
    options = {key: value.format(files=files) for key, value in options.items()}
    assert cli_main(generate_argv(files, **options)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    assert re.search(match, captured.err), captured.err
    assert not (files / "out.png").exists()


def test_cli_debug_shows_the_traceback(files):
    with pytest.raises(ValueError, match="--output"):
        cli_main(["--debug", *generate_argv(files, **{"--output": str(files / "out.xyz")})])


ARGPARSE_CASES = {
    "steps zero": (["--steps", "0"], "--steps"),
    "guidance scale inf": (["--guidance-scale", "inf"], "--guidance-scale"),
    "guidance scale nan": (["--guidance-scale", "nan"], "--guidance-scale"),
}


@pytest.mark.parametrize("extra, match", ARGPARSE_CASES.values(), ids=ARGPARSE_CASES.keys())
def test_cli_numbers_are_checked_by_the_argument_parser(files, capsys, extra, match):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(generate_argv(files) + extra)
    assert exit_info.value.code == 2 and match in capsys.readouterr().err


def test_cli_demo_checks_its_output_first(files, capsys):
    assert cli_main(["demo", "--output", str(files / "nodir" / "demo.png")]) == 2
    assert "--output" in capsys.readouterr().err


def test_preprocess_names_a_local_parser_path_that_does_not_exist(tmp_path):
    SOURCE.save(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="`parser`: the local path '/nonexistent' does not exist"):
        preprocess(tmp_path, tmp_path / "out", parser="/nonexistent")
    assert cli_main(["preprocess", str(tmp_path), str(tmp_path / "out"), "--parser", "/nonexistent"]) == 1
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# Training arguments
# ----------------------------------------------------------------------------------------------------------------

TRAIN_CASES = {
    "condition_dropout 1": (["--condition_dropout", "1"], "--condition_dropout"),
    "train_batch_size 0": (["--train_batch_size", "0"], "--train_batch_size"),
    "max_train_steps 0": (["--max_train_steps", "0"], "--max_train_steps"),
    "resolution 0": (["--resolution", "0", "64"], "--resolution"),
    "learning_rate 0": (["--learning_rate", "0"], "--learning_rate"),
    "ema_decay 1": (["--ema_decay", "1"], "--ema_decay"),
    "lora_rank -1": (["--lora_rank", "-1"], "--lora_rank"),
    "num_pairs 0": (["--num_pairs", "0"], "--num_pairs"),
    "deepfashion without data_root": (["--dataset", "deepfashion"], "--data_root"),
    "unknown prediction_type": (["--prediction_type", "sample"], "--prediction_type"),
    "resolution not a number": (["--resolution", "64", "wide"], "--resolution"),
}


@pytest.mark.parametrize("argv, match", TRAIN_CASES.values(), ids=TRAIN_CASES.keys())
def test_training_arguments_are_refused_by_name(capsys, argv, match):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--pretrained_model", "model", "--output_dir", "out", *argv])
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err


def test_training_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    args = parse_args(["--pretrained_model", "model", "--output_dir", str(tmp_path / "file")])
    with pytest.raises(ValueError, match="--output_dir"):
        check_output_dir(args)


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------

image = np.zeros((64, 64, 3), np.uint8)
METRIC_CASES = {
    "size without x": (lambda: metrics.parse_size("256"), ValueError, "size"),
    "size zero": (lambda: metrics.parse_size((0, 176)), ValueError, "size"),
    "ssim shapes differ": (lambda: metrics.ssim(image, image[:60]), ValueError, "real.*fake"),
    "psnr float images": (lambda: metrics.psnr(image / 255, image / 255), ValueError, "real.*fake"),
    "fid backbone unknown": (lambda: metrics.check_fid_backbone("vgg"), ValueError, "fid_backbone"),
    "fid dims wrong": (lambda: metrics.check_fid_backbone("pytorch-fid", 100), ValueError, "fid_dims"),
    "image folder missing": (lambda: metrics.list_image_files("/nonexistent-folder"), ValueError, "nonexistent"),
}


@pytest.mark.parametrize("function, error, match", METRIC_CASES.values(), ids=METRIC_CASES.keys())
def test_metrics_refuse_bad_input_by_name(function, error, match):
    with pytest.raises(error, match=match):
        function()
