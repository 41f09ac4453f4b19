"""One pipeline object shared by threads (issue 24): every call's result equals the same call made alone.

Per-call state travels with the call (TargetNet's references and recorders in ``cross_attention_kwargs``, pose
features and SourceNet's bank in context variables, a scheduler copy and the guidance/interrupt values per call), so
concurrent calls with different sources, poses, seeds, step counts and guidance scales do not mix.
"""

import threading

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from truepose import TruePoseAnimationPipeline
from truepose.analysis import attention_shares
from truepose.conditioning import draw_skeleton
from truepose.models import TruePoseDenoiser
from truepose.pipeline import SD15_SCHEDULER_CONFIG
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline
from truepose.train import TrainingBatch, training_loss

ROUNDS = 2  # each thread repeats its call, so the calls overlap at many different points


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0, randomize_new_layers=True)  # CAA and the pose encoder are not the identity


def concurrently(*calls):
    """Run each call ROUNDS times in its own thread, all starting together; every result of every round."""
    barrier = threading.Barrier(len(calls))
    results, errors = [[] for _ in calls], []

    def worker(index, call):
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                results[index].append(call())
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def interrupt_after(step_to_stop):
    def callback(pipe, step, timestep, tensors):
        if step == step_to_stop:
            pipe._interrupt = True
        return tensors

    return callback


def generation(pipe, person_seed, keypoints, seed, steps, guidance_scale, **kwargs):
    source, parsing = tiny_person(person_seed)

    def call():
        return pipe(
            source, keypoints, source_parsing=parsing, num_inference_steps=steps, guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs,
        ).images  # fmt: skip

    return call


def test_threads_with_different_calls_on_one_pipeline_get_their_own_images(pipe):
    """Sources, poses, seeds, step counts (the scheduler's timesteps), guidance (1: no unconditional rows, 0: the
    unconditional model) and a callback that interrupts its own call only."""
    calls = [
        generation(pipe, 0, TINY_KEYPOINTS, 0, 2, 2.0),
        generation(pipe, 1, TINY_KEYPOINTS[:, [1, 0, 2]], 1, 4, 1.0),
        generation(pipe, 2, TINY_KEYPOINTS, 2, 3, 0.0),
        generation(pipe, 3, TINY_KEYPOINTS * [0.9, 1.1, 1], 3, 4, 3.5, callback_on_step_end=interrupt_after(1)),
    ]
    alone = [call() for call in calls]
    assert all(not torch.equal(alone[0], other) for other in alone[1:])
    for index, results in enumerate(concurrently(*calls)):
        for result in results:
            assert torch.equal(result, alone[index]), f"call {index}"
    assert pipe.scheduler.num_inference_steps is None  # the calls set the timesteps of their own scheduler copies


