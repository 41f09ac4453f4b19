"""Saving and loading: round trips, .bin and variant checkpoints, dtype arguments, diffusers' own entry point,
missing or broken checkpoints and config fields named, the offline Hub advice, quiet loads, other VAEs."""

import inspect
import json
import logging
import os
import re
import shutil
import typing

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from pipeline_calls import generate_person, run
from transformers.utils import logging as transformers_logging

import truepose
import truepose.checkpoint as checkpoint_module
from truepose import TruePosePipeline
from truepose.testing import tiny_pipeline


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The `pipe` fixture's pipeline (same seed, same weights), saved once for the module."""
    folder = tmp_path_factory.mktemp("saved") / "truepose"
    tiny_pipeline(seed=0, randomize_new_layers=True).save_pretrained(folder)
    return folder


def break_copy(saved, folder, change) -> str:
    """A copy of the saved checkpoint in `folder`, broken by `change(folder)`; returns its path as a string."""
    shutil.copytree(saved, folder)
    change(folder)
    return str(folder)


def edit_json(name: str, **entries):
    """A `change` for `break_copy`: sets `entries` in the checkpoint's JSON file `name` ("drop" deletes an entry)."""

    def change(folder):
        content = {**json.loads((folder / name).read_text()), **entries}
        (folder / name).write_text(json.dumps({k: v for k, v in content.items() if v != "drop"}))

    return change


def remove_config(component):
    def change(folder):
        (folder / component / "config.json").unlink()
        (folder / component / "diffusion_pytorch_model.safetensors.index.json").write_text("{}")  # not a config

    return change


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


def test_save_pretrained_passes_positional_arguments_on(tmp_path, pipe):
    pipe.save_pretrained(tmp_path, False)  # DiffusionPipeline.save_pretrained(save_directory, safe_serialization)
    assert (tmp_path / "target_unet" / "diffusion_pytorch_model.bin").is_file()


@pytest.mark.parametrize(
    "save_kwargs, load_kwargs, weight_file",
    [
        ({"safe_serialization": False}, {}, "diffusion_pytorch_model.bin"),
        ({"variant": "fp16"}, {"variant": "fp16"}, "diffusion_pytorch_model.fp16.safetensors"),
    ],
)
def test_bin_and_variant_checkpoints_load(tmp_path, pipe, save_kwargs, load_kwargs, weight_file):
    pipe.save_pretrained(tmp_path, **save_kwargs)
    assert (tmp_path / "target_unet" / weight_file).is_file()
    assert not list((tmp_path / "target_unet").glob("diffusion_pytorch_model.safetensors"))
    loaded = TruePosePipeline.from_pretrained(tmp_path, **load_kwargs)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate_person(loaded), generate_person(pipe), atol=1e-6)


def test_dtype_and_per_component_dtype_dict(saved):
    half = TruePosePipeline.from_pretrained(saved, dtype=torch.float16)
    assert {half.vae.dtype, half.source_unet.dtype, half.target_unet.dtype, half.image_encoder.dtype} == {
        torch.float16
    }
    mixed = TruePosePipeline.from_pretrained(saved, dtype={"target_unet": torch.float16, "default": torch.float32})
    assert mixed.target_unet.dtype == torch.float16
    assert mixed.source_unet.dtype == mixed.vae.dtype == mixed.pose_encoder.dtype == torch.float32


def test_diffusion_pipeline_from_pretrained_loads_truepose(saved, pipe):
    loaded = DiffusionPipeline.from_pretrained(saved, custom_pipeline=truepose.CUSTOM_PIPELINE, trust_remote_code=True)
    assert type(loaded) is TruePosePipeline
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate_person(loaded), generate_person(pipe), atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code"):  # diffusers' rule for custom code, unchanged
        DiffusionPipeline.from_pretrained(saved, custom_pipeline=truepose.CUSTOM_PIPELINE)


def test_safetensors_are_looked_for_only_where_there_are_some(tmp_path, pipe, recorded_logs):
    pipe.save_pretrained(tmp_path / "safetensors")
    pipe.save_pretrained(tmp_path / "bin", safe_serialization=False)  # transformers still writes safetensors
    assert checkpoint_module._check_checkpoint_folder(str(tmp_path / "safetensors")) is True
    assert checkpoint_module._check_checkpoint_folder(str(tmp_path / "bin")) is True
    encoder_folder = tmp_path / "bin" / "image_encoder"
    torch.save(pipe.image_encoder.state_dict(), encoder_folder / "pytorch_model.bin")
    (encoder_folder / "model.safetensors").unlink()
    assert checkpoint_module._check_checkpoint_folder(str(tmp_path / "bin")) is False
    with recorded_logs("diffusers") as records:  # no "error ... no file named *.safetensors", "unsafe serialization"
        loaded = TruePosePipeline.from_pretrained(tmp_path / "bin")
    assert records == []
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate_person(loaded), generate_person(pipe), atol=1e-6)


