"""Plain `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` on every folder `save_pretrained` writes
(diffusers' custom-pipeline convention), TruePose's own loading of both the new and the old format, and optional
components attached after loading."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

import truepose
from truepose import TruePoseAnimationPipeline, TruePosePipeline
from truepose.checkpoint import PIPELINE_MODULE
from truepose.testing import TINY_KEYPOINTS, tiny_parser, tiny_person


def one_step(pipe):
    pipe.set_progress_bar_config(disable=True)
    image, parsing = tiny_person(0)
    return pipe(
        image, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=1,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images  # fmt: skip


@pytest.fixture
def saved(tmp_path, pipe):
    pipe.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def test_plain_diffusion_pipeline_loads_a_saved_folder(saved, pipe):
    index = json.loads(Path(saved, "model_index.json").read_text())
    assert index["_class_name"] == [PIPELINE_MODULE, "TruePosePipeline"]
    assert os.path.isfile(os.path.join(saved, f"{PIPELINE_MODULE}.py"))
    loaded = DiffusionPipeline.from_pretrained(saved, trust_remote_code=True)
    assert type(loaded) is TruePosePipeline
    own = TruePosePipeline.from_pretrained(saved)
    np.testing.assert_array_equal(one_step(loaded), one_step(own))
    np.testing.assert_allclose(one_step(loaded), one_step(pipe), atol=1e-6)


def test_without_trust_remote_code_diffusers_says_what_to_pass(saved):
    with pytest.raises(ValueError, match=r"(?s)custom code in pipeline_truepose\.py.*Pass `trust_remote_code=True`"):
        DiffusionPipeline.from_pretrained(saved)


def test_the_saved_class_is_the_one_loaded(saved, tmp_path):
    TruePoseAnimationPipeline.from_pretrained(saved).save_pretrained(tmp_path / "animation")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "animation", trust_remote_code=True)
    assert type(loaded) is TruePoseAnimationPipeline
    assert type(TruePosePipeline.from_pretrained(tmp_path / "animation")) is TruePosePipeline


def test_a_folder_saved_before_the_pipeline_file_keeps_loading(saved, pipe):
    """The old format (`_class_name: "TruePosePipeline"`, no pipeline file) loads through TruePosePipeline and
    through diffusers with `custom_pipeline=truepose.CUSTOM_PIPELINE`."""
    os.remove(os.path.join(saved, f"{PIPELINE_MODULE}.py"))
    index_file = Path(saved, "model_index.json")
    index = json.loads(index_file.read_text())
    index["_class_name"] = "TruePosePipeline"
    index_file.write_text(json.dumps(index))
    expected = one_step(pipe)
    np.testing.assert_allclose(one_step(TruePosePipeline.from_pretrained(saved)), expected, atol=1e-6)
    loaded = DiffusionPipeline.from_pretrained(saved, custom_pipeline=truepose.CUSTOM_PIPELINE, trust_remote_code=True)
    np.testing.assert_allclose(one_step(loaded), expected, atol=1e-6)


def test_the_shipped_model_loads_with_plain_diffusers():
    from truepose.demo import SHIPPED_MODEL

    assert type(DiffusionPipeline.from_pretrained(SHIPPED_MODEL, trust_remote_code=True)) is TruePosePipeline


def test_a_parser_attached_after_loading_is_saved(saved, tmp_path):
    loaded = TruePosePipeline.from_pretrained(saved)
    loaded.parser, loaded.parser_processor = tiny_parser(0)
    loaded.save_pretrained(tmp_path / "with-parser")
    index = json.loads((tmp_path / "with-parser" / "model_index.json").read_text())
    assert index["parser"] == ["transformers", "SegformerForSemanticSegmentation"]
    reloaded = DiffusionPipeline.from_pretrained(tmp_path / "with-parser", trust_remote_code=True)
    assert type(reloaded.parser).__name__ == "SegformerForSemanticSegmentation"
    image, _ = tiny_person(0)
    reloaded.set_progress_bar_config(disable=True)
    reloaded(image, TINY_KEYPOINTS, num_inference_steps=1)  # parses the source itself


def test_placeholder_ids_are_not_offered_for_download():
    with pytest.raises(OSError, match=r"'org/truepose'.*placeholder id.*no trained real-person") as info:
        TruePosePipeline.from_pretrained("org/truepose")
    assert "hf download" not in str(info.value)
