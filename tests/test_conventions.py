"""TruePosePipeline behaves like any diffusers pipeline: attention-processor resets, checkpoint formats (.bin,
variants), dtype arguments, diffusers' own entry point, the docstring example, interrupt, callback objects and
prepare_pose; broken checkpoint files name the file and field."""

import contextlib
import doctest
import inspect
import json
import logging
import os
import re
import shutil
import typing
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from transformers.utils import logging as transformers_logging

import truepose
import truepose.checkpoint as checkpoint_module
from truepose import TruePosePipeline
from truepose.conditioning.pose import draw_skeleton, rescale_keypoints
from truepose.models import CAAAttnProcessor, HPFAAttnProcessor
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

STEPS = 3


def generate(pipe, seed=0, **kwargs):
    image, parsing = tiny_person(0)
    kwargs.setdefault("output_type", "np")
    return pipe(
        image, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(seed), **kwargs,
    ).images  # fmt: skip


@contextlib.contextmanager
def recorded_logs(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records of warnings and above that logger `name` (and those below it) emit inside the block."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger(name).addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0, randomize_new_layers=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, pipe):
    folder = tmp_path_factory.mktemp("saved") / "truepose"
    pipe.save_pretrained(folder)
    return folder


def test_set_default_attn_processor_keeps_truepose_working():
    pipe = tiny_pipeline(seed=0, randomize_new_layers=True)
    expected = generate(pipe)
    caa_weights = {k: v.clone() for k, v in pipe.target_unet.state_dict().items() if ".processor." in k}
    processors = pipe.target_unet.hpfa_processors
    assert any(isinstance(p, CAAAttnProcessor) for p in processors.values())

    pipe.target_unet.set_default_attn_processor()
    pipe.source_unet.set_default_attn_processor()

    assert pipe.target_unet.hpfa_processors == processors  # the same processor objects, so the same CAA weights
    state = pipe.target_unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in caa_weights.items())
    cross = [p for name, p in pipe.target_unet.attn_processors.items() if name.endswith("attn2.processor")]
    assert cross and all(isinstance(p, AttnProcessor) for p in cross)
    # AttnProcessor (explicit softmax) instead of SDPA on the cross-attention and in SourceNet: same numbers
    np.testing.assert_allclose(generate(pipe), expected, atol=1e-5)


def test_set_default_attn_processor_restores_replaced_truepose_processors():
    pipe = tiny_pipeline(seed=0)  # CAA zero-initialised: a new CAA processor is the same function
    expected = generate(pipe)
    pipe.target_unet.set_attn_processor(AttnProcessor2_0())
    assert not pipe.target_unet.hpfa_processors
    pipe.target_unet.set_default_attn_processor()
    processors = pipe.target_unet.hpfa_processors
    assert len(processors) == sum(name.endswith("attn1.processor") for name in pipe.target_unet.attn_processors)
    assert {type(p) for p in processors.values()} == {HPFAAttnProcessor, CAAAttnProcessor}
    np.testing.assert_allclose(generate(pipe), expected, atol=1e-5)


def test_a_float16_image_encoder_gives_float16_embeddings_close_to_float32():
    pipe = tiny_pipeline(seed=0)
    source, _ = tiny_person(0)
    full = pipe.encode_image([source], torch.device("cpu"))
    pipe.image_encoder.to(torch.float16)
    half = pipe.encode_image([source], torch.device("cpu"))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, atol=2e-2, rtol=2e-2)


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
    np.testing.assert_allclose(generate(loaded), generate(pipe), atol=1e-6)


def test_dtype_and_per_component_dtype_dict(saved):
    half = TruePosePipeline.from_pretrained(saved, dtype=torch.float16)
    assert {half.vae.dtype, half.source_unet.dtype, half.target_unet.dtype, half.image_encoder.dtype} == {
        torch.float16
    }
    mixed = TruePosePipeline.from_pretrained(saved, dtype={"target_unet": torch.float16, "default": torch.float32})
    assert mixed.target_unet.dtype == torch.float16
    assert mixed.source_unet.dtype == mixed.vae.dtype == mixed.pose_encoder.dtype == torch.float32


