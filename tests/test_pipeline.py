import dataclasses
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor2_0

from truepose import TruePosePipeline
from truepose.models.target_net import _POSE_FEATURES, _REFERENCE_BANK
from truepose.testing import tiny_person as make_source
from truepose.testing import tiny_pipeline

STEPS = 3


def run(pipe, source, keypoints, seed=0, **kwargs):
    image, parsing = source
    kwargs.setdefault("source_parsing", parsing)
    return pipe(
        image, keypoints, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="np",
        **kwargs,
    ).images  # fmt: skip


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0, randomize_new_layers=True)


def test_generates_an_image_of_the_source_size(pipe, source, keypoints):
    images = pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=STEPS).images
    assert len(images) == 1 and isinstance(images[0], PIL.Image.Image) and images[0].size == (64, 64)
    array = run(pipe, source, keypoints)
    assert array.shape == (1, 64, 64, 3) and np.isfinite(array).all()


def test_seeded_generation_is_deterministic_and_depends_on_the_source(pipe, source, keypoints):
    first, again = run(pipe, source, keypoints), run(pipe, source, keypoints)
    np.testing.assert_array_equal(first, again)
    other = run(pipe, make_source(seed=5), keypoints)
    assert np.abs(first - other).max() > 1e-3
    other_pose = run(pipe, source, keypoints[:, [1, 0, 2]] * [1, 1, 1])  # transposed skeleton
    assert np.abs(first - other_pose).max() > 1e-3


def test_a_second_call_keeps_no_state_from_the_first(source, keypoints):
    pipe = tiny_pipeline(seed=0, randomize_new_layers=True)
    other_source = make_source(seed=5)
    expected = run(pipe, other_source, keypoints)
    run(pipe, source, keypoints)
    np.testing.assert_array_equal(run(pipe, other_source, keypoints), expected)
    # nothing of a call stays on the models: TargetNet's processors hold no reference, SourceNet keeps diffusers'
    # own processors, and no bank or pose features are left set
    assert all(not hasattr(p, "reference") for p in pipe.target_unet.hpfa_processors.values())
    assert all(type(p) is AttnProcessor2_0 for p in pipe.source_unet.attn_processors.values())
    assert _REFERENCE_BANK.get() is None and _POSE_FEATURES.get() is None


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


def test_batch_equals_separate_calls(pipe, keypoints):
    sources = [make_source(1), make_source(2)]
    poses = [keypoints, keypoints[:, [1, 0, 2]]]
    batched = pipe(
        [s[0] for s in sources],
        poses,
        source_parsing=[s[1] for s in sources],
        num_inference_steps=STEPS,
        generator=[torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)],
        output_type="np",
    ).images
    for i, (source, pose) in enumerate(zip(sources, poses)):
        single = run(pipe, source, pose, seed=7 + i)
        np.testing.assert_allclose(batched[i], single[0], atol=1e-4)


def test_num_images_per_prompt_and_one_source_many_poses(pipe, source, keypoints):
    images = pipe(
        source[0], keypoints, source_parsing=source[1], num_inference_steps=2, num_images_per_prompt=3
    ).images
    assert len(images) == 3
    images = pipe(source[0], [keypoints, keypoints], source_parsing=source[1], num_inference_steps=2).images
    assert len(images) == 2


def test_save_load_round_trip_gives_identical_images(tmp_path, source, keypoints):
    pipe = tiny_pipeline(seed=1, randomize_new_layers=True, hpfa_sigma=0.2, hpfa_delta=0.9, caa_top_k=1)
    expected = run(pipe, source, keypoints)
    pipe.save_pretrained(tmp_path)
    assert not list(tmp_path.rglob("*.bin")) and list(tmp_path.rglob("*.safetensors"))
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["target_unet"] == ["truepose.models.target_net", "TargetNet"]
    loaded = TruePosePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    config = loaded.target_unet.config
    assert (config.hpfa_sigma, config.hpfa_delta, config.caa_top_k) == (0.2, 0.9, 1)
    reloaded = run(loaded, source, keypoints)
    # equal to float32 rounding (safetensors-mapped weights may take other BLAS paths), identical as 8-bit images
    np.testing.assert_allclose(reloaded, expected, atol=1e-5)
    np.testing.assert_array_equal((reloaded * 255).round(), (expected * 255).round())


