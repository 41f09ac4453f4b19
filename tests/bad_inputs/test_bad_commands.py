"""Issue 24: every command checks every option before work (naming the flag), every reader names its file (suffixes
in any case), checkpoints are refused at load with a message naming the component, and a shared app has limits.

"Before work" is asserted by making the model loaders (and the pipeline call) fail the test when reached."""

import json
import os
import re
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from truepose import TruePosePipeline
from truepose.animation import TruePoseAnimationPipeline, load_pose_sequence
from truepose.cli import main as cli_main
from truepose.conditioning import get_label_map
from truepose.conditioning import pose as pose_utils
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

SOURCE, PARSING = tiny_person(0)


class ModelLoaded(AssertionError):
    """Raised by the patched loaders: the command got past its checks (the test decides whether it should)."""


@pytest.fixture
def no_model(monkeypatch):
    """Every way a command loads a model or generates fails the test with `ModelLoaded`."""

    def loaded(*args, **kwargs):
        raise ModelLoaded("the model was loaded")

    monkeypatch.setattr(TruePosePipeline, "from_pretrained", classmethod(loaded))
    monkeypatch.setattr(TruePoseAnimationPipeline, "from_pretrained", classmethod(loaded))
    # truepose.app binds load_shipped_model at import: patching it first imports it unpatched, then patch demo's
    monkeypatch.setattr("truepose.app.load_shipped_model", loaded)
    monkeypatch.setattr("truepose.demo.load_shipped_model", loaded)
    monkeypatch.setattr(TruePosePipeline, "__call__", loaded)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    SOURCE.save(root / "source.png")
    PIL.Image.fromarray(PARSING.astype(np.uint8)).save(root / "parsing.png")
    np.save(root / "pose.npy", TINY_KEYPOINTS)
    with open(root / "P.NPY", "wb") as file:  # np.save(path) would append ".npy"
        np.save(file, TINY_KEYPOINTS)
    np.save(root / "poses.npy", np.stack([TINY_KEYPOINTS, TINY_KEYPOINTS]))
    (root / "text.npy").write_text("18 rows of keypoints, honestly\n")
    (root / "truncated.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2')
    (root / "list.json").write_text(json.dumps(TINY_KEYPOINTS.tolist()))
    (root / "people-strings.json").write_text(json.dumps({"people": ["nose"]}))
    far = TINY_KEYPOINTS.copy()
    far[0, :2] = (500, 500)
    np.save(root / "far.npy", far)
    bad_parsing = PARSING.astype(np.uint8).copy()
    bad_parsing[0, 0] = 99
    PIL.Image.fromarray(bad_parsing).save(root / "bad-ids.png")
    (root / "not-an-image.png").write_text("hello")
    (root / "file").write_text("a file, not a folder")
    PIL.Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "no-person.png")
    with open(root / "archive.npy", "wb") as file:
        np.savez(file, pose=TINY_KEYPOINTS)
    (root / "folder.gif").mkdir()
    return root


def run(argv, capsys):
    """Runs the command; returns (exit status, stderr)."""
    try:
        status = cli_main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.err


def generate_argv(files, **options):
    values = {
        "--model": str(files / "model"),
        "--source": str(files / "source.png"),
        "--pose": str(files / "pose.npy"),
        "--parsing": str(files / "parsing.png"),
        "--output": str(files / "out.png"),
    }
    values.update({key: value.format(files=files) for key, value in options.items()})
    return ["generate"] + [item for pair in values.items() for item in pair]


def animate_argv(files, *extra, **options):
    values = {"--source": str(files / "source.png"), "--parsing": str(files / "parsing.png")}
    values.update({"--poses": str(files / "poses.npy"), "--output": str(files / "out.gif")})
    values.update({key: value.format(files=files) for key, value in options.items()})
    return ["animate"] + [item for pair in values.items() for item in pair] + list(extra)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")

