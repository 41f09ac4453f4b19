import json
import os

import pytest
import torch
from training_checks import assert_same_training

from truepose.testing import tiny_training_args, trained_weights
from truepose.train import latest_checkpoint, main, make_batch, parse_args


def test_resumed_run_equals_uninterrupted_run(tiny_model, tmp_path):
    """4 steps == 2 steps + resume + 2 steps (an epoch is 3 steps, so the resume also crosses an epoch)."""
    assert main(tiny_training_args(tiny_model, tmp_path / "straight", 4)) == 0
    assert main(tiny_training_args(tiny_model, tmp_path / "resumed", 2)) == 0
    assert main(tiny_training_args(tiny_model, tmp_path / "resumed", 4, "--resume_from_checkpoint", "latest")) == 0
    straight, resumed, initial = (
        trained_weights(tmp_path / "straight"),
        trained_weights(tmp_path / "resumed"),
        trained_weights(tiny_model),
    )
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)
    changed = [key for key in straight if not torch.equal(straight[key], initial[key])]
    assert any(".processor.caa_to_out" in key for key in changed), "CAA weights must be trained"
    assert any(key.startswith("pose_encoder.conv_out") for key in changed)
    assert any(key.startswith("source_unet.") for key in changed)
    segment = {"processes": 1, "batch_size": 2, "accumulation": 1, "engine": "DDP"}
    assert json.loads((tmp_path / "resumed" / "checkpoint-4" / "truepose_step.json").read_text()) == {
        "step": 4,
        "segments": [{"first_step": 0, "last_step": 2, **segment}, {"first_step": 2, "last_step": 4, **segment}],
    }
    card = (tmp_path / "resumed" / "README.md").read_text()
    assert "- Steps: 4 (" in card
    assert "  - steps 0-2: 1 process x batch 2 x 1 accumulation (DDP)\n" in card
    assert "  - steps 2-4: 1 process x batch 2 x 1 accumulation (DDP)\n" in card
    assert str(tmp_path) not in card and 'from_pretrained("path/to/resumed")' in card  # no path of this machine
    assert f"local pipeline `{os.path.basename(tiny_model)}`" in card


def test_partial_checkpoints_are_never_resumed_from(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / ".partial-checkpoint-4").mkdir()
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert latest_checkpoint(str(tmp_path / "missing")) is None


def test_the_synthetic_backgrounds_option_reaches_the_dataset(tiny_model, tmp_path):
    from truepose.training.batches import build_dataset

    for backgrounds in ("varied", "studio"):
        args = parse_args(tiny_training_args(tiny_model, tmp_path, 1, "--synthetic_backgrounds", backgrounds))
        assert build_dataset(args).backgrounds == backgrounds


def test_training_needs_parsing_maps():
    from truepose.data import SyntheticPoseDataset
    from truepose.data.common import collate_pairs

    items = collate_pairs([SyntheticPoseDataset(1, image_size=(64, 64))[0]])
    assert make_batch(items).pose_images[0].size == (64, 64)
    items["source_parsing"] = [None]
    with pytest.raises(ValueError, match="parsing"):
        make_batch(items)


