"""Dtypes: the fp16 VAE decodes upcast, latents take the VAE's dtype, UNets in another dtype than the frozen
encoders, a float16 image encoder, `to(dtype=...)`."""

import torch
from pipeline_calls import generate_latents

from truepose.testing import tiny_person, tiny_pipeline


def test_fp16_vae_decode_is_upcast():
    pipe = tiny_pipeline(seed=0)
    with torch.no_grad():
        pipe.vae.post_quant_conv.weight.mul_(1000)  # decoder activations beyond fp16's range
    latents = (torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 100).half()
    pipe.vae.to(torch.float16)
    assert not torch.isfinite(pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample).all()
    decoded = pipe.decode_latents(latents)
    assert torch.isfinite(decoded).all() and pipe.vae.dtype == torch.float16


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


def test_unets_in_another_dtype_than_the_frozen_encoders(pipe, source, keypoints):
    """E.g. fp16 UNets beside an fp32 VAE and CLIP: the source's latents and CLIP embedding reach SourceNet in its
    dtype, and the result is the all-float64 pipeline's up to the float32 encoders' rounding."""
    import copy

    reference = copy.deepcopy(pipe).to(torch.float64)
    for name in ("source_unet", "target_unet", "pose_encoder"):
        getattr(pipe, name).to(torch.float64)
    assert pipe.vae.dtype == pipe.image_encoder.dtype == torch.float32
    mixed, latents = generate_latents(
        pipe, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0)
    )
    expected, _ = generate_latents(
        reference, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0)
    )
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, expected, rtol=1e-4, atol=1e-4)


def test_half_precision_unets_beside_float32_encoders(pipe, source, keypoints):
    """fp16 UNets beside a float32 pose encoder and CLIP (whose pose features and region embeddings TargetNet casts
    where they enter) give the float32 pipeline's result up to float16 rounding."""
    import copy

    reference = copy.deepcopy(pipe)
    pipe.source_unet.half()
    pipe.target_unet.half()
    assert pipe.pose_encoder.dtype == pipe.image_encoder.dtype == torch.float32
    half, _ = generate_latents(pipe, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0))
    full, _ = generate_latents(reference, source, keypoints, latents=None, generator=torch.Generator().manual_seed(0))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, rtol=0, atol=0.05)


def test_a_float16_image_encoder_gives_float16_embeddings_close_to_float32():
    pipe = tiny_pipeline(seed=0)
    source, _ = tiny_person(0)
    full = pipe.encode_image([source], torch.device("cpu"))
    pipe.image_encoder.to(torch.float16)
    half = pipe.encode_image([source], torch.device("cpu"))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, atol=2e-2, rtol=2e-2)


def test_to_casts_by_keyword_and_keeps_float16_on_cpu_quiet(recorded_logs):
    """`to` passes every argument on to diffusers and silences its "float16 cannot run on cpu" warning (untrue for
    TruePose) unless the caller asks for it."""
    pipe = tiny_pipeline(seed=0)
    with recorded_logs("diffusers.pipelines.pipeline_utils") as records:  # where DiffusionPipeline.to logs
        pipe.to(dtype=torch.float16)
        pipe.to("cpu")
        assert pipe.target_unet.dtype == pipe.source_unet.dtype == torch.float16 and records == []
        pipe.to("cpu", silence_dtype_warnings=False)
    assert records and "cannot run with `cpu` device" in records[0].getMessage()
