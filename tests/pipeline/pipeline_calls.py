"""Calls of a tiny pipeline that several pipeline test modules make, and the spies they use (imported by name:
pytest puts this folder on the path)."""

import functools

import torch

from truepose.testing import TINY_KEYPOINTS, tiny_person

STEPS = 3

FEW_STEPS = 2


def run(pipe, source, keypoints, seed=0, **kwargs):
    image, parsing = source
    kwargs.setdefault("source_parsing", parsing)
    return pipe(
        image, keypoints, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="np",
        **kwargs,
    ).images  # fmt: skip


def generate_person(pipe, seed=0, **kwargs):
    image, parsing = tiny_person(0)
    kwargs.setdefault("output_type", "np")
    return pipe(
        image, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(seed), **kwargs,
    ).images  # fmt: skip


def generate_latents(pipe, source, keypoints, **kwargs):
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    kwargs = {"num_inference_steps": FEW_STEPS, "output_type": "latent", "latents": latents, **kwargs}
    return pipe(source[0], keypoints, source_parsing=source[1], **kwargs).images, latents


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