def test_bad_arguments_are_refused(tiny_model, tmp_path):
    with pytest.raises(SystemExit):
        main(tiny_training_args(tiny_model, tmp_path, 2, "--dataset", "deepfashion"))
    for bad in (["--checkpointing_steps", "0"], ["--train_batch_size", "0"], ["--learning_rate", "-1"]):
        with pytest.raises(SystemExit):
            main(tiny_training_args(tiny_model, tmp_path, 2, *bad))
    with pytest.raises(SystemExit):
        main(tiny_training_args(tiny_model, tmp_path, 0))
    with pytest.raises(ValueError, match="does not exist"):
        main(tiny_training_args(tiny_model, tmp_path, 2, "--resume_from_checkpoint", str(tmp_path / "nope")))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="cannot be written"):
        main(tiny_training_args(tiny_model, tmp_path / "a_file" / "run", 2))
    (tmp_path / "checkpoint-2").mkdir()
    with pytest.raises(ValueError, match="already holds checkpoints"):
        main(tiny_training_args(tiny_model, tmp_path, 2))
    (tmp_path / "checkpoint-best").mkdir()
    with pytest.raises(ValueError, match="checkpoint-best"):
        main(tiny_training_args(tiny_model, tmp_path, 2, "--resume_from_checkpoint", "latest"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "checkpoint-2", "checkpoint-best"]  # no work


def write_folder_dataset(root, num_images, corrupt):
    """A folder dataset of tiny people, pairs (i, i+1); image ``corrupt`` holds garbage bytes."""
    from truepose.data.common import save_parsing
    from truepose.testing import TINY_KEYPOINTS, tiny_person

    (root / "images").mkdir(parents=True)
    (root / "parsing").mkdir()
    for i in range(num_images):
        image, parsing = tiny_person(seed=i)
        image.save(root / "images" / f"p{i}.png")
        save_parsing(parsing, root / "parsing" / f"p{i}.png")
    (root / "images" / f"p{corrupt}.png").write_bytes(b"not a png")
    keypoints = {f"p{i}.png": TINY_KEYPOINTS.tolist() for i in range(num_images)}
    (root / "keypoints.json").write_text(json.dumps(keypoints))
    (root / "pairs.csv").write_text("from,to\n" + "".join(f"p{i}.png,p{i + 1}.png\n" for i in range(num_images - 1)))


def test_corrupt_image_stops_training_naming_the_file_and_keeps_checkpoints(tiny_model, tmp_path):
    """Seed 4 orders the pairs [2, 1, 0, 3]; pair 3 reads the corrupt p4.png (the loader fetches one batch ahead)."""
    write_folder_dataset(tmp_path / "data", num_images=5, corrupt=4)
    args = tiny_training_args(tiny_model, tmp_path / "run", 4, "--train_batch_size", "1", "--checkpointing_steps", "1")
    args += ["--dataset", "folder", "--data_root", str(tmp_path / "data"), "--parsing_dir", "parsing", "--seed", "4"]
    with pytest.raises(RuntimeError, match="p4.png"):
        main(args)
    assert latest_checkpoint(str(tmp_path / "run")) == str(tmp_path / "run" / "checkpoint-2")


def test_fine_tunes_the_shipped_fp16_model(tmp_path):
    from huggingface_hub import ModelCard

    from truepose import TruePosePipeline
    from truepose.demo import SHIPPED_MODEL

    args = ["--pretrained_model", str(SHIPPED_MODEL), "--output_dir", str(tmp_path), "--resolution", "96", "64"]
    options = ["--train_batch_size", "2", "--max_train_steps", "1", "--num_pairs", "2"]
    assert main([*args, *options, "--synthetic_backgrounds", "studio"]) == 0
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "image-to-image" and "truepose" in card.data.tags
    assert "(2 pairs, seed 0, studio backgrounds)" in card.text
    assert "HPFA: sigma 0.3" in card.text and "Steps: 1 (" in card.text
    pipe = TruePosePipeline.from_pretrained(tmp_path)
    assert pipe.target_unet.dtype == torch.float32


def test_lora_training_saves_merged_weights(tiny_model, tmp_path):
    from truepose import TruePosePipeline

    assert main(tiny_training_args(tiny_model, tmp_path, 2, "--lora_rank", "4")) == 0
    trained, initial = trained_weights(tmp_path), trained_weights(tiny_model)
    assert trained.keys() == initial.keys()  # no adapter keys left
    changed = {key for key in trained if not torch.equal(trained[key], initial[key])}
    assert any(key.endswith("attn1.to_q.weight") for key in changed)
    assert any(".processor.caa_to_out" in key for key in changed)
    assert not any("resnets" in key or "conv_in" in key for key in changed if "unet" in key)
    TruePosePipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize("installed, expected", [([], "none"), (["tensorboard"], "tensorboard")])
def test_report_to_defaults_to_what_is_installed(tiny_model, tmp_path, monkeypatch, installed, expected):
    """A base install (no tensorboard) trains without a tracker and without a warning; with the [train] extra the
    default is tensorboard."""
    from accelerate.utils import LoggerType

    from truepose.train import parse_args

    monkeypatch.setattr("accelerate.tracking.get_available_trackers", lambda: [LoggerType(n) for n in installed])
    args = tiny_training_args(tiny_model, tmp_path, 1)
    index = args.index("--report_to")
    assert parse_args(args[:index] + args[index + 2 :]).report_to == expected


def test_channels_last_trains_the_same_weights(tiny_model, tmp_path):
    """--channels_last changes only the memory order: the same weights to float tolerance, saved and resumed."""
    assert main(tiny_training_args(tiny_model, tmp_path / "default", 3)) == 0
    assert main(tiny_training_args(tiny_model, tmp_path / "channels_last", 2, "--channels_last")) == 0
    resume = ("--channels_last", "--resume_from_checkpoint", "latest")
    assert main(tiny_training_args(tiny_model, tmp_path / "channels_last", 3, *resume)) == 0
    default, channels_last = trained_weights(tmp_path / "default"), trained_weights(tmp_path / "channels_last")
    assert_same_training(channels_last, default, trained_weights(tiny_model), learning_rate=1e-3)
