"""benchmarks/gpu_check_distributed.py: its --tiny run on CPU (DDP and FSDP2 rows over 2 gloo processes, DeepSpeed
rows skipped with the reason), a failing or hanging row reported without stopping the others, and the GPU rows'
accelerate configs."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check_distributed.py"


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("gpu_check_distributed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_on_cpu(tmp_path):
    output = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(SCRIPT), "--tiny", "--workdir", str(tmp_path / "work"), "--output", str(output)]
    (tmp_path / "work").mkdir()
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    assert json.loads(output.read_text()) == printed
    assert {"device", "torch", "accelerate", "deepspeed", "date", "settings", "rows"} <= printed.keys()
    rows = printed["rows"]
    assert list(rows) == ["ddp", "fsdp", "zero2", "zero3"]
    for name, engine in (("ddp", "MULTI_CPU"), ("fsdp", "FSDP")):
        row = rows[name]
        assert row["exit_status"] == 0, row
        assert (row["engine"], row["processes"]) == (engine, 2)
        assert len(row["step_s"]) == 2 and all(s > 0 for s in row["step_s"])
        assert row["median_step_s"] == row["step_s"][1] and row["first_step_s"] == row["step_s"][0]
        assert row["peak_rss_gib"] > 0 and row["peak_gib"] is None  # no CUDA: the processes' ru_maxrss
    for name in ("zero2", "zero3"):
        assert rows[name] == {"skipped": "needs CUDA: accelerate runs DeepSpeed only on GPUs"}
    assert not any(path.name.startswith("run_") for path in (tmp_path / "work").iterdir())  # rows cleaned up


def test_without_cuda_it_stops_at_once():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "needs a CUDA GPU and found none" in run.stderr and "--tiny" in run.stderr


FAILING = (
    "import sys; sys.stderr.write('Traceback\\n[rank0]: ValueError: bad row\\nChildFailedError:\\n'); sys.exit(1)"
)
HANGING = "import time; time.sleep(60)"
# A stand-in worker: `python -c CODE SCRIPT --worker RESULT_PREFIX -- ...` writes one process's result.
SUCCEEDING = (
    "import json, sys; json.dump({'engine': 'NO', 'processes': 1, 'mixed_precision': 'no', 'step_s': [3.0, 1.0, 2.0], "
    "'start_s': 1.0, 'after_steps_s': 1.0, 'peak_gib': None, 'peak_steps_gib': None, 'peak_rss_gib': 0.5}, "
    "open(sys.argv[3] + '.rank0.json', 'w'))"
)


def test_a_failing_or_hanging_row_is_reported_and_the_others_run(check, monkeypatch, tmp_path):
    launches = {"ddp": FAILING, "fsdp": HANGING, "zero2": SUCCEEDING}
    monkeypatch.setattr(check, "row_launch", lambda row, tiny: ([sys.executable, "-c", launches[row]], {}, []))
    monkeypatch.setattr(check, "save_initial_pipeline", lambda init_dir, tiny: 0.0)
    output = tmp_path / "result.json"
    args = ["--tiny", "--workdir", str(tmp_path), "--output", str(output), "--rows", "ddp,fsdp,zero2"]
    rows = check.main([*args, "--row-timeout", "2"])["rows"]
    assert rows["ddp"]["exit_status"] == 1 and rows["ddp"]["error"] == "ValueError: bad row"
    assert rows["fsdp"]["exit_status"] == "killed after --row-timeout 2 s"
    assert rows["zero2"]["exit_status"] == 0
    assert (rows["zero2"]["first_step_s"], rows["zero2"]["median_step_s"]) == (3.0, 1.5)
    assert json.loads(output.read_text())["rows"] == rows


def test_last_error_line_is_the_childs_exception(check):
    log = "Traceback (most recent call last):\n[rank0]: torch.OutOfMemoryError: CUDA out of memory.\n"
    log += "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \nsubprocess.CalledProcessError: x\n"
    assert check.last_error_line(log) == "torch.OutOfMemoryError: CUDA out of memory."
    assert check.last_error_line("no exception here\nlast words\n\n") == "last words"


@pytest.mark.parametrize(
    "row, distributed_type, zero_stage",
    [("ddp", "MULTI_GPU", None), ("fsdp", "FSDP", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3)],
)
def test_gpu_rows_launch_the_documented_configs(check, row, distributed_type, zero_stage):
    command, env, options = check.row_launch(row, tiny=False)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert command[-2:] == ["--num_processes", "1"]
    config = load_config_from_file(command[4])
    assert config.distributed_type == DistributedType[distributed_type]
    assert (config.deepspeed_config or {}).get("zero_stage") == zero_stage
    if row == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
