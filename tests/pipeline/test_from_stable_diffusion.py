"""`TruePosePipeline.from_stable_diffusion` on tiny replicas of the two real layouts it starts from.

The replicas use the file names, folder names and `model_index.json` entries of ``stable-diffusion-v1-5`` and of
``lambdalabs/sd-image-variations-diffusers`` (PNDM scheduler config as SD ships it; the image-variation repository's
CLIP preprocessing lives in ``feature_extractor/``, beside ``image_encoder/``)."""

import json
import re
import warnings

import pytest
import torch
from diffusers import AutoencoderKL
from pipeline_calls import run

from truepose import TruePosePipeline
from truepose.testing import TINY_KEYPOINTS, tiny_components, tiny_person, tiny_unet

SD_SCHEDULER = {  # stable-diffusion-v1-5/scheduler/scheduler_config.json
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}


SAFETY = ["stable_diffusion", "StableDiffusionSafetyChecker"]


def save_common(root, components, unet):
    components["vae"].save_pretrained(root / "vae")
    unet.save_pretrained(root / "unet")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD_SCHEDULER))
    components["feature_extractor"].save_pretrained(root / "feature_extractor")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    components = tiny_components(seed=0)
    torch.manual_seed(1)
    unet = tiny_unet()
    sd = root / "stable-diffusion-v1-5"
    save_common(sd, components, unet)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.6.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": SAFETY,
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (sd / "model_index.json").write_text(json.dumps(index))

    variations = root / "sd-image-variations-diffusers"
    save_common(variations, components, unet)
    components["image_encoder"].save_pretrained(variations / "image_encoder")
    index = {
        "_class_name": "StableDiffusionImageVariationPipeline",
        "_diffusers_version": "0.8.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "safety_checker": SAFETY,
        "scheduler": ["diffusers", "PNDMScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (variations / "model_index.json").write_text(json.dumps(index))
    return sd, variations, components, unet


def check_pipeline(pipe, components, unet):
    for name, value in unet.state_dict().items():
        torch.testing.assert_close(pipe.source_unet.state_dict()[name], value, rtol=0, atol=0)
        torch.testing.assert_close(pipe.target_unet.state_dict()[name], value, rtol=0, atol=0)
    for name, value in components["image_encoder"].state_dict().items():
        torch.testing.assert_close(pipe.image_encoder.state_dict()[name], value, rtol=0, atol=0)
    assert pipe.feature_extractor.crop_size == components["feature_extractor"].crop_size
    assert pipe.target_unet.config.region_embed_dim == components["image_encoder"].config.projection_dim
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.steps_offset == 1
    source, parsing = tiny_person()
    image = pipe(source, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(torch.from_numpy(image)).all()


def test_sd15_folder_with_image_variation_folder(replicas):
    """The documented call: SD-1.5 + the image-variation repository's `image_encoder/` (processor beside it)."""
    sd, variations, components, unet = replicas
    pipe = TruePosePipeline.from_stable_diffusion(sd, variations, image_encoder_subfolder="image_encoder")
    check_pipeline(pipe, components, unet)


def test_image_variation_folder_alone(replicas):
    sd, variations, components, unet = replicas
    check_pipeline(TruePosePipeline.from_stable_diffusion(variations), components, unet)


def test_clip_checkpoint_folder(replicas, tmp_path):
    """A CLIP checkpoint with its preprocessor_config.json at the root (the openai/clip-vit-large-patch14 form)."""
    sd, variations, components, unet = replicas
    components["image_encoder"].save_pretrained(tmp_path)
    components["feature_extractor"].save_pretrained(tmp_path)
    check_pipeline(TruePosePipeline.from_stable_diffusion(sd, tmp_path), components, unet)


def test_missing_pieces_and_offline_hub_ids_give_clean_errors(replicas):
    sd, variations, _, _ = replicas
    with pytest.raises(OSError):
        TruePosePipeline.from_stable_diffusion(sd)  # an SD-1.5 folder has no image encoder
    hub_ids = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "lambdalabs/sd-image-variations-diffusers")
    advice = (
        "Without network access, download them elsewhere (`hf download <repo id> --local-dir <folder>`), copy the "
        "folders here and pass their paths."
    )
    with warnings.catch_warnings(record=True) as caught, pytest.raises(OSError) as offline:
        warnings.simplefilter("always")
        TruePosePipeline.from_stable_diffusion(*hub_ids)
    assert caught == []  # nothing printed before the error, not even the libraries' deprecation notes
    assert str(offline.value) == (
        f"Could not load SD-1.5 {hub_ids[0]!r} and the CLIP image encoder {hub_ids[1]!r} (OSError: {hub_ids[0]} does "
        f"not appear to have a file named config.json). {advice}"
    )
    with pytest.raises(OSError, match=re.escape(advice)):  # a local SD folder with a Hub id for CLIP: same advice
        TruePosePipeline.from_stable_diffusion(sd, hub_ids[1])


def test_a_cause_without_a_message_is_named_by_its_type(replicas, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr(AutoencoderKL, "from_pretrained", fail)
    with pytest.raises(
        OSError, match=r"^Could not load SD-1\.5 'org/sd' and the CLIP image encoder 'org/sd' \(OSError\)\. "
    ):
        TruePosePipeline.from_stable_diffusion("org/sd")


def test_a_tower_in_a_named_subfolder_and_the_default_pose_encoder(replicas, tmp_path):
    sd, variations, components, unet = replicas
    components["image_encoder"].save_pretrained(tmp_path / "clip")
    components["feature_extractor"].save_pretrained(tmp_path / "clip")
    pipe = TruePosePipeline.from_stable_diffusion(sd, tmp_path, image_encoder_subfolder="clip")
    check_pipeline(pipe, components, unet)
    assert pipe.vae_scale_factor == 2  # one downsampling in the tiny VAE: channels 16, then 32
    assert tuple(pipe.pose_encoder.config.block_out_channels) == (16, 32)


def test_dtype_applies_to_every_loaded_model(replicas):
    sd, variations, _, _ = replicas
    pipe = TruePosePipeline.from_stable_diffusion(variations, dtype=torch.float16)
    models = ("vae", "source_unet", "target_unet", "pose_encoder", "image_encoder")
    assert {name: getattr(pipe, name).dtype for name in models} == dict.fromkeys(models, torch.float16)


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
