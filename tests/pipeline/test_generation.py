"""What a call returns: the image's size and type, determinism, batches, `num_images_per_prompt`, one pose for
many sources, no state kept between calls, the HPFA/CAA settings, argument checks and the docstring example."""

import doctest
import re

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from pipeline_calls import FEW_STEPS, STEPS, generate_person, run

from truepose import TruePosePipeline
from truepose.models import CAAAttnProcessor, HPFAAttnProcessor
from truepose.models.target_net import _REFERENCE_BANK
from truepose.testing import tiny_person, tiny_pipeline
from truepose.testing import tiny_person as make_source


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
    # own processors, and no bank is left set
    assert all(not hasattr(p, "reference") for p in pipe.target_unet.truepose_processors.values())
    assert all(type(p) is AttnProcessor2_0 for p in pipe.source_unet.attn_processors.values())
    assert _REFERENCE_BANK.get() is None


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


def test_one_pose_for_many_sources_is_used_for_each(pipe, keypoints):
    people = [tiny_person(0), tiny_person(1)]
    latents = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    kwargs = {"num_inference_steps": FEW_STEPS, "output_type": "latent"}
    together = pipe([p[0] for p in people], keypoints, source_parsing=[p[1] for p in people], latents=latents,
                    **kwargs).images  # fmt: skip
    for i, (image, parsing) in enumerate(people):
        alone = pipe(image, keypoints, source_parsing=parsing, latents=latents[i : i + 1], **kwargs).images
        torch.testing.assert_close(together[i : i + 1], alone)


def test_hpfa_settings_change_the_output(source, keypoints):
    base = run(tiny_pipeline(seed=0, randomize_new_layers=True), source, keypoints)
    plain = run(tiny_pipeline(seed=0, randomize_new_layers=True, hpfa_sigma=1.0, hpfa_delta=0.0), source, keypoints)
    assert np.abs(base - plain).max() > 1e-4


def test_settings_can_turn_hpfa_and_caa_off(source, keypoints):
    pipe = tiny_pipeline(seed=0, randomize_new_layers=True)
    with_caa = run(pipe, source, keypoints)
    pipe.target_unet.set_truepose_settings(caa_top_k=0)
    caa_off = run(pipe, source, keypoints)
    assert np.abs(with_caa - caa_off).max() > 1e-4
    pipe.target_unet.set_truepose_settings(caa_top_k=2)
    for processor in pipe.target_unet.truepose_processors.values():
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


def test_set_default_attn_processor_keeps_truepose_working():
    pipe = tiny_pipeline(seed=0, randomize_new_layers=True)
    expected = generate_person(pipe)
    caa_weights = {k: v.clone() for k, v in pipe.target_unet.state_dict().items() if ".processor." in k}
    processors = pipe.target_unet.truepose_processors
    assert any(isinstance(p, CAAAttnProcessor) for p in processors.values())

    pipe.target_unet.set_default_attn_processor()
    pipe.source_unet.set_default_attn_processor()

    assert pipe.target_unet.truepose_processors == processors  # the same processor objects, so the same CAA weights
    state = pipe.target_unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in caa_weights.items())
    cross = [p for name, p in pipe.target_unet.attn_processors.items() if name.endswith("attn2.processor")]
    assert cross and all(isinstance(p, AttnProcessor) for p in cross)
    # AttnProcessor (explicit softmax) instead of SDPA on the cross-attention and in SourceNet: same numbers
    np.testing.assert_allclose(generate_person(pipe), expected, atol=1e-5)


def test_set_default_attn_processor_restores_replaced_truepose_processors():
    pipe = tiny_pipeline(seed=0)  # CAA zero-initialised: a new CAA processor is the same function
    expected = generate_person(pipe)
    pipe.target_unet.set_attn_processor(AttnProcessor2_0())
    assert not pipe.target_unet.truepose_processors
    pipe.target_unet.set_default_attn_processor()
    processors = pipe.target_unet.truepose_processors
    assert len(processors) == sum(name.endswith("attn1.processor") for name in pipe.target_unet.attn_processors)
    assert {type(p) for p in processors.values()} == {HPFAAttnProcessor, CAAAttnProcessor}
    np.testing.assert_allclose(generate_person(pipe), expected, atol=1e-5)


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
        pipe(source[0], keypoints, source_parsing=source[1], num_inference_steps=FEW_STEPS, **kwargs)


def test_example_docstring_runs_with_the_shipped_model():
    docstring = TruePosePipeline.__call__.__doc__
    assert ">>> image = pipe(" in docstring  # @replace_example_docstring filled the "Examples:" section
    test = doctest.DocTestParser().get_doctest(docstring, {}, "TruePosePipeline.__call__", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=lambda text: pytest.fail(text))
    assert result.attempted >= 7 and result.failed == 0