def test_missing_and_incomplete_checkpoints_say_what_is_missing(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        TruePosePipeline.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(OSError, match="model_index.json"):
        TruePosePipeline.from_pretrained(tmp_path)
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "model")
    os.remove(tmp_path / "model" / "pose_encoder" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(OSError, match="pose_encoder"):
        TruePosePipeline.from_pretrained(tmp_path / "model")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            edit_json("model_index.json", pose_encoder="drop"),
            "is incomplete: model_index.json has no `pose_encoder` component.",
        ),
        (
            edit_json("model_index.json", pose_encoder=[None, None]),
            "is incomplete: model_index.json has no `pose_encoder` component.",
        ),
        (
            edit_json("model_index.json", pose_encoder=["diffusers", None]),
            "is incomplete: model_index.json has no `pose_encoder` component.",
        ),
        (
            edit_json("model_index.json", pose_encoder=["truepose"]),
            "is incomplete: model_index.json has no `pose_encoder` component.",
        ),
        (
            lambda folder: shutil.rmtree(folder / "vae"),
            f"is incomplete: missing {os.path.join('vae', 'config.json')}.",
        ),
        (remove_config("vae"), f"is incomplete: missing {os.path.join('vae', 'config.json')}."),
    ],
    ids=["no entry", "null entry", "null class", "short entry", "no folder", "only a weight index"],
)
def test_an_incomplete_checkpoint_names_what_it_lacks(tmp_path, saved, change, message):
    path = break_copy(saved, tmp_path / "broken", change)
    with pytest.raises(OSError, match=f"^{re.escape(f'Checkpoint {path!r} {message}')}$"):
        TruePosePipeline.from_pretrained(path)


def test_a_model_index_that_is_not_an_object_is_named(tmp_path, saved):
    path = break_copy(saved, tmp_path / "broken", lambda folder: (folder / "model_index.json").write_text("[]"))
    expected = f"{os.path.join(path, 'model_index.json')} must hold a JSON object, got list."
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        TruePosePipeline.from_pretrained(path)


def test_invalid_model_index_names_the_file(tmp_path, saved):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    index = folder / "model_index.json"
    index.write_text(index.read_text()[:-20])
    with pytest.raises(ValueError, match=r"model_index\.json is not valid JSON"):
        TruePosePipeline.from_pretrained(folder)


@pytest.mark.parametrize(
    "component, field, value, expected",
    [
        ("target_unet", "block_out_channels", "32, 64", "list"),
        ("target_unet", "hpfa_sigma", "0.3", "float"),
        ("vae", "scaling_factor", [0.18], "float"),
        ("scheduler", "num_train_timesteps", 1000.5, "int"),
    ],
)
def test_a_config_field_of_the_wrong_type_is_named(tmp_path, saved, component, field, value, expected):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    config_file = next(f for f in (folder / component).iterdir() if f.suffix == ".json")
    config = json.loads(config_file.read_text())
    assert field in config
    config[field] = value
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{component}.*`{field}` must be .*{expected}"):
        TruePosePipeline.from_pretrained(folder)


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "sample_size",
            "32",
            "field `sample_size` must be int or list or null (like its default None), got str '32'.",
        ),
        ("hpfa_sigma", None, "field `hpfa_sigma` must be float or int (like its default 0.3), got NoneType None."),
        ("block_out_channels", 64, "field `block_out_channels` must be list (like its default (320, 640, 1280, "),
    ],
)
def test_config_type_errors_name_the_types_and_the_default(tmp_path, saved, field, value, message):
    """`X | None` fields take null (and nothing else of the wrong type); fields with a non-null default do not."""
    path = break_copy(saved, tmp_path / "copy", edit_json("target_unet/config.json", **{field: value}))
    config_file = os.path.join(path, "target_unet", "config.json")
    with pytest.raises(ValueError, match=f"^{re.escape(f'{config_file}: {message}')}"):
        TruePosePipeline.from_pretrained(path)


