"""Multi-process training (DDP, gloo on CPU): 2 processes with batch b train what 1 process with batch 2b trains."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from truepose.train import check_launch, main

LEARNING_RATE = 1e-4


def train_args(init_model, output_dir, batch_size, *extra):
    return [
        "--pretrained_model", init_model, "--output_dir", str(output_dir), "--num_pairs", "8",
        "--resolution", "32", "32", "--train_batch_size", str(batch_size), "--max_train_steps", "2",
        "--gradient_accumulation_steps", "2", "--checkpointing_steps", "1", "--learning_rate", str(LEARNING_RATE),
        "--use_ema", "--gradient_checkpointing", "--report_to", "none", *extra,
    ]  # fmt: skip


def run_two_processes(args):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([*command, "-m", "truepose.train", *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def weights(folder):
    return {
        f"{name}.{key}": value
        for name in ("target_unet", "source_unet", "pose_encoder")
        for key, value in load_file(os.path.join(folder, name, "diffusion_pytorch_model.safetensors")).items()
    }


def assert_same_training(result, reference, initial):
    """Same weights up to fp32 rounding. AdamW divides by sqrt(v): on entries whose gradient is near zero it turns
    rounding into visible steps, so the check is: average difference tiny against the average update, and no entry
    off by more than a quarter of one step (a different noise draw or batch split is off by about 100%; in CI the
    largest rounding step seen was 0.12 of one step)."""
    update = torch.cat([(reference[key] - initial[key]).flatten() for key in reference])
    difference = torch.cat([(result[key] - reference[key]).flatten() for key in reference])
    assert update.abs().mean() > 0.5 * LEARNING_RATE  # the run trained
    assert difference.abs().mean() < 1e-4 * update.abs().mean()
    assert difference.abs().max() < 0.25 * LEARNING_RATE


@pytest.fixture(scope="module")
def ddp_run(init_model, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("ddp") / "run"
    run_two_processes(train_args(init_model, output_dir, 1))
    return output_dir


def test_two_processes_equal_one_process_with_double_batch(init_model, ddp_run, tmp_path):
    """2 steps, 2 accumulated micro-batches, EMA and gradient checkpointing: 2 x batch 1 == 1 x batch 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each DDP process runs: fewer rounding differences from another reduction order
    try:
        assert main(train_args(init_model, tmp_path, 2)) == 0
    finally:
        torch.set_num_threads(threads)
    initial, single, ddp = weights(init_model), weights(tmp_path), weights(ddp_run)
    assert ddp.keys() == single.keys()
    assert_same_training(ddp, single, initial)
    trained_source = [k for k in ddp if k.startswith("source_unet.") and not torch.equal(ddp[k], initial[k])]
    assert any(".attn1." in key for key in trained_source)
    assert not any(key.startswith("source_unet.conv_out") for key in trained_source)  # never reaches TargetNet


def test_two_process_run_resumes_exactly(init_model, ddp_run, tmp_path):
    shutil.copytree(ddp_run / "checkpoint-1", tmp_path / "checkpoint-1")
    run_two_processes(train_args(init_model, tmp_path, 1, "--resume_from_checkpoint", "latest"))
    resumed, straight = weights(tmp_path), weights(ddp_run)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)


def test_one_process_started_for_several_is_refused(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` sets MASTER_PORT but starts one process."""

    class OneProcess:
        num_processes = 1
        distributed_type = "NO"

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        check_launch(OneProcess())
    monkeypatch.delenv("MASTER_PORT")
    check_launch(OneProcess())