GENERATE_CASES = {
    "pose: a text file named .npy": ({"--pose": "{files}/text.npy"}, r"--pose.*text\.npy.*not readable as OpenPose"),
    "pose: truncated JSON": ({"--pose": "{files}/truncated.json"}, r"--pose.*truncated\.json.*not valid JSON"),
    "pose: list-shaped JSON": ({"--pose": "{files}/list.json"}, r"--pose.*list\.json.*OpenPose object.*list"),
    "pose: people of strings": ({"--pose": "{files}/people-strings.json"}, r"people-strings\.json.*people\[0\]"),
    "pose: two poses": ({"--pose": "{files}/poses.npy"}, r"--pose.*poses\.npy.*2 poses"),
    "pose: joint far outside the source": ({"--pose": "{files}/far.npy"}, r"--pose.*far\.npy.*outside"),
    "pose: a folder": ({"--pose": "{files}"}, r"--pose.*folder"),
    "source: not an image": ({"--source": "{files}/not-an-image.png"}, r"--source.*not-an-image\.png.*not an image"),
    "parsing: unknown label ids": ({"--parsing": "{files}/bad-ids.png"}, r"--parsing.*bad-ids\.png.*\[99\]"),
    "parsing without a person": ({"--parsing": "{files}/no-person.png"}, r"--parsing.*no-person\.png.*no person"),
    "pose: an npz archive named .npy": ({"--pose": "{files}/archive.npy"}, r"archive\.npy.*\.npz archive"),
    "device: nonsense": ({"--device": "gpu0"}, r"--device 'gpu0' is not a torch device"),
    "device: meta": ({"--device": "meta"}, r"--device 'meta'"),
    "device: cuda without a GPU": pytest.param({"--device": "cuda"}, r"--device 'cuda'.*no CUDA GPU", marks=NO_CUDA),
    "label map: broken JSON file": ({"--label-map": "{files}/truncated.json"}, r"--label-map.*truncated\.json"),
}


@pytest.mark.parametrize("options, match", GENERATE_CASES.values(), ids=GENERATE_CASES.keys())
def test_generate_refuses_before_loading_the_model(files, capsys, no_model, options, match):
    status, err = run(generate_argv(files, **options), capsys)
    assert status == 2 and err.count("\n") == 1 and re.search(match, err), err


@pytest.mark.parametrize("name", ["P.NPY", "pose.npy"])
def test_generate_accepts_keypoint_suffixes_in_any_case(files, no_model, name):
    with pytest.raises(ModelLoaded):  # got past every check
        cli_main(generate_argv(files, **{"--pose": f"{{files}}/{name}"}))


ANIMATE_CASES = {
    "output suffix": ({"--output": "{files}/out.avi"}, r"--output.*\.gif, \.mp4 or a folder"),
    "output folder missing": ({"--output": "{files}/nodir/out.gif"}, r"--output.*does not exist"),
    "output frames folder is a file": ({"--output": "{files}/file"}, r"--output.*is a file"),
    "output gif is a folder": ({"--output": "{files}/folder.gif"}, r"--output.*is a folder"),
    "poses: a text file named .npy": ({"--poses": "{files}/text.npy"}, r"--poses.*text\.npy.*not readable"),
    "poses missing": ({"--poses": "{files}/missing.npy"}, r"--poses.*no such file"),
    "poses: joint outside the source": (
        {"--poses": "{files}/far.npy"},
        r"--poses.*far\.npy' frame 0` has joints outside",
    ),
    "parsing with an example person": ({"--source": None, "--example-person": "0"}, r"--parsing goes with --source"),
    "device: nonsense": ({"--device": "tpu:7"}, r"--device 'tpu:7'"),
    "device: cuda without a GPU": pytest.param({"--device": "cuda"}, r"--device 'cuda'", marks=NO_CUDA),
    "fps too small for a GIF": ({"--fps": "1e-300"}, r"--fps 1e-300: give a rate from 0.01 to 1000"),
    "scale beyond memory": ({"--scale": "100000"}, r"--scale 100000 makes 6400000x6400000 frames; at most 8192"),
}


@pytest.mark.parametrize("options, match", ANIMATE_CASES.values(), ids=ANIMATE_CASES.keys())
def test_animate_refuses_before_loading_the_model(files, capsys, no_model, options, match):
    argv = animate_argv(files, **{k: v for k, v in options.items() if v is not None})
    if options.get("--source", "") is None:
        index = argv.index("--source")
        del argv[index : index + 2]
    status, err = run(argv, capsys)
    assert status == 2 and err.count("\n") == 1 and re.search(match, err), err


ANIMATE_NUMBERS = {
    "fps 0": (["--fps", "0"], "--fps"),
    "fps nan": (["--fps", "nan"], "--fps"),
    "scale 0": (["--scale", "0"], "--scale"),
    "steps 0": (["--steps", "0"], "--steps"),
    "guidance -1": (["--guidance-scale", "-1"], "--guidance-scale"),
    "frames per batch 0": (["--frames-per-batch", "0"], "--frames-per-batch"),
    "interpolate -1": (["--interpolate", "-1"], "--interpolate"),
    "interpolate not a number": (["--interpolate", "lots"], "--interpolate"),
    "seed -1": (["--seed", "-1"], "--seed"),
    "seed beyond 64 bits": (["--seed", str(2**64)], "--seed"),
    "example person -1": (["--example-person", "-1"], "--example-person"),
}


