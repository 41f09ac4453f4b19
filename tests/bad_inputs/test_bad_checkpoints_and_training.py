"""Training under real use (issue 24): checkpoints that cannot run code or half-happen, one run per output folder,
and options refused before any work, each error naming the flag, folder or file."""

import errno
import json
import os
import pathlib
import pickle
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import truepose.train as train_module
from truepose.testing import tiny_training_args, trained_weights
from truepose.train import main, parse_args
from truepose.training.lock import LOCK_NAME, acquire_output_lock


@pytest.fixture(scope="module")
def ema_run(tiny_model, tmp_path_factory):
    """4 steps straight with EMA: checkpoint-2, checkpoint-4 and the final (EMA) weights."""
    output_dir = tmp_path_factory.mktemp("ema") / "run"
    assert main(tiny_training_args(tiny_model, output_dir, 4, "--use_ema")) == 0
    return output_dir


def resume_copy(ema_run, tmp_path, step=2):
    """A fresh output folder holding a copy of ``ema_run``'s checkpoint-{step}; returns (output_dir, checkpoint)."""
    output_dir = tmp_path / "resumed"
    checkpoint = output_dir / f"checkpoint-{step}"
    shutil.copytree(ema_run / f"checkpoint-{step}", checkpoint)
    return output_dir, checkpoint


def assert_no_work(output_dir):
    """Nothing was trained or saved: only checkpoints (and no lock) in the folder."""
    assert sorted(p.name for p in output_dir.iterdir() if not p.name.startswith("checkpoint-")) == []


# ----------------------------------------------------------------------------------------------------------------
# EMA without pickle, exact resume
# ----------------------------------------------------------------------------------------------------------------


def test_ema_state_is_safetensors_and_json_and_resumes_exactly(tiny_model, ema_run, tmp_path):
    """The EMA is saved as ema.safetensors + ema.json (no pickle), and 2 steps + resume + 2 steps give the EMA
    weights of 4 steps straight (the saved pipeline holds the EMA weights)."""
    checkpoint = ema_run / "checkpoint-4"
    assert not list(checkpoint.glob("*custom_checkpoint*"))
    assert json.loads((checkpoint / "ema.json").read_text())["optimization_step"] == 4
    shadow = load_file(checkpoint / "ema.safetensors")
    assert any(key.startswith("target_unet.") and ".processor.caa_" in key for key in shadow)
    assert any(key.startswith("source_unet.") for key in shadow) and any(k.startswith("pose_encoder.") for k in shadow)

    output_dir, _ = resume_copy(ema_run, tmp_path)
    assert main(tiny_training_args(tiny_model, output_dir, 4, "--use_ema", "--resume_from_checkpoint", "latest")) == 0
    resumed_shadow = load_file(output_dir / "checkpoint-4" / "ema.safetensors")
    assert resumed_shadow.keys() == shadow.keys()
    for key in shadow:
        torch.testing.assert_close(resumed_shadow[key], shadow[key], rtol=0, atol=1e-6)
    straight, resumed, initial = trained_weights(ema_run), trained_weights(output_dir), trained_weights(tiny_model)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)
    assert any(not torch.equal(straight[key], initial[key]) for key in straight)
    assert not (output_dir / LOCK_NAME).exists()  # released at the end


