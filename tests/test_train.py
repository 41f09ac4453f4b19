import json
import os

import pytest
import torch
from safetensors.torch import load_file

from truepose.testing import tiny_pipeline
from truepose.train import latest_checkpoint, main, make_batch


@pytest.fixture(scope="module")
def init_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "tiny"
    tiny_pipeline(seed=0).save_pretrained(path)
    return str(path)


def train_args(init_model, output_dir, steps, *extra):
    return [
        "--pretrained_model", init_model, "--output_dir", str(output_dir), "--dataset", "synthetic",
        "--num_pairs", "6", "--resolution", "64", "64", "--train_batch_size", "2", "--max_train_steps", str(steps),
        "--checkpointing_steps", "2", "--learning_rate", "1e-3", "--report_to", "none", *extra,
    ]  # fmt: skip


def weights(folder):
    return {
        f"{name}.{key}": value
        for name in ("target_unet", "source_unet", "pose_encoder")
        for key, value in load_file(os.path.join(folder, name, "diffusion_pytorch_model.safetensors")).items()
    }


def test_resumed_run_equals_uninterrupted_run(init_model, tmp_path):
    """4 steps == 2 steps + resume + 2 steps (an epoch is 3 steps, so the resume also crosses an epoch)."""
    assert main(train_args(init_model, tmp_path / "straight", 4)) == 0
    assert main(train_args(init_model, tmp_path / "resumed", 2)) == 0
    assert main(train_args(init_model, tmp_path / "resumed", 4, "--resume_from_checkpoint", "latest")) == 0
    straight, resumed, initial = weights(tmp_path / "straight"), weights(tmp_path / "resumed"), weights(init_model)
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)
    changed = [key for key in straight if not torch.equal(straight[key], initial[key])]
    assert any(".processor.caa_to_out" in key for key in changed), "CAA weights must be trained"
    assert any(key.startswith("pose_encoder.conv_out") for key in changed)
    assert any(key.startswith("source_unet.") for key in changed)
    assert json.loads((tmp_path / "resumed" / "checkpoint-4" / "truepose_step.json").read_text()) == {"step": 4}
    assert (tmp_path / "resumed" / "README.md").read_text().count("TruePose") >= 1


def test_partial_checkpoints_are_never_resumed_from(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / ".partial-checkpoint-4").mkdir()
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert latest_checkpoint(str(tmp_path / "missing")) is None


def test_training_needs_parsing_maps():
    from truepose.data import SyntheticPoseDataset
    from truepose.data.common import collate_pairs

    items = collate_pairs([SyntheticPoseDataset(1, image_size=(64, 64))[0]])
    assert make_batch(items).pose_images[0].size == (64, 64)
    items["source_parsing"] = [None]
    with pytest.raises(ValueError, match="parsing"):
        make_batch(items)


def test_bad_arguments_are_refused(init_model, tmp_path):
    with pytest.raises(SystemExit):
        main(train_args(init_model, tmp_path, 2, "--dataset", "deepfashion"))
    with pytest.raises(ValueError, match="does not exist"):
        main(train_args(init_model, tmp_path, 2, "--resume_from_checkpoint", str(tmp_path / "nope")))


def test_lora_training_saves_merged_weights(init_model, tmp_path):
    from truepose import TruePosePipeline

    assert main(train_args(init_model, tmp_path, 2, "--lora_rank", "4")) == 0
    trained, initial = weights(tmp_path), weights(init_model)
    assert trained.keys() == initial.keys()  # no adapter keys left
    changed = {key for key in trained if not torch.equal(trained[key], initial[key])}
    assert any(key.endswith("attn1.to_q.weight") for key in changed)
    assert any(".processor.caa_to_out" in key for key in changed)
    assert not any("resnets" in key or "conv_in" in key for key in changed if "unet" in key)
    TruePosePipeline.from_pretrained(tmp_path)