def test_to_casts_by_keyword_and_keeps_float16_on_cpu_quiet():
    """`to` passes every argument on to diffusers and silences its "float16 cannot run on cpu" warning (untrue for
    TruePose) unless the caller asks for it."""
    pipe = tiny_pipeline(seed=0)
    with recorded_logs("diffusers.pipelines.pipeline_utils") as records:  # where DiffusionPipeline.to logs
        pipe.to(dtype=torch.float16)
        pipe.to("cpu")
        assert pipe.target_unet.dtype == pipe.source_unet.dtype == torch.float16 and records == []
        pipe.to("cpu", silence_dtype_warnings=False)
    assert records and "cannot run with `cpu` device" in records[0].getMessage()


def test_diffusion_pipeline_from_pretrained_loads_truepose(saved, pipe):
    loaded = DiffusionPipeline.from_pretrained(saved, custom_pipeline=truepose.CUSTOM_PIPELINE, trust_remote_code=True)
    assert type(loaded) is TruePosePipeline
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(generate(loaded), generate(pipe), atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code"):  # diffusers' rule for custom code, unchanged
        DiffusionPipeline.from_pretrained(saved, custom_pipeline=truepose.CUSTOM_PIPELINE)


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


def test_safetensors_are_looked_for_only_where_there_are_some(tmp_path, pipe):
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
    np.testing.assert_allclose(generate(loaded), generate(pipe), atol=1e-6)


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


def test_loading_hides_only_the_autoencoder_tiny_config_note(tmp_path):
    """diffusers notes that an AutoencoderTiny config holds `block_out_channels` (which the class registers itself);
    that note is dropped, other config notes (an unexpected field) still reach the user."""
    from truepose.demo import SHIPPED_MODEL

    path = break_copy(SHIPPED_MODEL, tmp_path / "model", edit_json("pose_encoder/config.json", unexpected_field=1))
    config_logger = logging.getLogger("diffusers.configuration_utils")
    filters_before = list(config_logger.filters)
    transformers_logging.enable_progress_bar()
    with recorded_logs("diffusers.configuration_utils") as records:
        TruePosePipeline.from_pretrained(path)
    messages = [record.getMessage() for record in records]
    assert len(messages) == 1 and "{'unexpected_field': 1} were passed to PoseEncoder" in messages[0]
    # the load leaves nothing behind: no filter on diffusers' logger, transformers' bars on as they were
    assert config_logger.filters == filters_before and transformers_logging.is_progress_bar_enabled()


def test_example_docstring_runs_with_the_shipped_model():
    docstring = TruePosePipeline.__call__.__doc__
    assert ">>> image = pipe(" in docstring  # @replace_example_docstring filled the "Examples:" section
    test = doctest.DocTestParser().get_doctest(docstring, {}, "TruePosePipeline.__call__", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=lambda text: pytest.fail(text))
    assert result.attempted >= 7 and result.failed == 0


def test_interrupt_skips_the_remaining_steps(pipe):
    calls = []
    handle = pipe.target_unet.register_forward_pre_hook(lambda module, args: calls.append(1))

    def stop_after_step_1(p, step, timestep, tensors):
        assert p.interrupt is False
        if step == 1:
            p._interrupt = True
        return tensors

    try:
        generate(pipe, callback_on_step_end=stop_after_step_1, output_type="latent")
    finally:
        handle.remove()
    assert len(calls) == 2 and pipe.interrupt
    generate(pipe)  # the next call starts uninterrupted
    assert not pipe.interrupt


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


def test_pipeline_callback_objects(pipe):
    record = RecordSteps()
    generate(pipe, callback_on_step_end=record)
    assert record.steps == list(range(STEPS))
    record, zero = RecordSteps(), ZeroLatentsAtTheEnd()
    latents = generate(pipe, callback_on_step_end=MultiPipelineCallbacks([record, zero]), output_type="latent")
    assert record.steps == list(range(STEPS)) and torch.count_nonzero(latents) == 0


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