class PlantedCode:
    """Unpickling this creates ``marker``: the code a hostile checkpoint would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


PLANTED = {
    # file -> how it is written, what the error says
    "custom_checkpoint_0.pkl": ("pickle", "Pickles can run code"),
    "optimizer.bin": ("torch", "objects other than tensors"),
    "scheduler.bin": ("torch", "objects other than tensors"),
    "random_states_0.pkl": ("torch", "objects other than tensors"),  # accelerate would skip it silently
}


@pytest.mark.parametrize("name", PLANTED.keys())
def test_planted_pickle_in_a_checkpoint_is_refused_and_never_runs(tiny_model, ema_run, tmp_path, name):
    writer, message = PLANTED[name]
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(PlantedCode(marker))
    pickle.loads(payload)  # the payload really runs when unpickled...
    assert marker.exists()
    marker.unlink()
    output_dir, checkpoint = resume_copy(ema_run, tmp_path)
    if name.startswith("custom_checkpoint"):  # an EMA state as the earlier version saved it, and nothing else
        (checkpoint / "ema.safetensors").unlink()
        (checkpoint / "ema.json").unlink()
        (checkpoint / name).write_bytes(payload)
    else:
        torch.save({"state": PlantedCode(marker)}, checkpoint / name)
    with pytest.raises(ValueError, match=message) as error:
        main(tiny_training_args(tiny_model, output_dir, 4, "--use_ema", "--resume_from_checkpoint", "latest"))
    assert str(checkpoint) in str(error.value) and name in str(error.value)
    assert not marker.exists()  # ... but never here
    assert_no_work(output_dir)


# ----------------------------------------------------------------------------------------------------------------
# Resume from a bad checkpoint: one error naming the folder and the likely cause
# ----------------------------------------------------------------------------------------------------------------


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


BAD_CHECKPOINTS = {
    "model truncated": (lambda c: truncate(c / "model.safetensors"), [], "model.safetensors.*truncated"),
    "optimizer truncated": (lambda c: truncate(c / "optimizer.bin"), [], "optimizer.bin.*truncated"),
    "ema truncated": (lambda c: truncate(c / "ema.safetensors"), ["--use_ema"], "ema.safetensors.*truncated"),
    "optimizer missing": (lambda c: (c / "optimizer.bin").unlink(), [], "has no optimizer.bin: .*incomplete"),
    "step unreadable": (lambda c: (c / "truepose_step.json").write_text("{"), [], "truepose_step.json"),
    "no ema": (
        lambda c: (c / "ema.json").unlink(),
        ["--use_ema"],
        "has no ema.json: it was written without --use_ema",
    ),
    "another lora_rank": (
        lambda c: None,
        ["--lora_rank", "4"],
        "does not match this run's TruePoseDenoiser.*--lora_rank",
    ),
    "freeze_source_unet": (
        lambda c: None,
        ["--freeze_source_unet"],
        "trained 408 parameter tensors and this run trains 224: it was probably written without --freeze_source_unet",
    ),
}


@pytest.mark.parametrize("damage, extra, match", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_resume_from_a_bad_checkpoint_names_it_and_the_cause(tiny_model, ema_run, tmp_path, damage, extra, match):
    output_dir, checkpoint = resume_copy(ema_run, tmp_path)
    damage(checkpoint)
    with pytest.raises(ValueError, match=match) as error:
        main(tiny_training_args(tiny_model, output_dir, 4, "--resume_from_checkpoint", "latest", *extra))
    assert "--resume_from_checkpoint" in str(error.value) and str(checkpoint) in str(error.value)
    assert_no_work(output_dir)


def test_resume_with_another_lora_rank_names_it(tiny_model, tmp_path):
    assert main(tiny_training_args(tiny_model, tmp_path, 2, "--lora_rank", "2")) == 0
    with pytest.raises(ValueError, match=r"lora_A.*\(2, .*\(4, .*another --lora_rank") as error:
        main(tiny_training_args(tiny_model, tmp_path, 4, "--lora_rank", "4", "--resume_from_checkpoint", "latest"))
    assert str(tmp_path / "checkpoint-2") in str(error.value)
    assert not (tmp_path / "checkpoint-4").exists()


# ----------------------------------------------------------------------------------------------------------------
# Write errors at a checkpoint
# ----------------------------------------------------------------------------------------------------------------


def fail_second_torch_save(monkeypatch):
    """torch.save runs out of disk space at the second checkpoint's optimizer state."""
    save, calls = torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.bin"):
            calls.append(f)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)


def fail_second_save_state(monkeypatch):
    """accelerate writes the second checkpoint's files, then the disk is full."""
    from accelerate import Accelerator

    save_state, calls = Accelerator.save_state, []

    def full_disk(self, output_dir=None, **kwargs):
        save_state(self, output_dir, **kwargs)
        calls.append(output_dir)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Accelerator, "save_state", full_disk)


@pytest.mark.parametrize("fail", [fail_second_torch_save, fail_second_save_state])
def test_write_error_at_a_checkpoint_names_it_and_keeps_earlier_ones(tiny_model, tmp_path, monkeypatch, fail):
    fail(monkeypatch)
    args = tiny_training_args(tiny_model, tmp_path, 4, "--use_ema", "--checkpoints_total_limit", "1")
    with pytest.raises(OSError, match=r"checkpoint-4 at step 4: .*No space left on device") as error:
        main(args)
    assert error.value.errno == errno.ENOSPC and str(tmp_path / "checkpoint-4") in str(error.value)
    # The partial folder is gone; checkpoint-2 is whole (not pruned by --checkpoints_total_limit 1) and resumable.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    monkeypatch.undo()
    assert main([*args, "--resume_from_checkpoint", "latest"]) == 0
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]


