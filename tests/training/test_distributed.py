"""Training on several processes, on CPU with gloo: DDP, FSDP2 and two "nodes" on 127.0.0.1 each train, with batch
b per process, what one process trains with batch N * b, and resume exactly; what a sharded run cannot do is
refused before any work."""

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from torch.distributed.fsdp import StateDictType
from training_checks import assert_same_training

from truepose.testing import trained_weights as weights
from truepose.train import check_launch, main
from truepose.training.checkpoints import check_checkpoint_model

LEARNING_RATE = 1e-4
SHARDED_ON_CPU = os.path.join(os.path.dirname(__file__), "sharded_on_cpu.py")
FSDP_ENV = {  # what `accelerate launch` sets from examples/accelerate/fsdp.yaml
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "NO_WRAP",
    "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
}
DEEPSPEED_ENV = {  # what `accelerate launch` sets from examples/accelerate/deepspeed_zero{2,3}.yaml, on CPU
    "ACCELERATE_USE_DEEPSPEED": "true",
    "ACCELERATE_GRADIENT_CLIPPING": "1.0",
    "ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2",  # as train_args
    "ACCELERATE_DEEPSPEED_ZERO3_INIT": "false",
    "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true",
    "DS_ACCELERATOR": "cpu",
}
ENGINE_ENV = {
    "fsdp": FSDP_ENV,
    "zero2": {**DEEPSPEED_ENV, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
    "zero3": {**DEEPSPEED_ENV, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
}


def train_args(tiny_model, output_dir, batch_size, *extra, ema=True):
    return [
        "--pretrained_model", tiny_model, "--output_dir", str(output_dir), "--num_pairs", "8",
        "--resolution", "32", "32", "--train_batch_size", str(batch_size), "--max_train_steps", "2",
        "--gradient_accumulation_steps", "2", "--checkpointing_steps", "1", "--learning_rate", str(LEARNING_RATE),
        "--gradient_checkpointing", "--report_to", "none", *(["--use_ema"] if ema else []), *extra,
    ]  # fmt: skip


def launch_env(**extra):
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def run_two_processes(args, engine=None):
    """``engine``: None (DDP) or a key of ``ENGINE_ENV``, launched through ``sharded_on_cpu.py``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    program = [SHARDED_ON_CPU] if engine else ["-m", "truepose.train"]
    env = launch_env(**ENGINE_ENV[engine]) if engine else launch_env()
    result = subprocess.run([*command, *program, *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def run_two_nodes(args):
    """Two one-process "nodes" on 127.0.0.1 with a static rendezvous, as on two machines (docs/training.md)."""
    port = str(29400 + os.getpid() % 500)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
    command += ["--master_addr", "127.0.0.1", "--master_port", port]
    nodes = [
        subprocess.Popen(
            [*command, "--node_rank", str(rank), "-m", "truepose.train", *args],
            env=launch_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (1, 0)
    ]
    for node in nodes:
        _, stderr = node.communicate(timeout=600)
        assert node.returncode == 0, stderr[-3000:]


def run_one_process(args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each process of a launch runs: fewer rounding differences from another reduction
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)


def assert_resumed_exactly(resumed_folder, straight_folder):
    resumed, straight = weights(resumed_folder), weights(straight_folder)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def one_process_run(tiny_model, tmp_path_factory):
    """The reference: one process with the global batch (2), EMA and gradient checkpointing."""
    output_dir = tmp_path_factory.mktemp("one") / "run"
    run_one_process(train_args(tiny_model, output_dir, 2))
    return output_dir


@pytest.fixture(scope="module")
def ddp_run(tiny_model, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("ddp") / "run"
    run_two_processes(train_args(tiny_model, output_dir, 1))
    return output_dir


@pytest.fixture(scope="module")
def fsdp_run(tiny_model, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("fsdp") / "run"
    run_two_processes(train_args(tiny_model, output_dir, 1, ema=False), engine="fsdp")
    return output_dir


@pytest.fixture(scope="module")
def one_process_run_without_ema(tiny_model, tmp_path_factory):
    """The reference of the sharded runs (which refuse --use_ema)."""
    output_dir = tmp_path_factory.mktemp("one-no-ema") / "run"
    run_one_process(train_args(tiny_model, output_dir, 2, ema=False))
    return output_dir


def test_two_processes_equal_one_process_with_double_batch(tiny_model, one_process_run, ddp_run):
    """2 steps, 2 accumulated micro-batches, EMA and gradient checkpointing: 2 x batch 1 == 1 x batch 2."""
    initial, single, ddp = weights(tiny_model), weights(one_process_run), weights(ddp_run)
    assert_same_training(ddp, single, initial, LEARNING_RATE)
    trained_source = [k for k in ddp if k.startswith("source_unet.") and not torch.equal(ddp[k], initial[k])]
    assert any(".attn1." in key for key in trained_source)
    assert not any(key.startswith("source_unet.conv_out") for key in trained_source)  # never reaches TargetNet


def test_two_process_run_resumes_exactly(tiny_model, ddp_run, tmp_path):
    shutil.copytree(ddp_run / "checkpoint-1", tmp_path / "checkpoint-1")
    run_two_processes(train_args(tiny_model, tmp_path, 1, "--resume_from_checkpoint", "latest"))
    assert_resumed_exactly(tmp_path, ddp_run)


def test_a_run_resumed_on_another_launch_records_both_in_its_model_card(tiny_model, ddp_run, tmp_path):
    shutil.copytree(ddp_run / "checkpoint-1", tmp_path / "checkpoint-1")
    run_one_process(train_args(tiny_model, tmp_path, 2, "--resume_from_checkpoint", "latest"))
    card = (tmp_path / "README.md").read_text()
    assert "  - steps 0-1: 2 processes x batch 1 x 2 accumulation (DDP)\n" in card
    assert "  - steps 1-2: 1 process x batch 2 x 2 accumulation (DDP)\n" in card


def test_fsdp_two_processes_equal_one_process_with_double_batch(tiny_model, fsdp_run, one_process_run_without_ema):
    """FSDP2 shards the one TruePoseDenoiser (SourceNet's tokens flow inside its forward) and trains what one
    process trains; the saved pipeline holds the gathered whole weights."""
    assert sorted(os.listdir(fsdp_run / "checkpoint-1")) == [
        "optimizer.bin", "pytorch_model_fsdp.bin", "random_states_0.pkl", "random_states_1.pkl", "scheduler.bin",
        "truepose_step.json",
    ]  # fmt: skip
    initial, single, fsdp = weights(tiny_model), weights(one_process_run_without_ema), weights(fsdp_run)
    assert_same_training(fsdp, single, initial, LEARNING_RATE)
    assert any(k.startswith("source_unet.") and not torch.equal(fsdp[k], initial[k]) for k in fsdp)


def test_fsdp_run_resumes_exactly(tiny_model, fsdp_run, tmp_path):
    shutil.copytree(fsdp_run / "checkpoint-1", tmp_path / "checkpoint-1")
    run_two_processes(
        train_args(tiny_model, tmp_path, 1, "--resume_from_checkpoint", "latest", ema=False), engine="fsdp"
    )
    assert_resumed_exactly(tmp_path, fsdp_run)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_two_processes_equal_one_process_and_resume_exactly(
    tiny_model, one_process_run_without_ema, tmp_path, stage
):
    """accelerate's DeepSpeed integration on CPU (DeepSpeed's CPU accelerator, gloo): ZeRO-2 and ZeRO-3 train what
    one process trains, and resume exactly (DeepSpeed's checkpoint files pass the weights-only read first). Needs
    DeepSpeed (``pip install deepspeed``; not in the ``test`` extra: PyPI has only its source, which builds against
    torch)."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_two_processes(train_args(tiny_model, straight, 1, ema=False), engine=stage)
    assert os.path.isdir(straight / "checkpoint-1" / "pytorch_model")
    assert_same_training(weights(straight), weights(one_process_run_without_ema), weights(tiny_model), LEARNING_RATE)
    shutil.copytree(straight / "checkpoint-1", resumed / "checkpoint-1")
    run_two_processes(
        train_args(tiny_model, resumed, 1, "--resume_from_checkpoint", "latest", ema=False), engine=stage
    )
    assert_resumed_exactly(resumed, straight)


def test_two_nodes_equal_one_process_and_resume_exactly(tiny_model, one_process_run, tmp_path):
    """Two one-process nodes (--nnodes 2, --node_rank 0|1, static rendezvous on 127.0.0.1): the data are sharded
    over the nodes as over processes, and a resumed two-node run continues exactly."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_two_nodes(train_args(tiny_model, straight, 1))
    assert_same_training(weights(straight), weights(one_process_run), weights(tiny_model), LEARNING_RATE)
    shutil.copytree(straight / "checkpoint-1", resumed / "checkpoint-1")
    run_two_nodes(train_args(tiny_model, resumed, 1, "--resume_from_checkpoint", "latest"))
    assert_resumed_exactly(resumed, straight)


def test_one_process_started_for_several_is_refused(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` sets MASTER_PORT but starts one process."""
    one_process = SimpleNamespace(num_processes=1, distributed_type=DistributedType.NO)
    args = SimpleNamespace(use_ema=False, validation_steps=0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(ValueError, match="torchrun --nproc_per_node"):
        check_launch(one_process, args)
    monkeypatch.delenv("MASTER_PORT")
    check_launch(one_process, args)


def test_a_launcher_gets_one_line_for_a_refused_launch(tiny_model, tmp_path):
    """What `accelerate launch --cpu --num_processes 2 -m truepose.train` runs: one process with MASTER_PORT set."""
    env = {key: value for key, value in launch_env(MASTER_PORT="29500").items() if key != "WORLD_SIZE"}
    command = [sys.executable, "-m", "truepose.train", *train_args(tiny_model, tmp_path / "run", 1)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert line.startswith("truepose train: error: The launcher asked for several processes")


def sharded_launch(distributed_type, clipping=1.0, accumulation=1, **plugin):
    fsdp_plugin = SimpleNamespace(
        **{"fsdp_version": 2, "auto_wrap_policy": None, "state_dict_type": StateDictType.FULL_STATE_DICT, **plugin}
    )
    deepspeed_plugin = SimpleNamespace(
        deepspeed_config={"gradient_clipping": clipping, "gradient_accumulation_steps": accumulation}
    )
    state = SimpleNamespace(fsdp_plugin=fsdp_plugin, deepspeed_plugin=deepspeed_plugin)
    return SimpleNamespace(num_processes=2, distributed_type=distributed_type, state=state)


REFUSED_LAUNCHES = {
    "ema under FSDP": (DistributedType.FSDP, {}, {"use_ema": True}, "--use_ema does not work under FSDP"),
    "validation under DeepSpeed": (
        DistributedType.DEEPSPEED, {}, {"validation_steps": 2}, "--validation_steps does not work under DeepSpeed"
    ),
    "FSDP1": (DistributedType.FSDP, {"fsdp_version": 1}, {}, "FSDP2 .* only: set fsdp_version: 2"),
    "DeepSpeed accumulation": (
        DistributedType.DEEPSPEED, {"accumulation": 2}, {}, "accumulates 2 micro-batches and --gradient_accumulation_steps is 1"
    ),
    "DeepSpeed clipping": (
        DistributedType.DEEPSPEED, {"clipping": 0.5}, {}, "clips gradients at 0.5 and --max_grad_norm is 1.0"
    ),
    "wrapped blocks": (
        DistributedType.FSDP, {"auto_wrap_policy": print}, {}, "NO_WRAP: SourceNet's tokens leave its transformer"
    ),
    "sharded state dict": (
        DistributedType.FSDP, {"state_dict_type": StateDictType.SHARDED_STATE_DICT}, {}, "FULL_STATE_DICT: .*pickle"
    ),
}  # fmt: skip


@pytest.mark.parametrize("distributed_type, plugin, options, match", REFUSED_LAUNCHES.values(), ids=REFUSED_LAUNCHES)
def test_what_a_sharded_run_cannot_do_is_refused_before_any_work(distributed_type, plugin, options, match):
    args = SimpleNamespace(
        **{"use_ema": False, "validation_steps": 0, "max_grad_norm": 1.0, "gradient_accumulation_steps": 1, **options}
    )
    with pytest.raises(ValueError, match=match):
        check_launch(sharded_launch(distributed_type, **plugin), args)


@pytest.mark.parametrize("distributed_type", [DistributedType.FSDP, DistributedType.DEEPSPEED])
def test_a_sharded_run_with_the_documented_settings_starts(distributed_type):
    args = SimpleNamespace(use_ema=False, validation_steps=0, max_grad_norm=1.0, gradient_accumulation_steps=1)
    check_launch(sharded_launch(distributed_type), args)


def test_the_tests_fsdp_launch_is_the_documented_config():
    from accelerate.commands.config.config_args import ClusterConfig

    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "accelerate")
    configs = {name: ClusterConfig.from_yaml_file(os.path.join(root, name)) for name in sorted(os.listdir(root))}
    assert set(configs) == {
        "deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp.yaml", "multi_gpu_ddp.yaml", "multi_node_ddp.yaml"
    }  # fmt: skip
    fsdp = configs["fsdp.yaml"].fsdp_config
    documented = (fsdp["fsdp_version"], fsdp["fsdp_auto_wrap_policy"], fsdp["fsdp_state_dict_type"])
    assert documented == (2, FSDP_ENV["FSDP_AUTO_WRAP_POLICY"], FSDP_ENV["FSDP_STATE_DICT_TYPE"])
    assert FSDP_ENV["FSDP_VERSION"] == "2"
    for name in ("deepspeed_zero2.yaml", "deepspeed_zero3.yaml"):
        assert configs[name].deepspeed_config["gradient_clipping"] == 1.0  # --max_grad_norm's default


def test_a_checkpoint_is_resumed_only_under_the_engine_that_wrote_it(ddp_run, fsdp_run):
    with pytest.raises(ValueError, match=r"written under DDP \(model.safetensors\) and this run uses FSDP"):
        check_checkpoint_model(str(ddp_run / "checkpoint-1"), torch.nn.Module(), "FSDP", 0)
    with pytest.raises(ValueError, match=r"written under FSDP \(pytorch_model_fsdp.bin\) and this run uses DDP"):
        check_checkpoint_model(str(fsdp_run / "checkpoint-1"), torch.nn.Module(), "DDP", 0)
