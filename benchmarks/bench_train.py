#!/usr/bin/env python
"""Training throughput of `truepose train` at the demo model's layout: seconds per optimizer step for each option.

Every variant is the real command (`truepose.train.main`, in a process of its own) on synthetic pairs, batch 8,
96x64, v-prediction, started from the shipped demo model's weights (or ``--model``'s; weights do not change the cost)
with 16 attention heads per layer, the layout of the model shipped until 2026-12-04 (heads of 3 and 6 channels), but
for the ``heads16`` variants; the step times are read between optimizer steps and the median of the steps after
`--warmup` is reported. Variants:

- ``eager``: fp32, as the model shipped until 2026-12-04 was trained;
- ``bf16``: ``--mixed_precision bf16`` (accelerate's autocast);
- ``channels_last``: ``--channels_last``;
- ``channels_last_bf16``: both;
- ``heads16_channels_last``: ``--channels_last`` on the same weights with 16-channel attention heads (3 and 6 heads
  instead of 16 heads of 3 and 6 channels: a model change, the layout of the model shipped now);
- ``heads16_channels_last_worker``: the same with ``--dataloader_num_workers 1`` (the synthetic pairs drawn by a
  second process while the model trains);
- ``compile`` (only with ``--compile``): accelerate's ``dynamo_backend="inductor"`` (``torch.compile`` of the
  trained model); its first step includes the compilation.

    OMP_NUM_THREADS=2 python benchmarks/bench_train.py                  # ~5 minutes on a 2-core CPU, idle
    OMP_NUM_THREADS=2 python benchmarks/bench_train.py --steps 4 --warmup 1 --variants eager channels_last

Prints a table and, on its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

import truepose.train as train_module
from truepose.demo import SHIPPED_MODEL

VARIANTS = {
    "eager": [],
    "bf16": ["--mixed_precision", "bf16"],
    "channels_last": ["--channels_last"],
    "channels_last_bf16": ["--channels_last", "--mixed_precision", "bf16"],
    "heads16_channels_last": ["--channels_last"],
    "heads16_channels_last_worker": ["--channels_last", "--dataloader_num_workers", "1"],
    "compile": [],
}


def sixteen_heads(channels: int) -> int:
    """16 heads per attention layer: the layout of the model shipped until 2026-12-04 (heads of 3 and 6 channels)."""
    return 16


def heads_of_16_channels(channels: int) -> int:
    """Heads of 16 channels: the layout of the model shipped now (3 and 6 heads)."""
    return max(1, channels // 16)


def with_attention_heads(model: str, folder: str, heads: Callable[[int], int]) -> str:
    """A copy of the pipeline folder ``model`` whose UNets' attention layers of ``c`` channels have ``heads(c)`` heads
    (diffusers' ``attention_head_dim`` is the number of heads); the weights are the same."""
    shutil.copytree(model, folder)
    for unet in ("source_unet", "target_unet"):
        path = os.path.join(folder, unet, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["attention_head_dim"] = [heads(channels) for channels in config["block_out_channels"]]
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
    return folder


def step_times(arguments: list[str], dynamo_backend: str | None = None) -> list[float]:
    """Seconds of each optimizer step of one `truepose train` run with ``arguments``, read at the start of each
    step's `after_step` (EMA, logging, checkpoint): the first includes loading the model and data."""
    stamps = [time.perf_counter()]
    after_step = train_module.after_step

    def timed_after_step(*args, **kwargs):
        stamps.append(time.perf_counter())
        after_step(*args, **kwargs)

    if dynamo_backend:
        os.environ["ACCELERATE_DYNAMO_BACKEND"] = dynamo_backend
    train_module.after_step = timed_after_step
    try:
        train_module.main(arguments)
    finally:
        train_module.after_step = after_step
        os.environ.pop("ACCELERATE_DYNAMO_BACKEND", None)
    return [float(t) for t in np.diff(stamps)]


def run_variant(name: str, arguments: list[str]) -> dict:
    """One variant in a process of its own (accelerate's state is one per process): its step times, or its error."""
    command = [sys.executable, __file__, "--time_one_run", name, "--", *arguments]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return {"times": json.loads(run.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--time_one_run"]:  # a child of `run_variant`: argv is [flag, name, "--", train arguments]
        times = step_times(argv[3:], "inductor" if argv[1] == "compile" else None)
        print(json.dumps(times))
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the median")
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "compile"], choices=VARIANTS)
    parser.add_argument("--compile", action="store_true", help="also time the compile variant")
    parser.add_argument("--resolution", type=int, nargs=2, default=[96, 64], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--output", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.warmup >= args.steps:
        parser.error("--warmup must be smaller than --steps")
    variants = args.variants + (["compile"] if args.compile and "compile" not in args.variants else [])
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        old_layout = with_attention_heads(args.model, os.path.join(scratch, "sixteen_heads"), sixteen_heads)
        new_layout = with_attention_heads(args.model, os.path.join(scratch, "heads16"), heads_of_16_channels)
        for name in variants:
            arguments = [
                "--pretrained_model", new_layout if name.startswith("heads16") else old_layout,
                "--output_dir", os.path.join(scratch, name), "--dataset", "synthetic", "--num_pairs", "2000",
                "--resolution", *map(str, args.resolution), "--train_batch_size", str(args.batch_size),
                "--max_train_steps", str(args.steps), "--learning_rate", "3e-4", "--prediction_type", "v_prediction",
                "--checkpointing_steps", str(10 * args.steps), "--report_to", "none", *VARIANTS[name],
            ]  # fmt: skip
            run = run_variant(name, arguments)
            if "error" in run:  # a variant that fails is reported, the others still run
                results[name] = run
                continue
            times = run["times"]
            results[name] = {"step_s": float(np.median(times[args.warmup :])), "first_step_with_loading_s": times[0]}
            shutil.rmtree(os.path.join(scratch, name), ignore_errors=True)
    eager = results.get("eager", {}).get("step_s")
    print(f"\n# truepose train, batch {args.batch_size}, {args.resolution[0]}x{args.resolution[1]}, "
          f"median of steps {args.warmup + 1}-{args.steps}, torch threads {torch.get_num_threads()}")  # fmt: skip
    print("| variant | s/step | steps per hour | speed-up vs eager |\n|---|---|---|---|")
    for name, result in results.items():
        if "error" in result:
            print(f"| {name} | failed: {result['error']} | | |")
            continue
        speedup = f"{eager / result['step_s']:.2f}x" if eager else "-"
        print(f"| {name} | {result['step_s']:.3f} | {3600 / result['step_s']:.0f} | {speedup} |")
    summary = {
        "variants": results,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": args.batch_size,
        "resolution": args.resolution,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    line = json.dumps(summary)
    print(line)
    if args.output:
        with open(args.output, "w") as f:
            f.write(line + "\n")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
