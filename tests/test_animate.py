import json
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import PIL.Image
import pytest
import torch

from truepose import TruePoseAnimationPipeline, write_animation
from truepose.animation import interpolate_keypoints, load_pose_sequence
from truepose.cli import main
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

STEPS = 2


def moved(dy: float) -> np.ndarray:
    keypoints = TINY_KEYPOINTS.copy()
    keypoints[2:8, 1] += dy  # arms up/down
    return keypoints


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0, randomize_new_layers=True)


@pytest.fixture(scope="module")
def animation(pipe):
    return TruePoseAnimationPipeline(**pipe.components)


def test_frames_equal_single_image_calls_with_the_same_seed(pipe, animation, source):
    """Shared noise: frame i is the single-image generation of pose i with the same seed (batched, source once)."""
    image, parsing = source
    poses = np.stack([moved(0), moved(6), moved(-6)])
    frames = animation(
        image, poses, source_parsing=parsing, num_inference_steps=STEPS, frames_per_batch=2,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).frames  # fmt: skip
    assert frames.shape == (3, 64, 64, 3)
    for pose, frame in zip(poses, frames):
        single = pipe(
            image, pose, source_parsing=parsing, num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0), output_type="np",
        ).images[0]  # fmt: skip
        np.testing.assert_allclose(frame, single, atol=1e-5, rtol=0)
    assert np.abs(frames[1] - frames[2]).max() > 1e-2  # the poses matter


def test_source_is_encoded_once_for_the_whole_sequence(animation, source):
    image, parsing = source
    calls = {"source_unet": 0, "image_encoder": 0, "target_unet": 0, "project_source": 0}
    handles = [
        getattr(animation, name).register_forward_pre_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)
        )
        for name in ("source_unet", "image_encoder", "target_unet")
    ]
    project_source = animation.target_unet.project_source
    animation.target_unet.project_source = lambda refs: calls.__setitem__("project_source", 1) or project_source(refs)
    try:
        animation(
            image, np.stack([moved(0)] * 5), source_parsing=parsing, num_inference_steps=STEPS, frames_per_batch=2
        )
    finally:
        del animation.target_unet.project_source
        for handle in handles:
            handle.remove()
    # CLIP: the source once and its parsing regions once; TargetNet: 3 batches x STEPS
    assert calls == {"source_unet": 1, "image_encoder": 2, "target_unet": 3 * STEPS, "project_source": 1}


def test_per_frame_generators_give_per_frame_noise(animation, source):
    image, parsing = source
    poses = np.stack([moved(0)] * 2)

    def run(generator):
        kwargs = {"source_parsing": parsing, "num_inference_steps": STEPS, "output_type": "np"}
        return animation(image, poses, generator=generator, **kwargs).frames

    shared = run(torch.Generator().manual_seed(0))
    np.testing.assert_allclose(shared[0], shared[1], atol=1e-6)
    per_frame = run([torch.Generator().manual_seed(i) for i in range(2)])
    np.testing.assert_allclose(per_frame[0], shared[0], atol=1e-5)
    assert np.abs(per_frame[1] - per_frame[0]).max() > 1e-2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"poses": np.zeros((2, 17, 2))}, ValueError, r"shape \(2, 17, 2\)"),
        ({"poses": []}, ValueError, r"^`poses` is an empty list; pass at least one pose\.$"),  # its own name
        ({"poses": [moved(0), np.zeros((17, 2))]}, ValueError, r"^`poses\[1\]` must have shape \(18, 2\)"),
        ({"poses": [moved(0), "pose.png"]}, TypeError, r"^`poses\[1\]` must be keypoints"),
        ({"frames_per_batch": 0}, ValueError, "frames_per_batch"),
        ({"generator": [torch.Generator()]}, ValueError, "1 generators for 2"),
        ({"output_type": "latent"}, ValueError, "output_type"),
        ({"latents": torch.zeros(3, 4, 32, 32)}, ValueError, "latents"),
    ],
)
def test_bad_input_gets_a_clear_error(animation, source, kwargs, error, match):
    image, parsing = source
    arguments = {"poses": np.stack([moved(0)] * 2), "source_parsing": parsing, "num_inference_steps": 1, **kwargs}
    with pytest.raises(error, match=match):
        animation(image, **arguments)
    with pytest.raises(ValueError, match="one image"):
        animation([image, image], moved(0), source_parsing=[parsing, parsing])


def test_interpolation_is_linear_and_keeps_missing_joints_missing():
    start, stop = moved(0), moved(8)
    stop[0] = [-1, -1, 0]  # nose missing at the end
    frames = interpolate_keypoints(np.stack([start, stop]), 3)
    assert frames.shape == (5, 18, 3)
    np.testing.assert_allclose(frames[0], start)
    np.testing.assert_allclose(frames[-1], stop)
    np.testing.assert_allclose(frames[2, 2:8, 1], start[2:8, 1] + 4)  # halfway
    np.testing.assert_allclose(frames[1, 2:8, 1], start[2:8, 1] + 2)
    assert (frames[1:, 0] == [-1, -1, 0]).all() and (frames[1:, 16:] == [-1, -1, 0]).all()  # nose, ears
    with pytest.raises(ValueError, match="frames_between"):
        interpolate_keypoints(np.stack([start, stop]), -1)


