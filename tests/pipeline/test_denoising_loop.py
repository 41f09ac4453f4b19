"""The denoising loop, checked with hooks on the real modules: classifier-free guidance arithmetic (and the rows
that do not see the source), the scheduler's own loop and its arguments, initial latents and noise, callbacks and
interrupt."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from pipeline_calls import FEW_STEPS, STEPS, SchedulerSpy, UNetHook, generate_latents, generate_person, run

from truepose.testing import tiny_person as make_source


class RecordSteps(PipelineCallback):
    tensor_inputs = ["latents"]

    def __init__(self):
        super().__init__(cutoff_step_ratio=1.0)
        self.steps = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.steps.append(step_index)
        return callback_kwargs


class ZeroLatentsAtTheEnd(PipelineCallback):
    tensor_inputs = ["latents"]

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        if step_index == pipeline.num_timesteps - 1:
            callback_kwargs["latents"] = torch.zeros_like(callback_kwargs["latents"])
        return callback_kwargs


@pytest.mark.parametrize("guidance_scale", [2.5, 0.0])
def test_guided_step_is_uncond_plus_scale_times_difference(pipe, source, keypoints, guidance_scale):
    g = torch.Generator().manual_seed(0)
    uncond, cond = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 4, 32, 32, generator=g)
    hook = UNetHook(pipe.target_unet, (uncond, cond))
    spy = SchedulerSpy(pipe.scheduler)
    generate_latents(pipe, source, keypoints, guidance_scale=guidance_scale)
    assert len(spy.model_outputs) == FEW_STEPS
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
    generate_latents(pipe, source, keypoints, guidance_scale=1.0)
    for guided in spy.model_outputs:
        torch.testing.assert_close(guided, cond)
    for sample, embeds, references in hook.inputs:
        assert sample.shape == (1, 4, 32, 32) and (embeds != 0).any()
        assert all(torch.isfinite(r.log_weight).all() for r in references.values())


def test_guidance_scale_zero_is_the_unconditional_model(pipe, source, keypoints):
    first = run(pipe, source, keypoints, guidance_scale=0.0)
    np.testing.assert_allclose(run(pipe, make_source(seed=5), keypoints, guidance_scale=0.0), first, atol=1e-6)
    assert np.abs(run(pipe, source, keypoints, guidance_scale=1.0) - first).max() > 1e-4


def test_unconditional_rows_do_not_see_the_source(pipe, source, keypoints):
    """The CFG unconditional branch equals TargetNet without any source, whatever the source."""
    from truepose.models import SourceReference

    unet = pipe.target_unet
    sample, embeds = torch.randn(1, 4, 32, 32), torch.randn(1, 1, 32)
    plain = unet(sample, 10, embeds).sample
    for seed in (0, 5):
        image, parsing = make_source(seed)
        parsing_maps, label_map = pipe.parse_sources([image], parsing, "atr")
        reference, _ = pipe.encode_source([image], parsing_maps, label_map, 64, 64, torch.device("cpu"))
        dropped = SourceReference(**{**reference.__dict__, "source_dropped": torch.tensor([True])})
        out = unet(sample, 10, embeds, layer_references=unet.prepare_reference(dropped, (32, 32))).sample
        torch.testing.assert_close(out, plain)
        seen = unet(sample, 10, embeds, layer_references=unet.prepare_reference(reference, (32, 32))).sample
        assert (seen - plain).abs().max() > 1e-4


def test_leading_dropped_rows_are_marked_source_free(pipe, source):
    """Under CFG the unconditional half skips the source keys; scattered dropped rows keep the ``-inf`` bias."""
    parsing_maps, label_map = pipe.parse_sources([source[0]] * 3, [source[1]] * 3, "atr")
    reference, _ = pipe.encode_source([source[0]] * 3, parsing_maps, label_map, 64, 64, torch.device("cpu"))
    unet = pipe.target_unet
    for dropped, expected in (([True, True, False], 2), ([False, True, True], 0), ([True, True, True], 3)):
        rows = dataclasses.replace(reference, source_dropped=torch.tensor(dropped))
        layers = unet.prepare_reference(rows, (32, 32)).values()
        assert {layer.num_source_free_rows for layer in layers} == {expected}
    layers = unet.prepare_reference(reference.with_unconditional(), (32, 32)).values()
    assert {layer.num_source_free_rows for layer in layers} == {3}


def test_denoising_loop_is_the_schedulers_own_loop(pipe, source, keypoints):
    """With TargetNet's output fixed to known halves, the final latents equal the scheduler run by hand."""
    g = torch.Generator().manual_seed(2)
    uncond, cond = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 4, 32, 32, generator=g)
    UNetHook(pipe.target_unet, (uncond, cond))
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    images, latents = generate_latents(pipe, source, keypoints, guidance_scale=3.0)
    scheduler.set_timesteps(FEW_STEPS)
    expected = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        expected = scheduler.step(uncond + 3.0 * (cond - uncond), t, expected).prev_sample
    torch.testing.assert_close(images, expected)


