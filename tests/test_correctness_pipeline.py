"""Classifier-free guidance arithmetic and latent scaling, checked with hooks on the real modules (issue 14)."""

import functools
import re

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from truepose.conditioning import retarget_keypoints
from truepose.testing import tiny_person, tiny_pipeline

STEPS = 2


@pytest.fixture
def pipe():
    return tiny_pipeline(seed=0, randomize_new_layers=True)


class SchedulerSpy:
    """Records every ``scheduler.step`` call's model output, sample and keyword arguments, then runs the real step.

    Each pipeline call steps its own copy of the pipeline's scheduler, so the spy is a subclass of the scheduler's
    class (copies keep it) whose ``step`` has the real one's signature (the pipeline reads it)."""

    def __init__(self, scheduler):
        self.model_outputs, self.samples, self.kwargs, self.schedulers = [], [], [], []
        base = type(scheduler)

        @functools.wraps(base.step)
        def step(scheduler, model_output, timestep, sample, *args, **kwargs):
            self.model_outputs.append(model_output.clone())
            self.samples.append(sample.clone())
            self.kwargs.append(kwargs)
            self.schedulers.append(scheduler)
            return base.step(scheduler, model_output, timestep, sample, *args, **kwargs)

        scheduler.__class__ = type(base.__name__, (base,), {"step": step})


class UNetHook:
    """Replaces TargetNet's output by known halves ``[uncond ; cond]`` and records its inputs."""

    def __init__(self, unet, halves: tuple[torch.Tensor, ...]):
        self.halves = halves
        self.inputs = []
        unet.register_forward_pre_hook(self.record, with_kwargs=True)
        unet.register_forward_hook(self.replace)

    def record(self, module, args, kwargs):
        self.inputs.append((args[0].clone(), kwargs["encoder_hidden_states"].clone(), kwargs["layer_references"]))

    def replace(self, module, args, output):
        return (torch.cat(self.halves).to(output[0].dtype),)


def generate(pipe, source, keypoints, **kwargs):
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    kwargs = {"num_inference_steps": STEPS, "output_type": "latent", "latents": latents, **kwargs}
    return pipe(source[0], keypoints, source_parsing=source[1], **kwargs).images, latents


@pytest.mark.parametrize("guidance_scale", [2.5, 0.0])
def test_guided_step_is_uncond_plus_scale_times_difference(pipe, source, keypoints, guidance_scale):
    g = torch.Generator().manual_seed(0)
    uncond, cond = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 4, 32, 32, generator=g)
    hook = UNetHook(pipe.target_unet, (uncond, cond))
    spy = SchedulerSpy(pipe.scheduler)
    generate(pipe, source, keypoints, guidance_scale=guidance_scale)
    assert len(spy.model_outputs) == STEPS
    for guided in spy.model_outputs:
        torch.testing.assert_close(guided, uncond + guidance_scale * (cond - uncond))
    for sample, embeds, references in hook.inputs:
        assert sample.shape == (2, 4, 32, 32)
        torch.testing.assert_close(sample[0], sample[1])  # the same latents in both halves
        assert (embeds[0] == 0).all() and (embeds[1] != 0).any()  # unconditional row: zero CLIP embedding
        for reference in references.values():
            assert torch.isneginf(reference.log_weight[0]).all() and torch.isfinite(reference.log_weight[1]).all()
            assert reference.num_source_free_rows == 1


def test_guidance_scale_one_runs_the_conditional_branch_alone(pipe, source, keypoints):
    cond = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    hook = UNetHook(pipe.target_unet, (cond,))
    spy = SchedulerSpy(pipe.scheduler)
    generate(pipe, source, keypoints, guidance_scale=1.0)
    for guided in spy.model_outputs:
        torch.testing.assert_close(guided, cond)
    for sample, embeds, references in hook.inputs:
        assert sample.shape == (1, 4, 32, 32) and (embeds != 0).any()
        assert all(torch.isfinite(r.log_weight).all() for r in references.values())


