"""The training objective against the scheduler's own formulas, and condition dropout by count (issue 14)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from truepose.conditioning import draw_skeleton
from truepose.models import TruePoseDenoiser
from truepose.pipeline import SD15_SCHEDULER_CONFIG
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline
from truepose.train import TrainingBatch, training_loss


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0, randomize_new_layers=True)  # the pose encoder's output is not zero


def make_training_batch(size: int, num_pairs: int, width: int | None = None) -> TrainingBatch:
    """``num_pairs`` pairs of ``size`` x ``width`` (height x width) images, skeletons and parsing maps."""
    width = width or size
    people = [tiny_person(seed, size=size) for seed in range(num_pairs)]
    keypoints = TINY_KEYPOINTS.copy()
    keypoints[keypoints[:, 2] > 0, :2] *= (width / 64, size / 64)
    return TrainingBatch(
        sources=[image.resize((width, size)) for image, _ in people],
        targets=[tiny_person(seed + 100, size=size)[0].resize((width, size)) for seed in range(num_pairs)],
        pose_images=[draw_skeleton(keypoints, size, width)] * num_pairs,
        parsing_maps=[parsing[:, (np.arange(width) * size) // width] for _, parsing in people],
        label_map="atr",
    )


class Spy:
    """Records what ``training_loss`` hands to the scheduler and to TargetNet, changing nothing."""

    def __init__(self, pipe, noise_scheduler):
        self.calls = {}
        add_noise = noise_scheduler.add_noise

        def spy_add_noise(original, noise, timesteps):
            noisy = add_noise(original, noise, timesteps)
            self.calls["add_noise"] = (original.clone(), noise.clone(), timesteps.clone(), noisy.clone())
            return noisy

        noise_scheduler.add_noise = spy_add_noise
        target_unet = pipe.target_unet

        def record_inputs(module, args, kwargs):
            sample, timestep, encoder_hidden_states = (list(args) + [None] * 3)[:3]
            sample = kwargs.get("sample", sample)
            timestep = kwargs.get("timestep", timestep)
            encoder_hidden_states = kwargs.get("encoder_hidden_states", encoder_hidden_states)
            references = kwargs["layer_references"]  # one per HPFA/CAA processor (KeyError otherwise)
            log_weights = {n: references[n].log_weight.clone() for n in target_unet.truepose_processors}
            self.calls["unet_in"] = (sample.clone(), torch.as_tensor(timestep).clone(), encoder_hidden_states.clone())
            self.calls["log_weights"] = log_weights
            self.calls["source_free_rows"] = {
                references[n].num_source_free_rows for n in target_unet.truepose_processors
            }
            self.calls["pose_features"] = kwargs["pose_features"].detach().clone()

        def record_output(module, args, output):
            self.calls["prediction"] = output.sample.detach().clone()

        self.handles = [
            target_unet.register_forward_pre_hook(record_inputs, with_kwargs=True),
            target_unet.register_forward_hook(record_output),
        ]

    def remove(self):
        for handle in self.handles:
            handle.remove()


def run_loss(pipe, batch, prediction_type, condition_dropout, seeds, denoiser=None, **scheduler_config):
    noise_scheduler = DDPMScheduler.from_config(
        {**SD15_SCHEDULER_CONFIG, "prediction_type": prediction_type, **scheduler_config}
    )
    spy = Spy(pipe, noise_scheduler)
    backward_calls = []
    try:
        loss = training_loss(
            pipe,
            denoiser or TruePoseDenoiser(pipe.source_unet, pipe.target_unet, pipe.pose_encoder),
            noise_scheduler,
            batch,
            condition_dropout,
            [torch.Generator().manual_seed(s) for s in seeds],
            backward_calls.append,
        )
    finally:
        spy.remove()
    (backward_loss,) = backward_calls  # backward runs once, on the loss
    assert backward_loss.requires_grad and backward_loss.item() == loss.item()
    return loss, spy.calls


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_target_per_prediction_type(pipe, prediction_type):
    batch = make_training_batch(64, 2, width=48)
    loss, calls = run_loss(pipe, batch, prediction_type, 0.0, [3, 4])
    original, noise, timesteps, noisy = calls["add_noise"]
    sample, unet_timesteps, embeds = calls["unet_in"]
    # Conditions: CLIP embeddings of the sources, pose features of the skeletons, every row sees the source.
    torch.testing.assert_close(embeds, pipe.encode_image(batch.sources, "cpu"))
    pixels = torch.from_numpy(np.stack([np.asarray(p, dtype=np.float32) / 255 for p in batch.pose_images]))
    torch.testing.assert_close(calls["pose_features"], pipe.pose_encoder(pixels.permute(0, 3, 1, 2)))
    assert calls["source_free_rows"] == {0}
    torch.testing.assert_close(sample, noisy)  # TargetNet sees the scheduler's noisy latents ...
    assert unet_timesteps.tolist() == timesteps.tolist()  # ... at their timesteps
    assert timesteps.shape == (2,) and ((0 <= timesteps) & (timesteps < 1000)).all()
    assert original.shape == noise.shape == (2, 4, 32, 24)
    # The noised latents are a posterior sample of the targets' VAE latents, not their mode, nor the sources'.
    source_latents = pipe.encode_source_latents(batch.sources, 64, 48, "cpu")
    target_mode = pipe.encode_source_latents(batch.targets, 64, 48, "cpu")
    assert not torch.allclose(original, source_latents, atol=1e-2)
    assert not torch.allclose(original, target_mode, atol=1e-2)
    assert (original - target_mode).abs().mean() < (original - source_latents).abs().mean()
    reference_scheduler = DDPMScheduler.from_config({**SD15_SCHEDULER_CONFIG, "prediction_type": prediction_type})
    alphas = reference_scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, alphas.sqrt() * original + (1 - alphas).sqrt() * noise)
    if prediction_type == "epsilon":
        target = noise
    else:
        target = reference_scheduler.get_velocity(original, noise, timesteps)
        torch.testing.assert_close(target, alphas.sqrt() * noise - (1 - alphas).sqrt() * original)
    expected = F.mse_loss(calls["prediction"].double(), target.double())
    assert loss.ndim == 0 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    other = (
        noise if prediction_type == "v_prediction" else reference_scheduler.get_velocity(original, noise, timesteps)
    )
    assert loss.item() != pytest.approx(F.mse_loss(calls["prediction"], other).item(), rel=1e-3)


def dropped_rows(calls) -> torch.Tensor:
    """Rows whose source is unseen: CLIP embedding zero and every HPFA log-weight -inf (checked to agree)."""
    embeds_zero = (calls["unet_in"][2] == 0).flatten(1).all(dim=1)
    for log_weight in calls["log_weights"].values():
        assert torch.equal(torch.isneginf(log_weight).all(dim=1), embeds_zero)
        assert torch.isfinite(log_weight[~embeds_zero]).all()
    return embeds_zero


def test_condition_dropout_drops_rows_at_the_requested_rate(pipe):
    batch = make_training_batch(32, 24)
    _, calls = run_loss(pipe, batch, "epsilon", 0.25, range(24))
    count = int(dropped_rows(calls).sum())
    assert calls["source_free_rows"] == {0}  # dropped rows keep the source keys with weight 0 (for DDP)
    # Binomial(24, 0.25): mean 6, sd 2.1; seeded, so the count is fixed, and 1 - p (mean 18) is far outside.
    assert 2 <= count <= 11, count
    _, calls = run_loss(pipe, make_training_batch(32, 3), "epsilon", 0.0, range(3))
    assert not dropped_rows(calls).any()
    _, calls = run_loss(pipe, make_training_batch(32, 3), "epsilon", 1.0, range(3))
    assert dropped_rows(calls).all()
    assert calls["source_free_rows"] == {0}  # even when every row is dropped
    embeds = calls["unet_in"][2]
    assert embeds.shape == (3, 1, 32) and np.count_nonzero(embeds.numpy()) == 0


def test_each_row_draws_only_from_its_own_generator(pipe):
    """Seeded by pair: a row's noise, timestep and dropout are the same alone or in a batch, and every call with
    the same seeds is identical (nothing comes from the global RNG)."""
    batch = make_training_batch(32, 2)
    loss_a, both = run_loss(pipe, batch, "epsilon", 0.5, [11, 12])
    torch.manual_seed(123)  # the global RNG must not matter
    loss_b, again = run_loss(pipe, batch, "epsilon", 0.5, [11, 12])
    assert loss_a.item() == loss_b.item()
    single = TrainingBatch(batch.sources[1:], batch.targets[1:], batch.pose_images[1:], batch.parsing_maps[1:], "atr")
    _, alone = run_loss(pipe, single, "epsilon", 0.5, [12])
    for key in ("add_noise", "unet_in"):
        for x, y, z in zip(both[key], again[key], alone[key]):
            torch.testing.assert_close(x, y)
            torch.testing.assert_close(x[1:], z)


def test_the_model_passed_is_the_one_trained(pipe, wrap_like_ddp):
    """The TruePoseDenoiser passed, as accelerate wraps it (DDP's `.module`), runs its own SourceNet (not the
    pipeline's) inside its forward (that SourceNet is trained: tests/training/test_distributed.py)."""
    import copy

    source_unet = copy.deepcopy(pipe.source_unet)
    calls = {"passed": 0, "pipeline": 0}
    source_unet.register_forward_pre_hook(lambda *_: calls.__setitem__("passed", calls["passed"] + 1))
    handle = pipe.source_unet.register_forward_pre_hook(
        lambda *_: calls.__setitem__("pipeline", calls["pipeline"] + 1)
    )
    denoiser = TruePoseDenoiser(source_unet, pipe.target_unet, pipe.pose_encoder)
    try:
        loss, _ = run_loss(pipe, make_training_batch(32, 2), "epsilon", 0.0, [1, 2], denoiser=wrap_like_ddp(denoiser))
    finally:
        handle.remove()
    assert calls == {"passed": 1, "pipeline": 0} and torch.isfinite(loss)


def test_every_timestep_is_trained_including_0(pipe):
    """Timesteps are drawn uniformly from all ``num_train_timesteps``: with 2 of them, 16 seeded pairs see both
    (a draw from 1..N-1 would never train the last denoising step)."""
    _, calls = run_loss(pipe, make_training_batch(32, 16), "epsilon", 0.0, range(16), num_train_timesteps=2)
    timesteps = calls["add_noise"][2]
    assert sorted(set(timesteps.tolist())) == [0, 1]


def test_loss_follows_the_models_dtype():
    """Frozen encoders in another dtype than float32 (as with a half-precision VAE): the noise and the pose
    skeleton take the latents' and the pose encoder's dtype."""
    pipe64 = tiny_pipeline(seed=0, randomize_new_layers=True).to(torch.float64)
    loss, calls = run_loss(pipe64, make_training_batch(32, 2), "epsilon", 0.0, [5, 6])
    original, noise, _, noisy = calls["add_noise"]
    assert original.dtype == noise.dtype == noisy.dtype == torch.float64
    assert calls["pose_features"].dtype == torch.float64 and torch.isfinite(loss)
