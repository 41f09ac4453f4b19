"""Saves that cannot half-happen, inputs of every bit depth, numerical failures detected, latents checked."""

import importlib
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import PIL.Image
import pytest
import torch

import truepose.checkpoint as checkpoint_module
from truepose import TruePosePipeline
from truepose.conditioning import to_pil_image, to_pil_images
from truepose.data.common import load_image, resize_image
from truepose.evaluation import metrics
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

SOURCE, PARSING = tiny_person(0)
WEIGHTED = ("vae", "source_unet", "target_unet", "pose_encoder", "image_encoder")


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def other():
    return tiny_pipeline(seed=1)


def fingerprint(pipe) -> tuple[float, ...]:
    """One number per weighted component: tells two tiny pipelines (and a mix of them) apart."""
    return tuple(float(next(getattr(pipe, name).parameters()).detach().double().sum()) for name in WEIGHTED)


def call(pipe, **kwargs):
    arguments = {"source_image": SOURCE, "target_pose": TINY_KEYPOINTS, "source_parsing": PARSING}
    arguments.update(num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0))
    arguments.update(kwargs)
    return pipe(**arguments).images


def user_files(folder):
    """What a training run keeps in its --output_dir beside the final model."""
    os.makedirs(folder / "checkpoint-10", exist_ok=True)
    (folder / "checkpoint-10" / "optimizer.bin").write_bytes(b"state")
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "logs" / "events.out").write_text("log")
    (folder / "notes.txt").write_text("keep me")


def assert_user_files_kept(folder):
    assert (folder / "checkpoint-10" / "optimizer.bin").read_bytes() == b"state"
    assert (folder / "logs" / "events.out").read_text() == "log"
    assert (folder / "notes.txt").read_text() == "keep me"


def siblings(folder):
    return sorted(name for name in os.listdir(folder.parent) if name != folder.name)


# ----------------------------------------------------------------------------------------------------------------
# All-or-nothing save_pretrained
# ----------------------------------------------------------------------------------------------------------------