def test_initial_latents_are_scaled_by_init_noise_sigma(pipe, source, keypoints):
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    spy = SchedulerSpy(pipe.scheduler)
    unet_inputs = []
    pipe.target_unet.register_forward_pre_hook(lambda m, args: unet_inputs.append(args[0].clone()))
    _, latents = generate(pipe, source, keypoints, guidance_scale=1.0)
    scheduler = spy.schedulers[0]  # the call's own copy of the pipeline's scheduler
    assert scheduler is not pipe.scheduler and all(s is scheduler for s in spy.schedulers)
    init_noise_sigma = float(scheduler.init_noise_sigma)  # of the timesteps set for this call
    assert init_noise_sigma > 5  # Euler: a wrong or missing scaling shows (DDIM's is 1)
    torch.testing.assert_close(spy.samples[0], latents * init_noise_sigma)
    # Euler's `scale_model_input` divides by sqrt(sigma_0^2 + 1) before the UNet.
    sigma_0 = float(scheduler.sigmas[0])
    expected = latents * init_noise_sigma / (sigma_0**2 + 1) ** 0.5
    torch.testing.assert_close(unet_inputs[0], expected, rtol=1e-4, atol=1e-4)


def test_vae_scaling_factor_applied_on_encode_and_removed_on_decode(pipe, source, keypoints):
    scaling_factor = 0.37
    pipe.vae.register_to_config(scaling_factor=scaling_factor)
    source_inputs, decode_inputs, last_latents = [], [], []
    pipe.source_unet.register_forward_pre_hook(lambda m, args: source_inputs.append(args[0].clone()))
    decode = pipe.vae.decode

    def spy_decode(latents, *args, **kwargs):
        decode_inputs.append(latents.clone())
        return decode(latents, *args, **kwargs)

    pipe.vae.decode = spy_decode

    def keep_latents(pipeline, step, timestep, tensors):
        last_latents[:] = [tensors["latents"].clone()]
        return tensors

    images, _ = generate(pipe, source, keypoints, output_type="pt", callback_on_step_end=keep_latents)
    # Encode: SourceNet reads the posterior mode of the source's [-1, 1] pixels, times the scaling factor.
    pixels = torch.from_numpy(np.asarray(source[0], dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        expected = pipe.vae.encode(pixels).latent_dist.mode() * scaling_factor
    torch.testing.assert_close(source_inputs[0], expected, rtol=1e-4, atol=1e-4)
    # Decode: the VAE gets the final latents divided by the scaling factor; images are (x + 1) / 2 clamped.
    (decoded_latents,) = decode_inputs
    torch.testing.assert_close(decoded_latents, last_latents[0] / scaling_factor)
    with torch.no_grad():
        pixels_out = decode(last_latents[0] / scaling_factor, return_dict=False)[0]
    torch.testing.assert_close(images, ((pixels_out + 1) / 2).clamp(0, 1), rtol=1e-5, atol=1e-5)


# Added for the mutants of a 1-in-4 sample of `benchmarks/mutation.sh pipeline` (docs/testing.md).


def test_denoising_loop_is_the_schedulers_own_loop(pipe, source, keypoints):
    """With TargetNet's output fixed to known halves, the final latents equal the scheduler run by hand."""
    g = torch.Generator().manual_seed(2)
    uncond, cond = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 4, 32, 32, generator=g)
    UNetHook(pipe.target_unet, (uncond, cond))
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    images, latents = generate(pipe, source, keypoints, guidance_scale=3.0)
    scheduler.set_timesteps(STEPS)
    expected = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        expected = scheduler.step(uncond + 3.0 * (cond - uncond), t, expected).prev_sample
    torch.testing.assert_close(images, expected)


def test_eta_and_generator_reach_the_scheduler(pipe, source, keypoints):
    spy = SchedulerSpy(pipe.scheduler)
    generator = torch.Generator().manual_seed(3)
    pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=STEPS, eta=0.7, generator=generator,
         output_type="latent")  # fmt: skip
    assert len(spy.kwargs) == STEPS and all(c["eta"] == 0.7 and c["generator"] is generator for c in spy.kwargs)


def test_latents_returned_by_the_callback_are_used(pipe, source, keypoints):
    spy = SchedulerSpy(pipe.scheduler)

    def zero_latents(pipeline, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])}

    generate(pipe, source, keypoints, callback_on_step_end=zero_latents)
    assert (spy.samples[1] == 0).all()


def test_a_callback_objects_tensor_inputs_are_what_it_receives(pipe, source, keypoints):
    from diffusers.callbacks import PipelineCallback

    received = []

    class NoTensors(PipelineCallback):
        tensor_inputs = []

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            received.append(sorted(callback_kwargs))
            return callback_kwargs

    generate(pipe, source, keypoints, callback_on_step_end=NoTensors())
    assert received == [[]] * STEPS


