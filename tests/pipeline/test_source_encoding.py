"""The source's encoding, once per call: SourceNet, CLIP and the pose encoder run once, the per-layer source
keys/values are projected once (asking a model-offload hook first), each parsing map is parsed once (image and
animation pipelines), region embeddings and parsing masks follow the label map, target poses from photos (detector,
retargeting) and `prepare_pose`."""

import sys

import numpy as np
import PIL.Image
import pytest
import torch
from pipeline_calls import STEPS, UNetHook, generate_latents, run

import truepose.conditioning.parsing as parsing_module
from truepose import TruePoseAnimationPipeline
from truepose.conditioning import retarget_keypoints
from truepose.conditioning.pose import draw_skeleton, rescale_keypoints
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline


@pytest.fixture
def counts(monkeypatch):
    """How often `person_mask` and `as_parsing_batch` run, wherever truepose imported them."""
    counts = {"person_mask": 0, "as_parsing_batch": 0}
    for name, function in (
        ("person_mask", parsing_module.person_mask),
        ("as_parsing_batch", parsing_module.as_parsing_batch),
    ):

        def counted(*args, _name=name, _function=function, **kwargs):
            counts[_name] += 1
            return _function(*args, **kwargs)

        for module in [m for key, m in sys.modules.items() if key.startswith("truepose")]:
            if getattr(module, name, None) is function:
                monkeypatch.setattr(module, name, counted)
    return counts


def test_source_net_clip_and_pose_encoder_run_once_per_call(pipe, source, keypoints):
    calls = {"source_unet": 0, "image_encoder": 0, "pose_encoder": 0, "target_unet": 0}
    handles = [
        getattr(pipe, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name in calls
    ]
    try:
        run(pipe, source, keypoints)
    finally:
        for handle in handles:
            handle.remove()
    # CLIP runs twice: once on the source, once on all its region crops together
    assert calls == {"source_unet": 1, "image_encoder": 2, "pose_encoder": 1, "target_unet": STEPS}


def test_source_keys_values_cached_per_call_equal_uncached(pipe, source, keypoints, monkeypatch):
    """The pipeline projects each layer's source keys/values once per call; projecting at every step (as training
    does) gives the same images to fp32 tolerance."""
    projected = []
    project_source = pipe.target_unet.project_source
    monkeypatch.setattr(pipe.target_unet, "project_source", lambda refs: projected.append(1) or project_source(refs))
    cached = run(pipe, source, keypoints, guidance_scale=2.0)
    assert projected == [1]
    monkeypatch.setattr(pipe.target_unet, "project_source", lambda refs: refs)
    uncached = run(pipe, source, keypoints, guidance_scale=2.0)
    np.testing.assert_allclose(cached, uncached, atol=1e-5, rtol=0)
    assert np.abs(cached - run(pipe, source, keypoints, seed=1)).max() > 1e-2  # the tolerance can fail


def test_model_offload_hook_moves_target_net_before_source_projection(pipe, source, keypoints, monkeypatch):
    """Under `enable_model_cpu_offload` TargetNet reaches the GPU through its accelerate hook, which only a forward
    triggers; the once-per-call source projection is no forward, so the pipeline must ask the hook first."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    events = []

    class RecordingOffloadHook(ModelHook):
        def pre_forward(self, module, *args, **kwargs):
            events.append("move")
            return args, kwargs

    project_source = pipe.target_unet.project_source
    monkeypatch.setattr(
        pipe.target_unet, "project_source", lambda refs: events.append("project") or project_source(refs)
    )
    add_hook_to_module(pipe.target_unet, RecordingOffloadHook())
    try:
        run(pipe, source, keypoints)
    finally:
        remove_hook_from_module(pipe.target_unet)
    assert events[:2] == ["move", "project"]
    assert events.count("move") == 1 + STEPS  # then one per denoising step, as the hook's forward wrapping does


def test_projecting_the_source_first_asks_an_offload_hook_to_move_targetnet(pipe):
    """Under model CPU offload, projecting the source is not a `forward`, so TargetNet's hook is called by hand."""
    moved = []
    pipe.target_unet._hf_hook = type("Hook", (), {"pre_forward": lambda self, module: moved.append(module)})()
    pipe.target_unet.project_source = lambda references: moved.append("projected") or references
    references = {"a layer": "its reference"}
    assert pipe.project_source(references) is references
    assert moved == [pipe.target_unet, "projected"]  # moved first, then projected


def test_training_posterior_samples_follow_their_generators(pipe, source):
    """``encode_source_latents`` with generators samples the posterior from them (reproducible training steps)."""
    draw = lambda seed: pipe.encode_source_latents([source[0]], 64, 64, "cpu", [torch.Generator().manual_seed(seed)])  # noqa: E731
    with torch.no_grad():
        first, again, other = draw(0), draw(0), draw(1)
        mode = pipe.encode_source_latents([source[0]], 64, 64, "cpu")
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other) and not torch.allclose(first, mode)


def test_a_call_parses_each_source_once(counts):
    pipe = tiny_pipeline()
    source, parsing = tiny_person(0)
    pipe([source, source], TINY_KEYPOINTS, source_parsing=[parsing, parsing], num_inference_steps=1)
    assert counts == {"person_mask": 2, "as_parsing_batch": 1}