def test_hpfa_settings_change_the_output(source, keypoints):
    base = run(tiny_pipeline(seed=0, randomize_new_layers=True), source, keypoints)
    plain = run(tiny_pipeline(seed=0, randomize_new_layers=True, hpfa_sigma=1.0, hpfa_delta=0.0), source, keypoints)
    assert np.abs(base - plain).max() > 1e-4


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


def test_pipeline_parser_computes_the_parsing(source, keypoints):
    pipe = tiny_pipeline(seed=0, with_parser=True)
    image = pipe(source[0], keypoints, num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3)


def test_fp16_vae_decode_is_upcast():
    pipe = tiny_pipeline(seed=0)
    with torch.no_grad():
        pipe.vae.post_quant_conv.weight.mul_(1000)  # decoder activations beyond fp16's range
    latents = (torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 100).half()
    pipe.vae.to(torch.float16)
    assert not torch.isfinite(pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample).all()
    decoded = pipe.decode_latents(latents)
    assert torch.isfinite(decoded).all() and pipe.vae.dtype == torch.float16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"height": 63}, "height"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"source_parsing": np.zeros((32, 32), dtype=np.int64)}, "source_parsing"),
        ({"source_parsing": [np.zeros((64, 64), dtype=np.int64)] * 2}, "source_parsing"),
        ({"source_parsing": None}, "source_parsing"),
        ({"target_pose": np.zeros((17, 2))}, "keypoints|target_pose"),
        ({"target_pose": [np.zeros((18, 2))] * 3, "source_image": [PIL.Image.new("RGB", (64, 64))] * 2}, "batch"),
        ({"source_image": PIL.Image.new("RGBA", (64, 64))}, "source_image.*RGB"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "callback_on_step_end_tensor_inputs"),
        ({"latents": torch.zeros(1, 4, 8, 8)}, "latents"),
    ],
)
def test_bad_input_gets_a_clear_error(pipe, source, keypoints, kwargs, match):
    call = {"source_image": source[0], "target_pose": keypoints, "source_parsing": source[1], **kwargs}
    call.setdefault("num_inference_steps", 2)
    with pytest.raises(ValueError, match=match):
        pipe(**call)


def test_wrong_input_type_gets_a_type_error(pipe, source, keypoints):
    with pytest.raises(TypeError, match="source_image"):
        pipe("person.jpg", keypoints, source_parsing=source[1], num_inference_steps=2)


def test_missing_and_incomplete_checkpoints_say_what_is_missing(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        TruePosePipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(OSError, match="model_index.json"):
        TruePosePipeline.from_pretrained(tmp_path)
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "model")
    os.remove(tmp_path / "model" / "pose_encoder" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(OSError, match="pose_encoder"):
        TruePosePipeline.from_pretrained(tmp_path / "model")


def test_unreachable_hub_says_how_to_use_a_local_folder():
    with pytest.raises(OSError, match="local-dir") as error:
        TruePosePipeline.from_pretrained("truepose-org/no-such-model")
    assert error.value.__cause__ is None


def test_guidance_scale_zero_is_the_unconditional_model(pipe, source, keypoints):
    first = run(pipe, source, keypoints, guidance_scale=0.0)
    np.testing.assert_allclose(run(pipe, make_source(seed=5), keypoints, guidance_scale=0.0), first, atol=1e-6)
    assert np.abs(run(pipe, source, keypoints, guidance_scale=1.0) - first).max() > 1e-4


def test_settings_can_turn_hpfa_and_caa_off(source, keypoints):
    pipe = tiny_pipeline(seed=0, randomize_new_layers=True)
    with_caa = run(pipe, source, keypoints)
    pipe.target_unet.set_truepose_settings(caa_top_k=0)
    caa_off = run(pipe, source, keypoints)
    assert np.abs(with_caa - caa_off).max() > 1e-4
    pipe.target_unet.set_truepose_settings(caa_top_k=2)
    for processor in pipe.target_unet.hpfa_processors.values():
        if hasattr(processor, "caa_to_out"):
            torch.nn.init.zeros_(processor.caa_to_out.weight)
            torch.nn.init.zeros_(processor.caa_to_out.bias)
    np.testing.assert_allclose(run(pipe, source, keypoints), caa_off, atol=1e-6)

    pipe.target_unet.set_truepose_settings(hpfa_sigma=1.0, hpfa_delta=0.0)
    parsing_maps, label_map = pipe.parse_sources([source[0]], source[1], "atr")
    reference, _ = pipe.encode_source([source[0]], parsing_maps, label_map, 64, 64, torch.device("cpu"))
    for layer in pipe.target_unet.prepare_reference(reference, (32, 32)).values():
        assert torch.equal(layer.log_weight, torch.zeros_like(layer.log_weight))
    with pytest.raises(ValueError, match="hpfa_sigma"):
        pipe.target_unet.set_truepose_settings(hpfa_sigma=0.0)


def test_from_stable_diffusion_copies_the_unet_into_both_nets(tmp_path, source, keypoints):
    from truepose.testing import tiny_components, tiny_unet

    parts = tiny_components(seed=0)
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "sd" / "unet")
    parts["vae"].save_pretrained(tmp_path / "sd" / "vae")
    parts["scheduler"].save_pretrained(tmp_path / "sd" / "scheduler")
    parts["image_encoder"].save_pretrained(tmp_path / "clip" / "image_encoder")
    parts["feature_extractor"].save_pretrained(tmp_path / "clip" / "image_encoder")

    pipe = TruePosePipeline.from_stable_diffusion(
        tmp_path / "sd", tmp_path / "clip", image_encoder_subfolder="image_encoder", hpfa_sigma=0.2
    )
    assert pipe.target_unet.config.hpfa_sigma == 0.2 and pipe.target_unet.config.region_embed_dim == 32
    plain = unet.state_dict()
    for net in (pipe.source_unet, pipe.target_unet):
        state = net.state_dict()
        assert all(torch.equal(state[key], value) for key, value in plain.items())
    # untrained: TargetNet without a source is exactly the SD UNet
    sample, embeds = torch.randn(1, 4, 32, 32), torch.randn(1, 1, 32)
    torch.testing.assert_close(pipe.target_unet(sample, 5, embeds).sample, unet(sample, 5, embeds).sample)
    pipe.set_progress_bar_config(disable=True)
    assert run(pipe, source, keypoints).shape == (1, 64, 64, 3)