@pytest.mark.parametrize(
    "latents, error, match",
    [
        (torch.full((1, 4, 32, 32), float("nan")), ValueError, "`latents` holds non-finite values"),
        (np.zeros((1, 4, 32, 32), np.float32), TypeError, "`latents` must be a torch.Tensor"),
    ],
)
def test_user_latents_are_checked(pipe, source, keypoints, latents, error, match):
    with pytest.raises(error, match=match):
        pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=STEPS, latents=latents)


def test_fp16_vae_decodes_exactly_as_in_float32(pipe):
    """``force_upcast``: the fp16 VAE decodes in float32 (autocast off), dividing by the scaling factor, and stays
    fp16 afterwards."""
    import copy

    pipe.vae.register_to_config(scaling_factor=0.37)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)).half()
    pipe.vae.half()
    reference = copy.deepcopy(pipe.vae).float()
    with torch.no_grad():
        expected = reference.decode(latents.float() / 0.37, return_dict=False)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's autocast does not reach the decode
            decoded = pipe.decode_latents(latents)
    assert decoded.dtype == torch.float32 and pipe.vae.dtype == torch.float16
    torch.testing.assert_close(decoded, expected)


def test_latents_are_cast_to_the_vae_dtype(pipe):
    """E.g. a half-precision UNet with a float32 VAE: the latents take the VAE's dtype."""
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        decoded = pipe.decode_latents(latents)
        expected = pipe.vae.decode(latents.float() / pipe.vae.config.scaling_factor, return_dict=False)[0]
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, expected)


def test_a_photo_pose_is_read_by_the_detector(pipe, source, keypoints):
    """``target_pose_is_photo=True``: the detector's keypoints are drawn, exactly as if they had been passed."""
    photo = PIL.Image.new("RGB", (64, 64), (200, 30, 30))
    seen = []

    def detector(image):
        seen.append(image.size)
        return keypoints

    from_photo, _ = generate(pipe, source, photo, target_pose_is_photo=True, pose_detector=detector,
                             retarget_pose=False)  # fmt: skip
    from_keypoints, _ = generate(pipe, source, keypoints)
    assert seen == [(64, 64)]
    torch.testing.assert_close(from_photo, from_keypoints)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"retarget_pose": True}, ValueError, "`retarget_pose=True` needs `target_pose_is_photo=True`"),
        ({"target_pose_is_photo": True}, ValueError, "`target_pose_is_photo=True` needs a `pose_detector`, e.g."),
        ({"pose_detector": "openpose"}, TypeError, "`pose_detector` must be callable (image -> keypoints), got str."),
        ({"generator": [1]}, TypeError, "`generator` must be a torch.Generator or a list of them, got [1]."),
    ],
)
def test_pose_and_generator_arguments_are_checked_by_the_pipeline(pipe, source, keypoints, kwargs, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=STEPS, **kwargs)


def test_region_embeddings_are_one_per_parsing_region(pipe, source, keypoints):
    hook = UNetHook(pipe.target_unet, (torch.zeros(1, 4, 32, 32), torch.zeros(1, 4, 32, 32)))
    generate(pipe, source, keypoints)
    for reference in hook.inputs[0][2].values():
        num_regions = reference.region_indicators.shape[-1]
        assert reference.region_embeds.shape[:2] == (2, num_regions) == reference.region_valid.shape


def test_training_posterior_samples_follow_their_generators(pipe, source):
    """``encode_source_latents`` with generators samples the posterior from them (reproducible training steps)."""
    draw = lambda seed: pipe.encode_source_latents([source[0]], 64, 64, "cpu", [torch.Generator().manual_seed(seed)])  # noqa: E731
    with torch.no_grad():
        first, again, other = draw(0), draw(0), draw(1)
        mode = pipe.encode_source_latents([source[0]], 64, 64, "cpu")
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other) and not torch.allclose(first, mode)


def test_unets_in_another_dtype_than_the_frozen_encoders(pipe, source, keypoints):
    """E.g. fp16 UNets beside an fp32 VAE and CLIP: the source's latents and CLIP embedding reach SourceNet in its
    dtype, and the result is the all-float64 pipeline's up to the float32 encoders' rounding."""
    import copy

    reference = copy.deepcopy(pipe).to(torch.float64)
    for name in ("source_unet", "target_unet", "pose_encoder"):
        getattr(pipe, name).to(torch.float64)
    assert pipe.vae.dtype == pipe.image_encoder.dtype == torch.float32
    mixed, latents = generate(pipe, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0))
    expected, _ = generate(reference, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0))
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, expected, rtol=1e-4, atol=1e-4)