def test_an_animation_parses_its_source_once(counts):
    animation = TruePoseAnimationPipeline(**tiny_pipeline().components)
    animation.set_progress_bar_config(disable=True)
    source, parsing = tiny_person(0)
    animation(
        source, np.stack([TINY_KEYPOINTS] * 3), source_parsing=parsing, num_inference_steps=1, frames_per_batch=2
    )
    assert counts == {"person_mask": 1, "as_parsing_batch": 1}


def test_pipeline_parser_computes_the_parsing(source, keypoints):
    pipe = tiny_pipeline(seed=0, with_parser=True)
    image = pipe(source[0], keypoints, num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3)


def test_parsing_masks_follow_the_given_label_map(pipe, source):
    """A LIP map: id 18 is a shoe in LIP and no label in ATR, 13 the face in LIP and a leg in ATR; the masks must come
    from the table given."""
    from truepose.conditioning import parsing as parsing_utils

    parsing = np.zeros((64, 64), np.int64)  # the source image's size
    parsing[8:56, 16:32], parsing[52:60, 32:48], parsing[4:12, 20:44] = 5, 18, 13  # upper clothes, left shoe, face
    lip = parsing_utils.get_label_map("lip")
    assert not np.array_equal(parsing_utils.person_mask(parsing, "lip"), parsing_utils.person_mask(parsing, "atr"))
    person, regions, embeds = pipe.encode_parsing([source[0]], [parsing], lip, torch.device("cpu"))
    np.testing.assert_array_equal(person[0, 0].numpy(), parsing_utils.person_mask(parsing, "lip"))
    names, expected = parsing_utils.region_masks(parsing, "lip")
    assert regions.shape == (1, len(names), 64, 64)  # padded to the largest count only
    np.testing.assert_array_equal(regions[0].numpy(), expected)
    assert embeds.shape[:2] == (1, len(names)) and (embeds != 0).any(dim=2).all()
    one_region = np.where(parsing == 5, 5, 0)
    assert pipe.encode_parsing([source[0]], [one_region], lip, torch.device("cpu"))[1].shape == (1, 1, 64, 64)


def test_region_embeddings_are_one_per_parsing_region(pipe, source, keypoints):
    hook = UNetHook(pipe.target_unet, (torch.zeros(1, 4, 32, 32), torch.zeros(1, 4, 32, 32)))
    generate_latents(pipe, source, keypoints)
    for reference in hook.inputs[0][2].values():
        num_regions = reference.region_indicators.shape[-1]
        assert reference.region_embeds.shape[:2] == (2, num_regions) == reference.region_valid.shape


def test_a_photo_pose_is_read_by_the_detector(pipe, source, keypoints):
    """``target_pose_is_photo=True``: the detector's keypoints are drawn, exactly as if they had been passed."""
    photo = PIL.Image.new("RGB", (64, 64), (200, 30, 30))
    seen = []

    def detector(image):
        seen.append(image.size)
        return keypoints

    from_photo, _ = generate_latents(pipe, source, photo, target_pose_is_photo=True, pose_detector=detector,
                             retarget_pose=False)  # fmt: skip
    from_keypoints, _ = generate_latents(pipe, source, keypoints)
    assert seen == [(64, 64)]
    torch.testing.assert_close(from_photo, from_keypoints)


def test_a_photo_pose_is_retargeted_onto_the_source_persons_proportions(pipe, source, keypoints):
    """``retarget_pose=True``: the detector reads the target photo and the source image; the drawn pose is
    `retarget_keypoints(target, source)`, exactly as if those keypoints had been passed."""
    photo = PIL.Image.new("RGB", (64, 64), (200, 30, 30))
    present = keypoints[:, 2] > 0
    target_keypoints = keypoints.copy()
    target_keypoints[present, 1] = 20 + 0.6 * (keypoints[present, 1] - 20)  # a shorter person
    source_keypoints = keypoints
    seen = []

    def detector(image):
        is_target = image.getpixel((0, 0)) == (200, 30, 30)
        seen.append("target" if is_target else "source")
        return target_keypoints if is_target else source_keypoints

    retargeted = retarget_keypoints(target_keypoints, source_keypoints)
    assert not np.allclose(retargeted[present, :2], target_keypoints[present, :2])  # retargeting changes the pose
    from_photo, _ = generate_latents(pipe, source, photo, target_pose_is_photo=True, pose_detector=detector,
                             retarget_pose=True)  # fmt: skip
    from_keypoints, _ = generate_latents(pipe, source, retargeted)
    assert sorted(seen) == ["source", "target"]
    torch.testing.assert_close(from_photo, from_keypoints)


def test_prepare_pose_gives_skeleton_pixels():
    """In [0, 1], at any size the VAE factor divides (36: a multiple of the tiny VAE's 2, not of SD's 8)."""
    pipe = tiny_pipeline(seed=0)  # built here: the pose image processor is made in __init__
    smaller = TINY_KEYPOINTS.copy()
    smaller[:, :2] = np.where(smaller[:, 2:] > 0, smaller[:, :2] * 0.5, -1)
    poses = [rescale_keypoints(TINY_KEYPOINTS, (64, 64), (64, 36)), smaller]
    pixels = pipe.prepare_pose(poses, 64, 36, torch.device("cpu"), torch.float32)
    assert pixels.shape == (2, 3, 64, 36) and pixels.dtype == torch.float32
    for row, keypoints in zip(pixels, poses):
        expected = np.asarray(draw_skeleton(keypoints, 64, 36), dtype=np.float32) / 255
        np.testing.assert_allclose(row.permute(1, 2, 0).numpy(), expected, atol=1e-6)