def test_attention_shares_beside_a_generation(pipe):
    """The analysis's recorders travel with its call: a concurrent generation records nothing into it and is not
    interrupted by it."""
    source, parsing = tiny_person(0)

    def shares():
        return attention_shares(
            pipe, source, TINY_KEYPOINTS, parsing, num_inference_steps=2, timestep_index=-1,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    generate = generation(pipe, 1, TINY_KEYPOINTS, 1, 3, 2.0)
    expected_shares, expected_image = shares(), generate()
    shares_results, images = concurrently(shares, generate)
    for result in shares_results:
        assert result["layers"] == expected_shares["layers"] and result["steps"] == expected_shares["steps"]
        for name, received in expected_shares["received"].items():
            np.testing.assert_array_equal(result["received"][name], received)
    for image in images:
        assert torch.equal(image, expected_image)


def test_animation_pipeline_sharing_components_with_a_pipeline(pipe):
    animation = TruePoseAnimationPipeline(**pipe.components)
    source, parsing = tiny_person(0)
    poses = np.stack([TINY_KEYPOINTS, TINY_KEYPOINTS[:, [1, 0, 2]]])

    def animate():
        return animation(
            source, poses, source_parsing=parsing, num_inference_steps=2, frames_per_batch=1,
            generator=torch.Generator().manual_seed(0), output_type="pt",
        ).frames  # fmt: skip

    generate = generation(pipe, 1, TINY_KEYPOINTS, 1, 3, 1.5)
    expected_frames, expected_image = animate(), generate()
    frames, images = concurrently(animate, generate)
    assert all(torch.equal(result, expected_frames) for result in frames)
    assert all(torch.equal(image, expected_image) for image in images)


def test_checkpointed_training_step_recomputes_with_the_same_references_in_another_thread():
    """The references reach the checkpointed transformer blocks as arguments: a backward run in another thread
    (as CUDA's autograd does) gives the loss and gradients of training without checkpointing."""
    people = [tiny_person(seed) for seed in range(2)]
    batch = TrainingBatch(
        sources=[image for image, _ in people],
        targets=[tiny_person(seed + 100)[0] for seed in range(2)],
        pose_images=[draw_skeleton(TINY_KEYPOINTS, 64, 64)] * 2,
        parsing_maps=[parsing for _, parsing in people],
        label_map="atr",
    )
    noise_scheduler = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)

    def step(checkpointing: bool):
        pipe = tiny_pipeline(seed=0, randomize_new_layers=True)
        denoiser = TruePoseDenoiser(pipe.source_unet, pipe.target_unet, pipe.pose_encoder)
        if checkpointing:
            denoiser.enable_gradient_checkpointing()
        calls_in_backward = []
        layer = next(iter(pipe.target_unet.truepose_processors)).removesuffix(".processor")
        pipe.target_unet.get_submodule(layer).register_forward_pre_hook(
            lambda module, args, kwargs: calls_in_backward.append(kwargs["layer_references"]) if in_backward else None,
            with_kwargs=True,
        )
        in_backward = False

        def backward_in_another_thread(loss):
            nonlocal in_backward
            in_backward = True
            thread = threading.Thread(target=loss.backward)
            thread.start()
            thread.join()
            in_backward = False

        loss = training_loss(
            pipe, denoiser, noise_scheduler, batch, 0.3,
            [torch.Generator().manual_seed(s) for s in (5, 6)], backward_in_another_thread,
        )  # fmt: skip
        grads = {
            name: p.grad.clone()
            for unet in ("source_unet", "target_unet")
            for name, p in getattr(pipe, unet).named_parameters(prefix=unet)
            if p.grad is not None
        }
        return loss, grads, calls_in_backward

    loss, grads, recomputed = step(checkpointing=False)
    checkpointed_loss, checkpointed_grads, checkpointed_recomputed = step(checkpointing=True)
    assert recomputed == [] and len(checkpointed_recomputed) == 1  # the layer really ran again in backward
    torch.testing.assert_close(checkpointed_loss, loss)
    assert checkpointed_grads.keys() == grads.keys() and any(name.startswith("source_unet") for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, msg=name)


def test_app_visitors_with_different_settings_get_their_own_images(pipe):
    """The app's scheduler and HPFA/CAA settings are the pipeline's own: two visitors generating at once with
    different ones each get the image their settings give alone."""
    from truepose.app import TruePoseApp

    app = TruePoseApp(pipe)
    source, parsing = tiny_person(0)
    pose = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    visitors = [
        app.generation_request(source, parsing, "atr", pose, 2, 2.0, 3, "Euler", 0.2, 0.5, 1, False),
        app.generation_request(source, parsing, "atr", pose, 3, 2.0, 3, "DDIM", 0.3, 0.6, 2, True),
    ]
    alone = [np.asarray(app.generate(kwargs)[0]) for kwargs in visitors]
    together = concurrently(*(lambda kwargs=kwargs: np.asarray(app.generate(kwargs)[0]) for kwargs in visitors))
    for expected, results in zip(alone, together):
        for result in results:
            np.testing.assert_array_equal(result, expected)


def test_vae_is_used_under_its_lock_while_a_float16_decode_upcasts_it():
    """Decoding with a float16 VAE marked ``force_upcast`` casts the shared VAE to float32 for its duration: encoding
    and decoding hold the VAE's lock, so no other thread sees it half-cast."""
    from truepose.pipeline import vae_lock

    fp16_pipe = tiny_pipeline(seed=0)
    fp16_pipe.vae.half()
    fp16_pipe.vae.register_to_config(force_upcast=True)
    lock = vae_lock(fp16_pipe.vae)
    held = []
    for method in ("encode", "decode"):
        original = getattr(fp16_pipe.vae, method)

        def recording(*args, original=original, **kwargs):
            held.append(lock.locked())
            return original(*args, **kwargs)

        setattr(fp16_pipe.vae, method, recording)
    source, parsing = tiny_person(0)
    fp16_pipe(source, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=1, output_type="pt")
    assert held == [True, True]  # one encode (the source), one decode (the result), each under the lock
    assert vae_lock(fp16_pipe.vae) is lock and fp16_pipe.vae.dtype == torch.float16