@pytest.mark.parametrize("extra, flag", ANIMATE_NUMBERS.values(), ids=ANIMATE_NUMBERS.keys())
def test_animate_numbers_are_checked_by_the_argument_parser(files, capsys, no_model, extra, flag):
    status, err = run(animate_argv(files, *extra), capsys)
    assert status == 2 and f"argument {flag}" in err, err


def test_animate_refuses_a_huge_interpolation_before_work(files, capsys, no_model):
    status, err = run(animate_argv(files, "--interpolate", "1000000"), capsys)
    assert status == 2 and "--interpolate 1000000 makes 1000002 frames; at most 1000" in err, err
    with pytest.raises(ModelLoaded):  # 1000 frames exactly is allowed
        cli_main(animate_argv(files, "--interpolate", "998"))


def test_animate_refuses_an_odd_mp4_frame_before_work(files, capsys, no_model, tmp_path):
    PIL.Image.new("RGB", (63, 63)).save(tmp_path / "odd.png")
    argv = ["animate", "--source", str(tmp_path / "odd.png"), "--poses", str(files / "pose.npy")]
    status, err = run(argv + ["--output", str(tmp_path / "a.mp4")], capsys)
    assert status == 2 and "MP4 needs an even frame size, got 63x63 (--scale 1)" in err, err


@pytest.mark.parametrize("name", ["P.NPY", "poses.npy"])
def test_animate_accepts_keypoint_suffixes_in_any_case(files, no_model, name):
    with pytest.raises(ModelLoaded):
        cli_main(animate_argv(files, **{"--poses": f"{{files}}/{name}"}))


OTHER_COMMANDS = {
    "app port": (["app", "--port", "70000"], "argument --port"),
    "app image side": (["app", "--max-image-side", "0"], "argument --max-image-side"),
    "app steps": (["app", "--max-steps", "-3"], "argument --max-steps"),
    "metrics batch size": (["metrics", "a", "b", "--batch-size", "0"], "argument --batch-size"),
    "metrics workers": (["metrics", "a", "b", "--num-workers", "-1"], "argument --num-workers"),
    "metrics sigma": (["metrics", "a", "b", "--ssim-256-sigma", "nan"], "argument --ssim-256-sigma"),
    "metrics label map": (["metrics", "{files}", "{files}", "--label-map", "nope"], "--label-map"),
    "metrics json is a folder": (["metrics", "{files}", "{files}", "--json", "{files}"], "--json.*is a folder"),
    "metrics json under a file": (["metrics", "{files}", "{files}", "--json", "{files}/file/m.json"], "--json"),
    "metrics device": (["metrics", "{files}", "{files}", "--device", "gpu0"], "--device 'gpu0'"),
    "evaluate steps": (
        ["evaluate", "--model", "m", "--data-root", "d", "--output-dir", "o", "--steps", "0"],
        "--steps",
    ),
    "evaluate limit": (
        ["evaluate", "--model", "m", "--data-root", "d", "--output-dir", "o", "--limit", "0"],
        "--limit",
    ),
    "evaluate label map": (
        ["evaluate", "--model", "{files}", "--data-root", "{files}", "--output-dir", "{files}/o", "--label-map", "x"],
        "--label-map",
    ),
    "evaluate data root": (
        ["evaluate", "--model", "{files}", "--data-root", "{files}/nothing", "--output-dir", "{files}/o"],
        "--data-root.*not a folder",
    ),
    "evaluate model path": (
        ["evaluate", "--model", "/no/such/model", "--data-root", "{files}", "--output-dir", "{files}/o"],
        "--model.*does not exist",
    ),
    "evaluate output is a file": (
        ["evaluate", "--model", "{files}", "--data-root", "{files}", "--output-dir", "{files}/file"],
        "--output-dir.*is a file",
    ),
    "preprocess batch size": (["preprocess", "a", "b", "--parser", "p", "--batch-size", "0"], "--batch-size"),
    "preprocess device": (["preprocess", "{files}", "{files}/out", "--parser", "p", "--device", "meta"], "--device"),
}


@pytest.mark.parametrize("argv, match", OTHER_COMMANDS.values(), ids=OTHER_COMMANDS.keys())
def test_other_commands_check_their_options_first(files, capsys, no_model, monkeypatch, argv, match):
    def work(*args, **kwargs):
        raise ModelLoaded("work started")

    monkeypatch.setattr("truepose.app.launch", work)
    monkeypatch.setattr("truepose.evaluation.metrics.compute_metrics", work)
    monkeypatch.setattr("truepose.evaluation.evaluate.evaluate", work)
    status, err = run([a.format(files=files) for a in argv], capsys)
    assert status == 2 and re.search(match, err), err