def test_a_field_missing_from_a_config_takes_its_default(tmp_path, saved):
    path = break_copy(
        saved, tmp_path / "copy", edit_json("target_unet/config.json", hpfa_sigma="drop", sample_size="drop")
    )
    loaded = TruePosePipeline.from_pretrained(path)
    assert loaded.target_unet.config.hpfa_sigma == 0.3 and loaded.target_unet.config.sample_size is None


def test_only_diffusers_and_truepose_config_classes_are_checked(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"block_out_channels": "64", "hidden_size": "64"}))
    for library, class_name in [("transformers", "CLIPVisionConfig"), ("diffusers", "NoSuchModel"),
                                ("truepose.models", "CAAAttnProcessor")]:  # fmt: skip
        checkpoint_module._check_config_types(str(config_file), library, class_name)  # not checked, nothing raised
    with pytest.raises(ValueError, match="field `block_out_channels` must be list"):
        checkpoint_module._check_config_types(str(config_file), "diffusers", "UNet2DConditionModel")


@pytest.mark.parametrize(
    "annotation, default, expected",
    [
        (inspect.Parameter.empty, 3, (int,)),  # unannotated: the default's type
        (inspect.Parameter.empty, None, None),  # unannotated, default None: cannot tell
        (inspect.Parameter.empty, inspect.Parameter.empty, None),
        ("int", 3, None),  # a string annotation is not evaluated
        (float, 0.5, (int, float)),
        (bool, True, (bool,)),
        (tuple[int, ...], (1,), (list,)),
        (dict, {}, None),
        (type(None), None, (type(None),)),
        (int | None, None, (int, type(None))),
        (typing.Optional[str], None, (str, type(None))),  # noqa: UP045 (typing.Union, not types.UnionType)
        (int | dict, 0, None),  # one member of unknown type: the field is not checked
    ],
)
def test_json_types_of_a_config_field(annotation, default, expected):
    assert checkpoint_module._json_types(annotation, default) == expected


def test_a_missing_folder_or_unreachable_hub_id_gives_the_whole_advice():
    with pytest.raises(OSError, match=r"^No TruePose checkpoint folder at '\./nowhere': the folder does not exist\.$"):
        TruePosePipeline.from_pretrained("./nowhere")  # looks like a Hub id, but a relative path
    advice = (
        "Could not load the TruePose checkpoint 'truepose-org/no-such-model' from the Hugging Face Hub (OSError). "
        "Without network access, download it elsewhere (`hf download truepose-org/no-such-model --local-dir "
        "truepose-model`), copy the folder here and pass its path: `TruePosePipeline.from_pretrained('truepose-model')`."
    )
    with pytest.raises(OSError, match=f"^{re.escape(advice)}$"):
        TruePosePipeline.from_pretrained("truepose-org/no-such-model")


def test_unreachable_hub_says_how_to_use_a_local_folder():
    with pytest.raises(OSError, match="local-dir") as error:
        TruePosePipeline.from_pretrained("truepose-org/no-such-model")
    assert error.value.__cause__ is None


def autoencoder_tiny_pipeline() -> TruePosePipeline:
    """A tiny pipeline whose VAE is an `AutoencoderTiny` (2x down, 4 latent channels)."""
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
    return pipe


def test_loading_hides_only_the_autoencoder_tiny_config_note(tmp_path, recorded_logs):
    """diffusers notes that an AutoencoderTiny config holds `block_out_channels` (which the class registers itself);
    that note is dropped, other config notes (an unexpected field) still reach the user."""
    autoencoder_tiny_pipeline().save_pretrained(tmp_path / "saved")
    edit = edit_json("pose_encoder/config.json", unexpected_field=1)
    path = break_copy(tmp_path / "saved", tmp_path / "model", edit)
    config_logger = logging.getLogger("diffusers.configuration_utils")
    filters_before = list(config_logger.filters)
    transformers_logging.enable_progress_bar()
    with recorded_logs("diffusers.configuration_utils") as records:
        TruePosePipeline.from_pretrained(path)
    messages = [record.getMessage() for record in records]
    assert len(messages) == 1 and "{'unexpected_field': 1} were passed to PoseEncoder" in messages[0]
    # the load leaves nothing behind: no filter on diffusers' logger, transformers' bars on as they were
    assert config_logger.filters == filters_before and transformers_logging.is_progress_bar_enabled()


def test_autoencoder_tiny_works_as_the_vae(source, keypoints):
    pipe = autoencoder_tiny_pipeline()
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