def test_autoencoder_tiny_works_as_the_vae(source, keypoints):
    from diffusers import AutoencoderTiny

    from truepose.testing import tiny_components

    parts = tiny_components(seed=0)
    parts["vae"] = AutoencoderTiny(
        encoder_block_out_channels=(16, 16),
        decoder_block_out_channels=(16, 16),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    )
    pipe = TruePosePipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 2
    assert run(pipe, source, keypoints).shape == (1, 64, 64, 3)


@pytest.mark.parametrize("blocks, factor", [(1, 1), (2, 2), (3, 4), (4, 8)])
def test_vae_spatial_compression_halves_per_block_after_the_first(blocks, factor):
    """SD's 4-block VAE: 8 pixels per latent; AutoencoderTiny reads the same field."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from truepose.pipeline import vae_spatial_compression

    channels = (8,) * blocks
    kl = AutoencoderKL(block_out_channels=channels, down_block_types=("DownEncoderBlock2D",) * blocks,
                       up_block_types=("UpDecoderBlock2D",) * blocks, norm_num_groups=4)  # fmt: skip
    tiny = AutoencoderTiny(encoder_block_out_channels=channels, decoder_block_out_channels=channels,
                           num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks)  # fmt: skip
    assert vae_spatial_compression(kl) == vae_spatial_compression(tiny) == factor
    with torch.no_grad():
        assert kl.encode(torch.zeros(1, 3, 16, 16)).latent_dist.mean.shape[-1] == 16 // factor  # what it means
        assert tiny.encode(torch.zeros(1, 3, 16, 16)).latents.shape[-1] == 16 // factor


def test_autoencoder_dc_works_as_the_vae(tmp_path, source, keypoints):
    from diffusers import AutoencoderDC

    from truepose.testing import tiny_components

    parts = tiny_components(seed=0)
    parts["vae"] = AutoencoderDC(
        latent_channels=4,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=(8, 16),
        decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), ()),
        decoder_qkv_multiscales=((), ()),
        scaling_factor=0.5,
    )
    pipe = TruePosePipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 2
    latents = pipe.encode_source_latents([source[0]], 64, 64, "cpu")
    pixels = pipe.image_processor.preprocess(source[0], 64, 64)
    torch.testing.assert_close(latents, pipe.vae.encode(pixels).latent * 0.5)
    expected = run(pipe, source, keypoints)
    assert expected.shape == (1, 64, 64, 3)
    pipe.save_pretrained(tmp_path)
    reloaded = TruePosePipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert isinstance(reloaded.vae, AutoencoderDC)
    np.testing.assert_allclose(run(reloaded, source, keypoints), expected, atol=1e-6)