def test_resuming_an_earlier_checkpoint_replaces_the_later_one(tiny_model, ema_run, tmp_path):
    """Resume from checkpoint-2 while checkpoint-4 exists: the new checkpoint-4 replaces the old one in one rename."""
    output_dir, checkpoint = resume_copy(ema_run, tmp_path)
    shutil.copytree(ema_run / "checkpoint-4", output_dir / "checkpoint-4")
    (output_dir / "checkpoint-4" / "stale-marker").write_text("")
    assert (
        main(tiny_training_args(tiny_model, output_dir, 4, "--use_ema", "--resume_from_checkpoint", str(checkpoint)))
        == 0
    )
    assert sorted(p.name for p in output_dir.glob("*checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (output_dir / "checkpoint-4" / "stale-marker").exists()


# ----------------------------------------------------------------------------------------------------------------
# Output folders: not the starting model, one run at a time
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["same", "inside", "symlink"])
def test_output_dir_in_the_pretrained_model_is_refused(tiny_model, tmp_path, where):
    output_dir = {"same": tiny_model, "inside": os.path.join(tiny_model, "run"), "symlink": str(tmp_path / "link")}
    os.symlink(tiny_model, tmp_path / "link")
    before = sorted(os.listdir(tiny_model))
    with pytest.raises(ValueError, match="--output_dir .* --pretrained_model .*overwrite the model it starts from"):
        main(tiny_training_args(tiny_model, output_dir[where], 2))
    assert sorted(os.listdir(tiny_model)) == before


def test_second_run_into_the_same_folder_is_refused_naming_the_first(tiny_model, tmp_path):
    lock = acquire_output_lock(str(tmp_path))  # a first run, this process
    first = json.loads(pathlib.Path(lock).read_text())
    assert first["pid"] == os.getpid() and first["host"] == socket.gethostname()
    with pytest.raises(ValueError, match=f"in use by another truepose train run \\(pid {os.getpid()} on .*started"):
        main(tiny_training_args(tiny_model, tmp_path, 2))
    with pytest.raises(ValueError, match=f"pid {os.getpid()}"):  # also when taking the lock races the check
        acquire_output_lock(str(tmp_path))
    assert json.loads(pathlib.Path(lock).read_text()) == first  # the first run's lock is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # no work


def test_lock_is_held_during_the_run_and_released_after(tiny_model, tmp_path, monkeypatch):
    seen = []
    save_checkpoint = train_module.save_checkpoint

    def spy(accelerator, output_dir, *args, **kwargs):
        seen.append(json.loads((tmp_path / LOCK_NAME).read_text())["pid"])
        return save_checkpoint(accelerator, output_dir, *args, **kwargs)

    monkeypatch.setattr(train_module, "save_checkpoint", spy)
    assert main(tiny_training_args(tiny_model, tmp_path, 2)) == 0
    assert seen == [os.getpid()] and not (tmp_path / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tiny_model, tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    stale = {"pid": finished.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    assert main(tiny_training_args(tiny_model, tmp_path, 2)) == 0
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_another_host_is_not_taken_for_stale(tiny_model, tmp_path):
    other = {"pid": 1, "host": socket.gethostname() + "-other", "started": "2026-01-01T00:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(ValueError, match="-other, started 2026-01-01.*delete the lock file"):
        main(tiny_training_args(tiny_model, tmp_path, 2))


# ----------------------------------------------------------------------------------------------------------------
# Options refused by name before the model loads
# ----------------------------------------------------------------------------------------------------------------


def no_token(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)


def no_bitsandbytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import raises ImportError


def no_trackers(monkeypatch):
    monkeypatch.setattr("accelerate.tracking.get_available_trackers", lambda: [])


START_CASES = {
    "unknown lr_scheduler": ([], ["--lr_scheduler", "cosine_annealing"], "--lr_scheduler"),
    "piecewise lr_scheduler": ([], ["--lr_scheduler", "piecewise_constant"], "--lr_scheduler"),
    "polynomial below its end": ([], ["--lr_scheduler", "polynomial", "--learning_rate", "1e-8"], "--learning_rate"),
    "8-bit Adam without bitsandbytes": ([no_bitsandbytes], ["--use_8bit_adam"], "--use_8bit_adam needs bitsandbytes"),
    "unknown report_to": ([], ["--report_to", "tensorbord"], "--report_to"),
    "report_to not installed": ([no_trackers], ["--report_to", "tensorboard"], "--report_to tensorboard: the"),
    "push_to_hub offline": ([], ["--push_to_hub", "--hub_model_id", "me/run"], "--push_to_hub .*HF_HUB_OFFLINE"),
    "push_to_hub without token": ([no_token], ["--push_to_hub", "--hub_model_id", "me/run"], "--push_to_hub needs"),
    "hub_model_id invalid": ([], ["--hub_model_id", "me/my run!"], "--hub_model_id 'me/my run!' is not a valid"),
    "output folder name invalid": ([no_token], ["--push_to_hub"], "--output_dir folder name 'bad name!'"),
    "seed negative": ([], ["--seed", "-1"], "--seed"),
    "seed too large": ([], ["--seed", str(2**32)], "--seed"),
    "data_seed negative": ([], ["--data_seed", "-1"], "--data_seed"),
}


@pytest.mark.parametrize("patches, argv, match", START_CASES.values(), ids=START_CASES.keys())
def test_options_are_refused_by_name_before_work(monkeypatch, capsys, patches, argv, match):
    for patch in patches:
        patch(monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--pretrained_model", "model", "--output_dir", "out/bad name!", *argv])
    assert exit_info.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_largest_seed_trains_at_any_step():
    """Pair seeds are reduced to torch's 64-bit range; below it they are unchanged (resumes of old runs match)."""
    generators = train_module.pair_generators(2**32 - 1, 10**6, 3, 100, 2)
    assert len({g.initial_seed() for g in generators}) == 2
    (small,) = train_module.pair_generators(7, 5, 1, 3, 1)
    assert small.initial_seed() == ((7 * 1_000_003 + 5) * 1_009 + 1) * 100_003 + 3