def test_eta_and_generator_reach_the_scheduler(pipe, source, keypoints):
    spy = SchedulerSpy(pipe.scheduler)
    generator = torch.Generator().manual_seed(3)
    pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=FEW_STEPS, eta=0.7, generator=generator,
         output_type="latent")  # fmt: skip
    assert len(spy.kwargs) == FEW_STEPS and all(c["eta"] == 0.7 and c["generator"] is generator for c in spy.kwargs)


def test_initial_latents_are_scaled_by_init_noise_sigma(pipe, source, keypoints):
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    spy = SchedulerSpy(pipe.scheduler)
    unet_inputs = []
    pipe.target_unet.register_forward_pre_hook(lambda m, args: unet_inputs.append(args[0].clone()))
    _, latents = generate_latents(pipe, source, keypoints, guidance_scale=1.0)
    scheduler = spy.schedulers[0]  # the call's own copy of the pipeline's scheduler
    assert scheduler is not pipe.scheduler and all(s is scheduler for s in spy.schedulers)
    init_noise_sigma = float(scheduler.init_noise_sigma)  # of the timesteps set for this call
    assert init_noise_sigma > 5  # Euler: a wrong or missing scaling shows (DDIM's is 1)
    torch.testing.assert_close(spy.samples[0], latents * init_noise_sigma)
    # Euler's `scale_model_input` divides by sqrt(sigma_0^2 + 1) before the UNet.
    sigma_0 = float(scheduler.sigmas[0])
    expected = latents * init_noise_sigma / (sigma_0**2 + 1) ** 0.5
    torch.testing.assert_close(unet_inputs[0], expected, rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize(
    "latents, error, match",
    [
        (torch.full((1, 4, 32, 32), float("nan")), ValueError, "`latents` holds non-finite values"),
        (np.zeros((1, 4, 32, 32), np.float32), TypeError, "`latents` must be a torch.Tensor"),
    ],
)
def test_user_latents_are_checked(pipe, source, keypoints, latents, error, match):
    with pytest.raises(error, match=match):
        pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=FEW_STEPS, latents=latents)


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

    images, _ = generate_latents(pipe, source, keypoints, output_type="pt", callback_on_step_end=keep_latents)
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


def test_latents_returned_by_the_callback_are_used(pipe, source, keypoints):
    spy = SchedulerSpy(pipe.scheduler)

    def zero_latents(pipeline, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])}

    generate_latents(pipe, source, keypoints, callback_on_step_end=zero_latents)
    assert (spy.samples[1] == 0).all()


def test_a_callback_objects_tensor_inputs_are_what_it_receives(pipe, source, keypoints):
    from diffusers.callbacks import PipelineCallback

    received = []

    class NoTensors(PipelineCallback):
        tensor_inputs = []

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            received.append(sorted(callback_kwargs))
            return callback_kwargs

    generate_latents(pipe, source, keypoints, callback_on_step_end=NoTensors())
    assert received == [[]] * FEW_STEPS


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


def test_scheduler_swap_and_callback(pipe, source, keypoints):
    original = pipe.scheduler
    pipe.scheduler = EulerDiscreteScheduler.from_config(original.config)
    seen = []

    def callback(p, step, timestep, tensors):
        seen.append((step, p.num_timesteps, p.guidance_scale))
        return {"latents": tensors["latents"]}

    try:
        images = run(pipe, source, keypoints, callback_on_step_end=callback)
    finally:
        pipe.scheduler = original
    assert np.isfinite(images).all()
    assert seen == [(i, STEPS, 2.0) for i in range(STEPS)]


def test_pipeline_callback_objects(pipe):
    record = RecordSteps()
    generate_person(pipe, callback_on_step_end=record)
    assert record.steps == list(range(STEPS))
    record, zero = RecordSteps(), ZeroLatentsAtTheEnd()
    latents = generate_person(pipe, callback_on_step_end=MultiPipelineCallbacks([record, zero]), output_type="latent")
    assert record.steps == list(range(STEPS)) and torch.count_nonzero(latents) == 0


def test_interrupt_skips_the_remaining_steps(pipe):
    calls = []
    handle = pipe.target_unet.register_forward_pre_hook(lambda module, args: calls.append(1))

    def stop_after_step_1(p, step, timestep, tensors):
        assert p.interrupt is False
        if step == 1:
            p._interrupt = True
        return tensors

    try:
        generate_person(pipe, callback_on_step_end=stop_after_step_1, output_type="latent")
    finally:
        handle.remove()
    assert len(calls) == 2 and pipe.interrupt
    generate_person(pipe)  # the next call starts uninterrupted
    assert not pipe.interrupt