def test_pose_sequences_from_npy_openpose_folder_and_video(tmp_path):
    poses = np.stack([moved(0), moved(4)])
    np.save(tmp_path / "poses.npy", poses[..., :2])
    np.testing.assert_allclose(load_pose_sequence(tmp_path / "poses.npy"), poses)

    folder = tmp_path / "openpose"
    folder.mkdir()
    for i in (1, 0):  # written out of order: read in file-name order
        people = [{"pose_keypoints_2d": poses[i].reshape(-1).tolist()}]
        (folder / f"frame_{i:03d}_keypoints.json").write_text(json.dumps({"people": people}))
    np.testing.assert_allclose(load_pose_sequence(folder), poses)

    video = write_animation(np.zeros((3, 32, 48, 3), np.uint8), tmp_path / "clip.mp4", fps=4)
    seen = []
    detector = lambda image: seen.append(image.size) or poses[len(seen) % 2]  # noqa: E731
    assert load_pose_sequence(video, detector, frame_size=(64, 64)).shape == (3, 18, 3)
    assert seen == [(64, 64)] * 3  # frames resized to the output frame before detection
    with pytest.raises(ValueError, match="pose_detector"):
        load_pose_sequence(video)
    with pytest.raises(ValueError, match="OpenPose"):
        load_pose_sequence(tmp_path)
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="18"):
        load_pose_sequence(tmp_path / "bad.npy")


def test_write_gif_mp4_and_png_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = [PIL.Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)) for _ in range(4)]
    gif = iio.imread(write_animation(frames, tmp_path / "a.gif", fps=10), index=None)
    assert gif.shape[:3] == (4, 32, 48) and iio.immeta(tmp_path / "a.gif")["duration"] == 100
    mp4 = iio.imread(write_animation(frames, tmp_path / "a.mp4"), plugin="pyav")
    assert mp4.shape == (4, 32, 48, 3)
    write_animation(frames, tmp_path / "frames")
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "frames" / "frame_0003.png")), frames[3])
    with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
        write_animation(frames, tmp_path / "a.avi")


def test_animate_command_writes_gif_and_mp4(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    image, parsing = tiny_person()
    image.save(tmp_path / "source.png")
    PIL.Image.fromarray(parsing.astype(np.uint8)).save(tmp_path / "parsing.png")
    np.save(tmp_path / "keyframes.npy", np.stack([moved(0), moved(6)]))
    common = ["animate", "--model", str(tmp_path / "model"), "--source", str(tmp_path / "source.png"), "--parsing"]
    common += [str(tmp_path / "parsing.png"), "--poses", str(tmp_path / "keyframes.npy"), "--steps", "1"]
    assert main([*common, "--interpolate", "2", "--output", str(tmp_path / "out.gif")]) == 0
    assert iio.imread(tmp_path / "out.gif", index=None).shape[:3] == (4, 64, 64)
    assert main([*common, "--seed-per-frame", "--output", str(tmp_path / "out.mp4")]) == 0
    assert iio.imread(tmp_path / "out.mp4", plugin="pyav").shape == (2, 64, 64, 3)


def test_animate_command_on_the_shipped_model(tmp_path):
    from truepose.demo import DEMO_RESOLUTION, POSE_GALLERY

    args = ["animate", "--example-person", "0", "--poses", str(POSE_GALLERY), "--steps", "2", "--scale", "2"]
    assert main([*args, "--output", str(tmp_path / "walk.mp4")]) == 0  # docs/animate.md shows its GIF
    assert iio.imread(tmp_path / "walk.mp4", plugin="pyav").shape == (
        8,
        2 * DEMO_RESOLUTION[0],
        2 * DEMO_RESOLUTION[1],
        3,
    )


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_docs_animate_python_blocks_run(tmp_path, monkeypatch):
    blocks = python_blocks((Path(__file__).parents[1] / "docs" / "animate.md").read_text())
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/animate.md", "exec"), {})
    assert iio.imread(tmp_path / "walk.gif", index=None).shape[0] == 4


def test_animate_command_refuses_bad_arguments_before_any_work(tmp_path, capsys):
    assert main(["animate", "--poses", "x.npy", "--output", str(tmp_path / "o.gif")]) == 2
    assert "exactly one of --source and --example-person" in capsys.readouterr().err
    assert main(["animate", "--source", "nope.png", "--poses", "x.npy", "--output", str(tmp_path / "o.gif")]) == 2
    assert "--source 'nope.png': no such file" in capsys.readouterr().err


def test_animation_noise_is_shared_or_per_frame(pipe):
    from truepose import TruePoseAnimationPipeline

    animation = TruePoseAnimationPipeline(**pipe.components)
    shared = animation.prepare_sequence_noise(
        3, (32, 32), torch.Generator().manual_seed(0), None, "cpu", torch.float32
    )
    assert shared.shape == (3, 4, 32, 32) and torch.equal(shared[0], shared[2])
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    per_frame = animation.prepare_sequence_noise(3, (32, 32), generators, None, "cpu", torch.float32)
    assert torch.equal(per_frame[0], shared[0]) and not torch.equal(per_frame[1], per_frame[0])
    with pytest.raises(ValueError, match=r"^`latents` must have shape \(1 or 3, 4, 32, 32\), got \(2, 4, 32, 32\)\.$"):
        animation.prepare_sequence_noise(3, (32, 32), None, torch.zeros(2, 4, 32, 32), "cpu", torch.float32)