# Forks (once the models are built) a child that saves the two pipelines in turn over one folder until it is killed.
SAVER = textwrap.dedent(
    """
    import os, sys
    import torch
    from truepose.testing import tiny_pipeline

    torch.set_num_threads(1)
    folder = sys.argv[1]
    pipes = [tiny_pipeline(seed=0), tiny_pipeline(seed=1)]
    pipes[0].save_pretrained(folder)
    print("ready", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(1, 10**6):
                    pipes[i % 2].save_pretrained(folder)
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("dead", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the saver forks")
def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_model(tmp_path, pipe, other):
    folder = tmp_path / "model"
    expected = [fingerprint(pipe), fingerprint(other)]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=environment,
    )  # fmt: skip
    try:
        assert saver.stdout.readline() == "ready\n"
        user_files(folder)
        rng = random.Random(0)
        loaded_models, cut_short = [], 0
        for _ in range(15):
            saver.stdin.write("save\n")
            saver.stdin.flush()
            pid = int(saver.stdout.readline())
            time.sleep(rng.uniform(0.02, 0.5))
            os.kill(pid, signal.SIGKILL)
            assert saver.stdout.readline() == "dead\n"
            cut_short += any(".tmp-" in name for name in siblings(folder))
            loaded = TruePosePipeline.from_pretrained(folder)
            loaded_models.append(expected.index(fingerprint(loaded)))  # a mix of the two is in neither
            assert_user_files_kept(folder)
    finally:
        saver.stdin.close()
        saver.wait(timeout=60)
        saver.stdout.close()
    assert set(loaded_models) == {0, 1} and cut_short >= 5, (loaded_models, cut_short)
    other.save_pretrained(folder)  # the next save clears what the killed ones left
    assert siblings(folder) == [] and fingerprint(TruePosePipeline.from_pretrained(folder)) == expected[1]
    assert_user_files_kept(folder)


def test_saving_over_a_model_keeps_the_other_entries_of_the_folder(tmp_path, pipe, other):
    folder = tmp_path / "output"
    pipe.save_pretrained(folder)
    user_files(folder)
    os.makedirs(folder / "parser")  # a component of the old checkpoint only: not kept
    index = (folder / "model_index.json").read_text().replace('"scheduler":', '"parser": ["x", "Y"], "scheduler":')
    (folder / "model_index.json").write_text(index)
    other.save_pretrained(folder)
    assert_user_files_kept(folder)
    assert not (folder / "parser").exists() and siblings(folder) == []
    assert fingerprint(TruePosePipeline.from_pretrained(folder)) == fingerprint(other)


def test_the_two_rename_swap_and_a_kill_between_its_renames(tmp_path, pipe, other, monkeypatch):
    """Where one-step exchange is missing (not Linux): old aside, new in. A kill between the two renames leaves the
    folder missing and the old model beside it: loading names it, the next save puts it back first."""
    saving = importlib.import_module("truepose._saving")
    monkeypatch.setattr(saving, "_exchange", lambda first, second: False)
    folder = tmp_path / "model"
    pipe.save_pretrained(folder)
    user_files(folder)
    other.save_pretrained(folder)
    assert fingerprint(TruePosePipeline.from_pretrained(folder)) == fingerprint(other) and siblings(folder) == []
    assert_user_files_kept(folder)

    os.rename(folder, tmp_path / ".model.old-0123abcd")  # the state a kill between the two renames leaves
    message = (
        f"No TruePose checkpoint folder at {str(folder)!r}: a save into it was interrupted, and the previous "
        f"checkpoint is at {str(tmp_path / '.model.old-0123abcd')!r}. Rename that folder back to 'model' (the next "
        "`save_pretrained` into this path does so itself)."
    )
    with pytest.raises(OSError, match=f"^{re.escape(message)}$"):
        TruePosePipeline.from_pretrained(folder)
    pipe.save_pretrained(folder)
    assert fingerprint(TruePosePipeline.from_pretrained(folder)) == fingerprint(pipe) and siblings(folder) == []
    assert_user_files_kept(folder)  # they were in the old folder: put back, then carried over


def test_leftovers_of_killed_saves_are_removed_but_not_a_running_save(tmp_path, pipe):
    fcntl = pytest.importorskip("fcntl")
    folder = tmp_path / "model"
    dead, running = tmp_path / ".model.tmp-dead0000", tmp_path / ".model.tmp-11110000"
    (dead / "vae").mkdir(parents=True)
    running.mkdir()
    descriptor = os.open(running, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # as a save in another process holds it
    try:
        pipe.save_pretrained(folder)
    finally:
        os.close(descriptor)
    assert siblings(folder) == [running.name]
    with pytest.raises(OSError, match="is the temporary folder of a `save_pretrained` that is running or was"):
        TruePosePipeline.from_pretrained(running)


def test_a_save_that_fails_leaves_the_old_model_and_no_temporary_folder(tmp_path, pipe, other, monkeypatch):
    folder = tmp_path / "model"
    pipe.save_pretrained(folder)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(other.target_unet), "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        other.save_pretrained(folder)
    assert siblings(folder) == [] and fingerprint(TruePosePipeline.from_pretrained(folder)) == fingerprint(pipe)


def test_saving_into_the_current_folder_keeps_the_process_in_it(tmp_path, pipe, monkeypatch):
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path / "model")
    pipe.save_pretrained(".")
    pipe.save_pretrained(".")
    assert os.path.samefile(os.getcwd(), tmp_path / "model") and os.path.isfile("model_index.json")


def test_where_no_sibling_can_be_written_the_save_is_in_place_and_says_so(tmp_path, pipe, other, monkeypatch):
    folder = tmp_path / "model"
    pipe.save_pretrained(folder)
    saving = importlib.import_module("truepose._saving")
    monkeypatch.setattr(saving.os.path, "ismount", lambda path: path == str(folder))
    with pytest.warns(UserWarning, match=r"Saving into .* in place \(a mount point cannot be renamed\)"):
        other.save_pretrained(folder)
    assert fingerprint(TruePosePipeline.from_pretrained(folder)) == fingerprint(other) and siblings(folder) == []


def test_push_to_hub_creates_the_repo_first_and_uploads_the_swapped_in_folder(tmp_path, pipe, monkeypatch):
    calls = []

    class Card:
        def save(self, path):
            calls.append(("card", path))

    monkeypatch.setattr(checkpoint_module, "create_repo", lambda repo_id, **kwargs: calls.append(("create", repo_id)))
    with pytest.raises(AttributeError):  # create_repo's result has a repo_id; this stand-in returns None
        pipe.save_pretrained(tmp_path / "model", push_to_hub=True, token="t")
    assert calls == [("create", "model")] and not (tmp_path / "model").exists()  # nothing written before the repo

    class Repo:
        repo_id = "user/model"

    monkeypatch.setattr(checkpoint_module, "create_repo", lambda repo_id, **kwargs: Repo())
    monkeypatch.setattr(checkpoint_module, "load_or_create_model_card", lambda *args, **kwargs: Card())
    monkeypatch.setattr(checkpoint_module, "populate_model_card", lambda card: card)
    monkeypatch.setattr(
        TruePosePipeline, "_upload_folder", lambda self, path, repo_id, **kwargs: calls.append(("upload", path))
    )
    pipe.save_pretrained(tmp_path / "model", push_to_hub=True, repo_id="user/model", commit_message="m")
    folder = str(tmp_path / "model")
    assert calls[1:] == [("card", os.path.join(folder, "README.md")), ("upload", folder)]


# ----------------------------------------------------------------------------------------------------------------
# Bit depths
# ----------------------------------------------------------------------------------------------------------------

PIXELS = np.asarray(SOURCE)
GRAY = PIXELS[..., 1]


def wide_images() -> dict[str, PIL.Image.Image]:
    """The green channel of SOURCE in every mode of more than 8 bits that Pillow opens."""
    wide = GRAY.astype(np.uint16) * 257  # 8-bit k -> 16-bit 257 k: the same brightness
    return {
        "I;16": PIL.Image.fromarray(wide),
        "I;16B": PIL.Image.frombytes("I;16B", wide.shape[::-1], wide.astype(">u2").tobytes()),
        "I": PIL.Image.fromarray(wide.astype(np.int32)),
        "F": PIL.Image.fromarray(GRAY.astype(np.float32) / 255),
    }


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_images_of_more_than_8_bits_become_the_same_8_bit_image(mode, tmp_path):
    image = wide_images()[mode]
    assert image.mode == mode
    expected = PIL.Image.fromarray(GRAY).convert("RGB")
    assert np.array_equal(np.asarray(to_pil_image(image, "source_image")), np.asarray(expected))
    assert np.array_equal(np.asarray(resize_image(image, (64, 64))), np.asarray(expected))
    if mode != "I;16B":  # Pillow writes no big-endian 16-bit files
        path = tmp_path / ("image.tiff" if mode in ("I", "F") else "image.png")
        image.save(path)
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(expected))
        assert np.array_equal(metrics.load_image(path, (64, 64)), np.asarray(expected))


def test_16_bit_arrays_and_tensors_are_scaled_like_16_bit_images():
    wide = PIXELS.astype(np.uint16) * 257
    assert np.array_equal(np.asarray(to_pil_image(wide, "x")), PIXELS)
    assert np.array_equal(np.asarray(to_pil_images(torch.from_numpy(wide).permute(2, 0, 1), "x")[0]), PIXELS)
    assert np.array_equal(metrics.resize_to_uint8(wide, (64, 64)), PIXELS)
    # round(v * 255 / 65535) for every 16-bit value
    values = np.arange(65536, dtype=np.uint16)
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.array_equal(np.asarray(to_pil_image(values.reshape(256, 256), "x"))[..., 0], expected.reshape(256, 256))


def test_the_pipeline_gives_the_same_image_for_a_16_bit_source(pipe):
    np.testing.assert_array_equal(call(pipe, source_image=PIXELS.astype(np.uint16) * 257), call(pipe))
    gray_16 = wide_images()["I;16"]
    np.testing.assert_array_equal(call(pipe, source_image=gray_16), call(pipe, source_image=PIL.Image.fromarray(GRAY)))


def test_metrics_score_16_bit_images_like_their_8_bit_versions(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-40, 40, real.shape), 0, 255).astype(np.uint8)
    scores = {}
    for depth, convert in (("8", lambda a: a), ("16", lambda a: a.astype(np.uint16) * 257)):
        for name, values in (("real", real), ("fake", fake), ("same", real)):
            (tmp_path / depth / name).mkdir(parents=True)
            PIL.Image.fromarray(convert(values)).save(tmp_path / depth / name / "a.png")
        load = lambda name: metrics.load_image_folder(tmp_path / depth / name, (64, 64))[0]  # noqa: B023, E731
        scores[depth] = metrics.ssim(load("real"), load("fake")), metrics.ssim(load("real"), load("same"))
    with PIL.Image.open(tmp_path / "16" / "real" / "a.png") as image:
        assert image.mode == "I;16"
    assert scores["16"] == scores["8"] and scores["16"][1] == pytest.approx(1.0)


def test_out_of_range_wide_images_are_refused_naming_the_image(tmp_path):
    bright = PIL.Image.fromarray(GRAY.astype(np.float32))  # 0..255 floats
    with pytest.raises(ValueError, match=r"^`source_image` values of a float \('F'\) image must lie in \[0, 1\], got"):
        to_pil_image(bright, "source_image")
    huge = PIL.Image.fromarray(np.full((4, 4), 70000, np.int32))
    with pytest.raises(ValueError, match=r"is a 32-bit integer \('I'\) image with values in \[70000, 70000\]"):
        to_pil_images(huge, "source_image")
    path = tmp_path / "bright.tiff"
    bright.save(path)
    with pytest.raises(ValueError, match=re.escape(f"`{path}` values of a float ('F') image must lie in [0, 1]")):
        metrics.load_image(path, (64, 64))
    with pytest.raises(ValueError, match=re.escape(f"`{path}` values")):
        load_image(path)


# ----------------------------------------------------------------------------------------------------------------
# Numerical failures during denoising
# ----------------------------------------------------------------------------------------------------------------


def test_an_overflowing_guidance_scale_or_eta_is_named(pipe):
    with pytest.raises(
        ValueError,
        match=r"^The latents became non-finite \(NaN or inf\) at step index \d \(of 2 steps\), after the scheduler "
        r"step: `guidance_scale` 1e\+38 too large, or the model overflowed in torch.float32\.$",
    ):
        call(pipe, guidance_scale=1e38)
    with pytest.raises(ValueError, match=r"after the scheduler step: `guidance_scale` 2 or `eta` 100 too large"):
        call(pipe, eta=100.0)


def test_a_callback_returning_nan_latents_is_named(pipe):
    def poison(pipe, step, timestep, tensors):
        return {"latents": tensors["latents"] * math.nan} if step == 1 else {}

    message = "`callback_on_step_end` returned `latents` holding non-finite values (NaN or inf) at step index 1 (of 2 "
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        call(pipe, callback_on_step_end=poison)
    with pytest.raises(TypeError, match="`callback_on_step_end` returned `latents` of type ndarray at step index 0"):
        call(pipe, callback_on_step_end=lambda pipe, step, t, tensors: {"latents": np.zeros(3)})


def test_a_vae_that_decodes_nan_is_named(pipe, monkeypatch):
    monkeypatch.setattr(
        pipe.vae, "decode", lambda latents, return_dict: (latents[:, :3].repeat(1, 1, 2, 2) * math.inf,)
    )
    with pytest.raises(ValueError, match=r"^The VAE \(AutoencoderKL, torch.float32\) decoded non-finite pixels"):
        call(pipe)


# ----------------------------------------------------------------------------------------------------------------
# Latents and sizes
# ----------------------------------------------------------------------------------------------------------------

LATENT_CASES = {
    "integer": (torch.zeros(1, 4, 32, 32, dtype=torch.int64), TypeError, "got torch.int64."),
    "bool": (torch.zeros(1, 4, 32, 32, dtype=torch.bool), TypeError, "got torch.bool."),
    "complex": (torch.zeros(1, 4, 32, 32, dtype=torch.complex64), TypeError, "got torch.complex64."),
    "meta": (
        torch.zeros(1, 4, 32, 32, device="meta"),
        ValueError,
        "`latents` is on the meta device and holds no values; pass noise on the CPU or the GPU.",
    ),
}


@pytest.mark.parametrize("latents, error, message", LATENT_CASES.values(), ids=LATENT_CASES.keys())
def test_latents_must_be_real_floating_point_tensors_with_values(pipe, latents, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call(pipe, latents=latents)
    if error is TypeError:
        with pytest.raises(error, match=r"^`latents` must be a real floating-point tensor \(e.g. torch.float32"):
            call(pipe, latents=latents)


def test_float16_and_float64_latents_are_accepted(pipe):
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    expected = call(pipe, latents=noise)
    np.testing.assert_allclose(call(pipe, latents=noise.double()), expected, atol=1e-6)
    assert np.isfinite(call(pipe, latents=noise.half())).all()


def test_very_large_batches_and_sizes_warn_before_any_work(pipe, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the warning")

    monkeypatch.setattr(pipe, "encode_source", no_work)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(AssertionError, match="work started"):
            call(pipe, num_images_per_prompt=65)
        with pytest.raises(AssertionError, match="work started"):
            call(pipe, height=4098, width=4098)
        with pytest.raises(AssertionError, match="work started"):
            call(pipe, num_images_per_prompt=64, height=4096, width=4096)  # at the limits: no warning
    messages = [str(w.message) for w in caught if "aspect ratio" not in str(w.message)]
    assert messages == [
        "`num_images_per_prompt` 65 makes 65 images in one batch (twice as many UNet rows with guidance): memory "
        "grows with it. Above 64, generate in several calls.",
        "`height` x `width` 4098x4098 is larger than 4096 pixels per side: latents of 2049x2049, 4198401 tokens in "
        "each first-level attention (twice that with the source's); it may not fit in memory, and the model was "
        "trained far smaller.",
    ]
    assert all(w.filename == __file__ for w in caught)


def test_animation_latents_are_checked_the_same_way_before_any_work(pipe, monkeypatch):
    from truepose.animation import TruePoseAnimationPipeline

    animation = TruePoseAnimationPipeline(**pipe.components)
    monkeypatch.setattr(animation, "encode_source", lambda *args, **kwargs: pytest.fail("work started"))
    with pytest.raises(TypeError, match=r"^`latents` must be a real floating-point tensor .* got torch.int32\.$"):
        animation(
            SOURCE, [TINY_KEYPOINTS] * 2, source_parsing=PARSING, num_inference_steps=1,
            latents=torch.zeros(1, 4, 32, 32, dtype=torch.int32),
        )  # fmt: skip