def test_initial_noise_is_drawn_in_the_unets_dtype(pipe):
    """Noise is drawn directly in the requested dtype (float64 noise is another stream than float32 noise cast up),
    and latents a caller passes are cast to it."""
    shape = (2, 4, 16, 16)  # 32x32 images, the tiny VAE's factor 2
    generator = torch.Generator().manual_seed(3)
    noise = pipe.prepare_latents(2, 32, 32, torch.float64, torch.device("cpu"), torch.Generator().manual_seed(3))
    expected = torch.randn(shape, generator=generator, dtype=torch.float64) * pipe.scheduler.init_noise_sigma
    assert noise.dtype == torch.float64
    torch.testing.assert_close(noise, expected, rtol=0, atol=0)
    given = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    cast = pipe.prepare_latents(2, 32, 32, torch.float64, torch.device("cpu"), None, latents=given)
    assert cast.dtype == torch.float64
    torch.testing.assert_close(cast, given.double() * pipe.scheduler.init_noise_sigma)


def test_prepare_latents_names_the_mismatch(pipe):
    cpu = torch.device("cpu")
    generators = [torch.Generator().manual_seed(0)]
    with pytest.raises(ValueError, match=r"^`generator` is a list of 1 generators for 2 images\.$"):
        pipe.prepare_latents(2, 32, 32, torch.float32, cpu, generators)
    with pytest.raises(ValueError, match=r"^`latents` must have shape \(1, 4, 16, 16\), got \(1, 4, 8, 8\)\.$"):
        pipe.prepare_latents(1, 32, 32, torch.float32, cpu, None, latents=torch.zeros(1, 4, 8, 8))


def test_projecting_the_source_first_asks_an_offload_hook_to_move_targetnet(pipe):
    """Under model CPU offload, projecting the source is not a `forward`, so TargetNet's hook is called by hand."""
    moved = []
    pipe.target_unet._hf_hook = type("Hook", (), {"pre_forward": lambda self, module: moved.append(module)})()
    pipe.target_unet.project_source = lambda references: moved.append("projected") or references
    references = {"a layer": "its reference"}
    assert pipe.project_source(references) is references
    assert moved == [pipe.target_unet, "projected"]  # moved first, then projected


def test_the_callback_sees_each_step_and_its_timestep_35_steps_by_default(pipe, source, keypoints):
    seen, schedulers = [], set()

    def record(pipeline, step, timestep, callback_kwargs):
        seen.append((step, int(timestep)))
        schedulers.add(pipeline.scheduler)  # inside the call: the call's own scheduler
        return callback_kwargs

    pipe(source[0], keypoints, source_parsing=source[1], output_type="latent", callback_on_step_end=record)
    (scheduler,) = schedulers
    assert seen == list(enumerate(scheduler.timesteps.tolist())) and len(seen) == 35
    assert scheduler is not pipe.scheduler and pipe.scheduler.num_inference_steps is None


def test_one_pose_for_many_sources_is_used_for_each(pipe, keypoints):
    people = [tiny_person(0), tiny_person(1)]
    latents = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    kwargs = {"num_inference_steps": STEPS, "output_type": "latent"}
    together = pipe([p[0] for p in people], keypoints, source_parsing=[p[1] for p in people], latents=latents,
                    **kwargs).images  # fmt: skip
    for i, (image, parsing) in enumerate(people):
        alone = pipe(image, keypoints, source_parsing=parsing, latents=latents[i : i + 1], **kwargs).images
        torch.testing.assert_close(together[i : i + 1], alone)


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
    from_photo, _ = generate(pipe, source, photo, target_pose_is_photo=True, pose_detector=detector,
                             retarget_pose=True)  # fmt: skip
    from_keypoints, _ = generate(pipe, source, retargeted)
    assert sorted(seen) == ["source", "target"]
    torch.testing.assert_close(from_photo, from_keypoints)


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


def test_half_precision_unets_beside_float32_encoders(pipe, source, keypoints):
    """fp16 UNets beside a float32 pose encoder and CLIP (whose pose features and region embeddings TargetNet casts
    where they enter) give the float32 pipeline's result up to float16 rounding."""
    import copy

    reference = copy.deepcopy(pipe)
    pipe.source_unet.half()
    pipe.target_unet.half()
    assert pipe.pose_encoder.dtype == pipe.image_encoder.dtype == torch.float32
    half, _ = generate(pipe, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0))
    full, _ = generate(reference, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, rtol=0, atol=0.05)
