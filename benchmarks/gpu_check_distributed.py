#!/usr/bin/env python
"""A few steps of ``truepose train`` under each engine on one CUDA GPU: DDP, FSDP2, DeepSpeed ZeRO-2 and ZeRO-3.

    python benchmarks/gpu_check_distributed.py [--output FILE] [--workdir DIR] [--rows ddp,fsdp,zero2,zero3]
    python benchmarks/gpu_check_distributed.py --tiny       # the same machinery on CPU, tiny model (tests)

SD-1.5 + CLIP ViT-L/14 sizes with random weights (built like ``gpu_check.py``, saved once to ``--workdir``), 512x352,
batch 4 per process, 6 steps, bf16 mixed precision, gradient checkpointing, AdamW, SourceNet + TargetNet + pose
encoder trained. Each row is its own ``accelerate launch --config_file examples/accelerate/<engine>.yaml
--num_processes 1`` of this script's worker mode, which runs ``truepose.train.main`` with its progress bar patched to
time the steps (CUDA-synchronised) and writes a JSON file per process. Per row: median s/step (steps 2..N), first
step, start (load + prepare) and after-steps (checkpoint + final save) seconds, peak
``torch.cuda.max_memory_allocated`` per GPU (whole run, and up to the last step), peak RSS per process, exit status,
and the last error line with the log's tail if the row failed; a failing row, or one killed after ``--row-timeout``
(180 s), does not stop the others. The rows are printed as one JSON line and written to ``--output`` (default
``$OUT/gpu_check_distributed.json`` when ``$OUT`` is set) after every row. About 5 minutes on one H200; each row
writes a checkpoint and a pipeline (about 30 GB, deleted after the row).

``--tiny``: the tiny test pipeline, 32x32, 2 steps, batch 1 per process, on CPU (gloo): DDP as 2 processes of
``torchrun --standalone`` and FSDP2 as 2 processes through ``tests/training/sharded_on_cpu.py``'s patch (accelerate
enables FSDP only on GPUs); DeepSpeed rows are reported as skipped (accelerate runs DeepSpeed only on GPUs). Peak
memory there is each process's ``ru_maxrss``. Without CUDA and without ``--tiny`` it stops at once with a message.

On the GPU machine (Python 3.12, torch 2.11, no network), DeepSpeed, diffusers, controlnet_aux, accelerate 1.16 and
the missing dependencies travel as wheels in ``.whl/`` (benchmarks/README.md says how they were made). From the
repository root, with ``.whl`` carried (one line):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 && python3 benchmarks/gpu_check_distributed.py --output $OUT/gpu_check_distributed.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROWS = ("ddp", "fsdp", "zero2", "zero3")
CONFIGS = {  # accelerate configs of the GPU rows, run with --num_processes 1
    "ddp": "examples/accelerate/multi_gpu_ddp.yaml",
    "fsdp": "examples/accelerate/fsdp.yaml",
    "zero2": "examples/accelerate/deepspeed_zero2.yaml",
    "zero3": "examples/accelerate/deepspeed_zero3.yaml",
}
FSDP_ON_CPU = os.path.join(ROOT, "tests", "training", "sharded_on_cpu.py")
FSDP_ENV = {  # what `accelerate launch` sets from examples/accelerate/fsdp.yaml (as tests/training/test_distributed.py)
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "NO_WRAP",
    "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
}
DEEPSPEED_ON_CPU = "needs CUDA: accelerate runs DeepSpeed only on GPUs"
LAUNCHER_ERRORS = ("ChildFailedError", "CalledProcessError")  # the launcher's own report of a failed child


def gib(num_bytes: float) -> float:
    return round(num_bytes / 2**30, 2)


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def last_error_line(log: str) -> str | None:
    """The last ``SomeError: message`` line of a failed run's log (a child's own exception rather than the
    launcher's report of it: torchrun's ChildFailedError, accelerate's CalledProcessError), or else its last
    non-empty line."""
    lines = [re.sub(r"^\[(default)?rank\d+\]:", "", line).strip() for line in log.splitlines()]
    errors = []
    for line in lines:
        exception = re.match(r"^(?:\w+\.)*(\w+(?:Error|Exception|Interrupt|Exit))(?::|$)", line)
        if exception and exception.group(1) not in LAUNCHER_ERRORS:
            errors.append(line)
    lines = [line for line in lines if line]
    return errors[-1] if errors else (lines[-1] if lines else None)


# --- worker: one process of a launch --------------------------------------------------------------------------------


def worker(argv: list[str]) -> None:
    """``--worker RESULT_PREFIX [--fsdp-on-cpu] -- <truepose train arguments>``: run ``truepose.train.main`` with
    step clocks and write ``RESULT_PREFIX.rank<RANK>.json``."""
    result_prefix, options = argv[0], argv[1 : argv.index("--")]
    train_args = argv[argv.index("--") + 1 :]
    if "--fsdp-on-cpu" in options:  # its module body lifts accelerate's GPU-only gate for FSDP
        spec = importlib.util.spec_from_file_location("sharded_on_cpu", FSDP_ON_CPU)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    import truepose.train as train_module

    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU") != "1"
    clock: dict = {"step_ends": []}

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepClock(train_module.tqdm):
        def __init__(self, *args, **kwargs):
            clock["steps_start"] = now()
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            clock["step_ends"].append(now())
            if cuda:
                clock["peak_steps"] = torch.cuda.max_memory_allocated()
            return super().update(n)

    check_launch = train_module.check_launch

    def recording_check_launch(accelerator, args):
        clock["engine"] = accelerator.distributed_type.value
        clock["processes"] = accelerator.num_processes
        clock["mixed_precision"] = accelerator.mixed_precision
        return check_launch(accelerator, args)

    train_module.tqdm, train_module.check_launch = StepClock, recording_check_launch
    start = time.perf_counter()
    train_module.main(train_args)
    end = now()
    ends = clock["step_ends"]
    steps = [b - a for a, b in zip([clock["steps_start"], *ends], ends)]
    result = {
        "engine": clock.get("engine"),
        "processes": clock.get("processes"),
        "mixed_precision": clock.get("mixed_precision"),
        "step_s": [round(s, 3) for s in steps],
        "start_s": round(clock["steps_start"] - start, 1),
        "after_steps_s": round(end - ends[-1], 1),
        "peak_gib": gib(torch.cuda.max_memory_allocated()) if cuda else None,
        "peak_steps_gib": gib(clock["peak_steps"]) if cuda else None,
        "peak_rss_gib": gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
    }
    with open(f"{result_prefix}.rank{os.environ.get('RANK', '0')}.json", "w") as f:
        json.dump(result, f)


# --- parent: the rows -----------------------------------------------------------------------------------------------


def row_launch(row: str, tiny: bool) -> tuple[list[str], dict[str, str], list[str]] | str:
    """The launcher command, extra environment and worker options of ``row``; or why it is skipped."""
    if tiny:
        if row in ("zero2", "zero3"):
            return DEEPSPEED_ON_CPU
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        env = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
        return (torchrun, {**env, **FSDP_ENV}, ["--fsdp-on-cpu"]) if row == "fsdp" else (torchrun, env, [])
    config = os.path.join(ROOT, CONFIGS[row])
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "1"]
    return launch, {}, []


def run_row(row: str, args: argparse.Namespace, init_dir: str) -> dict:
    """One row: its launch as a subprocess (own process group, killed after ``--row-timeout``), then the workers'
    results merged: rank 0's times, the largest peaks."""
    launch = row_launch(row, args.tiny)
    if isinstance(launch, str):
        return {"skipped": launch}
    command, env, options = launch
    output_dir = os.path.join(args.workdir, f"run_{row}")
    result_prefix = os.path.join(args.workdir, f"result_{row}")
    train_args = [
        "--pretrained_model", init_dir, "--output_dir", output_dir, "--num_pairs", str(args.num_pairs),
        "--resolution", *map(str, args.resolution), "--train_batch_size", str(args.batch_size),
        "--max_train_steps", str(args.steps), "--checkpointing_steps", str(args.steps),
        "--mixed_precision", args.mixed_precision, "--gradient_checkpointing", "--max_grad_norm", "1.0",
        "--learning_rate", "1e-5", "--report_to", "none", "--dataloader_num_workers", str(args.dataloader_workers),
    ]  # fmt: skip
    launch_words = [os.path.relpath(word, ROOT) if word.startswith(ROOT) else word for word in command[1:]]
    row_result: dict = {"launch": " ".join(launch_words), **({"env": env} if env else {})}
    for name in os.listdir(args.workdir):  # results of an earlier run in the same --workdir
        if name.startswith(f"result_{row}.rank"):
            os.remove(os.path.join(args.workdir, name))
    start = time.perf_counter()
    process = subprocess.Popen(
        [*command, os.path.abspath(__file__), "--worker", result_prefix, *options, "--", *train_args],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, log = process.communicate(timeout=args.row_timeout)
        row_result["exit_status"] = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, log = process.communicate()
        row_result["exit_status"] = f"killed after --row-timeout {args.row_timeout} s"
    row_result["wall_s"] = round(time.perf_counter() - start, 1)
    shutil.rmtree(output_dir, ignore_errors=True)
    ranks = []
    for name in sorted(os.listdir(args.workdir)):
        if name.startswith(f"result_{row}.rank"):
            with open(os.path.join(args.workdir, name)) as f:
                ranks.append(json.load(f))
    if row_result["exit_status"] != 0 or not ranks:
        return {**row_result, "error": last_error_line(log), "log_tail": log.splitlines()[-25:]}
    first, steps = ranks[0], ranks[0]["step_s"]
    peaks = {key: max(r[key] for r in ranks) if first[key] is not None else None for key in first if "peak" in key}
    return {
        **row_result,
        **{key: first[key] for key in ("engine", "processes", "mixed_precision")},
        "median_step_s": round(statistics.median(steps[1:] or steps), 3),
        "first_step_s": steps[0],
        "step_s": steps,
        "start_s": first["start_s"],
        "after_steps_s": first["after_steps_s"],
        **peaks,
    }


def save_initial_pipeline(init_dir: str, tiny: bool) -> float:
    """The pipeline every row starts from: the tiny test pipeline, or SD-1.5 sizes built on the GPU in fp16 (as
    ``gpu_check.py``); returns the seconds it took."""
    start = time.perf_counter()
    if tiny:
        from truepose.testing import tiny_pipeline

        tiny_pipeline(seed=0).save_pretrained(init_dir)
    else:
        sys.path.insert(0, HERE)
        from gpu_check import build_pipeline

        pipe = build_pipeline(torch.device("cuda"), torch.float16)
        pipe.save_pretrained(init_dir)
        del pipe
        torch.cuda.empty_cache()
    return round(time.perf_counter() - start, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_output = os.path.join(os.environ["OUT"], "gpu_check_distributed.json") if os.environ.get("OUT") else None
    parser.add_argument("--output", default=default_output, help="also write the JSON here (default: $OUT/...)")
    parser.add_argument("--workdir", help="scratch folder (default: a new temporary folder, removed at the end)")
    parser.add_argument("--tiny", action="store_true", help="tiny model, 32x32, 2 CPU processes per row")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--steps", type=int, help="training steps per row (default 6; --tiny: 2)")
    parser.add_argument("--batch-size", type=int, help="pairs per process (default 4; --tiny: 1)")
    parser.add_argument("--row-timeout", type=int, help="seconds before a row is killed (default 180; --tiny: 300)")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    if not rows or any(row not in ROWS for row in rows):
        parser.error(f"--rows must name some of {', '.join(ROWS)}, got {args.rows!r}")
    args.rows = rows
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check_distributed.py needs a CUDA GPU and found none (torch.cuda.is_available() is False); nothing "
            "was run. On CPU, --tiny runs the same rows with the tiny model (DDP and FSDP2 over 2 gloo processes)."
        )
    args.steps = args.steps or (2 if args.tiny else 6)
    args.row_timeout = args.row_timeout or (300 if args.tiny else 180)
    args.batch_size = args.batch_size or (1 if args.tiny else 4)
    args.resolution = (32, 32) if args.tiny else (512, 352)
    args.mixed_precision = "no" if args.tiny else "bf16"
    args.dataloader_workers = 0 if args.tiny else 4
    args.num_pairs = max(8, 2 * args.batch_size * args.steps)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    own_workdir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="truepose-gpu-check-distributed-")
    height, width = args.resolution
    result: dict = {
        "device": torch.cuda.get_device_name() if not args.tiny else f"CPU ({os.cpu_count()} cores)",
        "gpu_memory_gib": None if args.tiny else gib(torch.cuda.get_device_properties(0).total_memory),
        **{name: version(name) for name in ("torch", "accelerate", "deepspeed", "diffusers")},
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": f"{'tiny model' if args.tiny else 'SD-1.5 size'}, {height}x{width}, batch {args.batch_size} per "
        f"process, {args.steps} steps (median of steps 2..{args.steps}), {args.mixed_precision} mixed precision, "
        "gradient checkpointing, AdamW, SourceNet + TargetNet + pose encoder trained",
    }

    def report() -> None:
        if args.output:
            with open(args.output, "w") as f:
                f.write(json.dumps(result) + "\n")

    start = time.perf_counter()
    try:
        init_dir = os.path.join(args.workdir, "init")
        result["build_s"] = save_initial_pipeline(init_dir, args.tiny)
        result["rows"] = {}
        for row in args.rows:
            result["rows"][row] = run_row(row, args, init_dir)
            report()
    finally:
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - start, 1)
    report()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