def test_preprocess_refuses_an_output_folder_that_is_a_file_before_loading(files, monkeypatch):
    from truepose.data import preprocess as preprocess_module

    monkeypatch.setattr(preprocess_module, "load_parser", lambda *a: pytest.fail("the parser was loaded"))
    with pytest.raises(ValueError, match="`output_dir`.*is a file"):
        preprocess_module.preprocess(files, files / "file", parser=lambda images: [])
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1, got 2.5"):
        preprocess_module.preprocess(files, files / "out", parser=lambda images: [], batch_size=2.5)


# ----------------------------------------------------------------------------------------------------------------
# Readers name their file; suffixes in any case
# ----------------------------------------------------------------------------------------------------------------


def test_pose_readers_name_the_file_and_the_formats(files, tmp_path):
    from truepose.conditioning.pose_files import read_pose_file_for

    read_pose_file = pose_utils.read_pose_file

    def app_read_pose_file(path):  # the reader of the CLI and the app: the one frame rule, for a 64x64 photo
        return read_pose_file_for(path, (64, 64))[0]

    np.testing.assert_array_equal(app_read_pose_file(files / "P.NPY"), read_pose_file(files / "pose.npy")[0])
    np.testing.assert_array_equal(load_pose_sequence(files / "P.NPY"), read_pose_file(files / "pose.npy"))
    (tmp_path / "pose.CSV").write_text("\n".join(",".join(map(str, row)) for row in TINY_KEYPOINTS))
    np.testing.assert_array_equal(app_read_pose_file(tmp_path / "pose.CSV"), read_pose_file(files / "pose.npy")[0])
    for name, match in [
        ("text.npy", r"text\.npy' is not readable as OpenPose \.json, \(18, 2\|3\) or \(T, 18, 2\|3\) \.npy"),
        ("truncated.json", r"OpenPose JSON '.*truncated\.json' is not valid JSON"),
        ("list.json", r"list\.json' must hold an OpenPose object"),
        ("source.png", r"source\.png' is not readable as OpenPose \.json.*suffix '\.png'"),
    ]:
        for reader in (read_pose_file, app_read_pose_file):
            with pytest.raises(ValueError, match=match):
                reader(files / name)
    np.save(tmp_path / "complex.npy", TINY_KEYPOINTS.astype(complex))
    with pytest.raises(ValueError, match=r"complex\.npy.*dtype complex128"):
        read_pose_file(tmp_path / "complex.npy")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0.JSON").write_text('{"people": 3}')
    with pytest.raises(ValueError, match=r"0\.JSON' must have a `people` list"):
        load_pose_sequence(tmp_path / "frames")


def test_label_map_files_and_dicts_name_the_problem(tmp_path):
    atr = get_label_map("atr")
    (tmp_path / "labels.JSON").write_text(json.dumps(atr.to_dict()))
    assert get_label_map(str(tmp_path / "labels.JSON")) == atr
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"`--label-map` file '.*list\.json' must hold a JSON object"):
        get_label_map(str(tmp_path / "list.json"), "--label-map")
    with pytest.raises(FileNotFoundError, match=r"`label_map` file '.*missing\.json' does not exist"):
        get_label_map(str(tmp_path / "missing.json"))
    broken = atr.to_dict()
    broken["labels"]["one"] = "Extra"
    with pytest.raises(ValueError, match=r"^`label_map` dict is malformed: invalid literal"):
        get_label_map(broken)
    broken = atr.to_dict()
    broken["groups"].pop("face")
    (tmp_path / "groups.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"`label_map file '.*groups\.json'` dict is malformed: .*`groups` must have"):
        get_label_map(tmp_path / "groups.json")


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: refused at load, naming the component folder and file
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "tiny"
    tiny_pipeline(seed=0).save_pretrained(path)
    return path


def broken_copy(checkpoint, tmp_path, edit):
    path = tmp_path / "broken"
    shutil.copytree(checkpoint, path)
    edit(path)
    return path


def random_bytes(path):
    (path / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(os.urandom(4000))


def truncated(path):
    file = path / "target_unet" / "diffusion_pytorch_model.safetensors"
    file.write_bytes(file.read_bytes()[:3000])


def changed_shape(path):
    config = json.loads((path / "pose_encoder" / "config.json").read_text())
    config["block_out_channels"] = [2 * c for c in config["block_out_channels"]]
    (path / "pose_encoder" / "config.json").write_text(json.dumps(config))


def plain_unet(path):
    index = json.loads((path / "model_index.json").read_text())
    index["target_unet"] = ["diffusers", "UNet2DConditionModel"]
    (path / "model_index.json").write_text(json.dumps(index))


CHECKPOINT_CASES = {
    "random bytes as safetensors": (
        random_bytes,
        OSError,
        r"vae/diffusion_pytorch_model\.safetensors in .* not a valid",
    ),
    "truncated safetensors": (truncated, OSError, r"target_unet/diffusion_pytorch_model\.safetensors .*incomplete"),
    "config changes a shape": (
        changed_shape,
        ValueError,
        r"pose_encoder/diffusion_pytorch_model\.safetensors holds `blocks\.0\.bias` with shape \(8,\), but "
        r"pose_encoder/config\.json builds it with shape \(16,\)",
    ),
    "plain UNet as target_unet": (plain_unet, ValueError, r"model_index\.json: component `target_unet`.*TargetNet"),
}


@pytest.mark.parametrize("edit, error, match", CHECKPOINT_CASES.values(), ids=CHECKPOINT_CASES.keys())
def test_broken_checkpoints_are_refused_at_load_naming_the_component(checkpoint, tmp_path, edit, error, match):
    with pytest.raises(error, match=match):
        TruePosePipeline.from_pretrained(broken_copy(checkpoint, tmp_path, edit))


# ----------------------------------------------------------------------------------------------------------------
# The app's limits
# ----------------------------------------------------------------------------------------------------------------


def test_app_refuses_uploads_and_steps_beyond_its_limits():
    from truepose.app import TruePoseApp, launch

    app = TruePoseApp(tiny_pipeline(seed=0), max_image_side=64, max_steps=5)
    pose = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    settings = ("atr", pose, 2, 2.0, 0, "DDIM", 0.3, 0.6, 2, True)
    assert app.generation_request(SOURCE, PARSING, *settings)["height"] == 64
    big = SOURCE.resize((72, 72))
    with pytest.raises(ValueError, match=r"^The source photo is 72x72 pixels; this app takes at most 64 pixels per"):
        app.generation_request(big, PARSING, *settings)
    app.pose_detector = lambda image: pytest.fail("the detector ran")
    with pytest.raises(ValueError, match=r"^The pose photo is 72x72 pixels"):
        app.pose_from_photo(big, SOURCE)
    for steps in (6, 0, 2.5, float("nan")):
        with pytest.raises(ValueError, match=r"^Steps must be a whole number from 1 to 5"):
            app.generation_request(SOURCE, PARSING, "atr", pose, steps, 2.0, 0, "DDIM", 0.3, 0.6, 2, True)
    with pytest.raises(ValueError, match=r"^Seed must be a whole number"):
        app.generation_request(SOURCE, PARSING, "atr", pose, 2, 2.0, -1, "DDIM", 0.3, 0.6, 2, True)
    with pytest.raises(ValueError, match=r"^Pick a scheduler among DDIM"):
        app.generation_request(SOURCE, PARSING, "atr", pose, 2, 2.0, 0, "Heun", 0.3, 0.6, 2, True)
    with pytest.raises(ValueError, match=r"Need hpfa_sigma > 0.*got -1.0"):  # before the generation starts
        app.generation_request(SOURCE, PARSING, "atr", pose, 2, 2.0, 0, "DDIM", -1, 0.6, 2, True)
    with pytest.raises(ValueError, match=r"`max_image_side` must be a positive int, got 0"):
        TruePoseApp(app.pipe, max_image_side=0)
    with pytest.raises(ValueError, match=r"`max_steps` must be a positive int"):
        launch(max_steps=1.5)


def test_python_api_refuses_empty_and_mistyped_input_by_name(tmp_path):
    from truepose.animation import write_animation

    with pytest.raises(
        TypeError, match=r"^`pretrained_model_name_or_path` must be a checkpoint folder or Hub id, got int"
    ):
        TruePosePipeline.from_pretrained(42)
    with pytest.raises(ValueError, match=r"^`frames` is empty"):
        write_animation([], tmp_path / "a.gif")
    animation = TruePoseAnimationPipeline(**tiny_pipeline(seed=0).components)
    with pytest.raises(ValueError, match=r"^`poses` holds no pose"):
        animation(SOURCE, np.zeros((0, 18, 3)), source_parsing=PARSING, num_inference_steps=1)
    with pytest.raises(ValueError, match=r"^`frames_per_batch` must be a positive int, got True"):
        animation(SOURCE, np.stack([TINY_KEYPOINTS] * 2), source_parsing=PARSING, frames_per_batch=True)
