#!/usr/bin/env python
"""One check of TruePose at SD-1.5 size on one CUDA GPU (random weights, nothing downloaded); about 5 minutes.

    python benchmarks/gpu_check.py [--output gpu_check.json] [--workdir /tmp/truepose-gpu-check]

Prints one JSON line with:

- ``generation``: fp16, 35 DDIM steps, 512x352, guidance 2 (CFG), at batch 1 and 4: seconds and peak
  ``torch.cuda.max_memory_allocated``;
- ``sdpa_kernel``: the SDPA kernel each attention form gets at the largest layer (``torch._fused_sdp_choice``): the
  library's form (HPFA as an additive bias) and the mask-free form of ``bench_step.py``, with and without CAA's
  region channels, and their times;
- ``cpu_offload``: the batch-1 generation again after ``enable_model_cpu_offload()``;
- ``training``: 10 steps of ``truepose train`` (both UNets and the pose encoder trained, AdamW, bf16 mixed precision
  where the GPU has it, else fp16; gradient checkpointing; 512x352, batch 4): median step time, first step, peak.

On a machine without CUDA it stops at once with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

import torch

HEIGHT, WIDTH, STEPS, BATCH_SIZES = 512, 352, 35, (1, 4)
TRAIN_BATCH_SIZE, TRAIN_STEPS = 4, 10


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check.py needs a CUDA GPU and found none (torch.cuda.is_available() is False); nothing was run. "
            "For CPU numbers use benchmarks/bench_step.py and benchmarks/sd15_memory.py."
        )
    return torch.device("cuda")


def gib(num_bytes: int) -> float:
    return round(num_bytes / 2**30, 2)


def build_pipeline(device: torch.device, dtype: torch.dtype):
    """TruePose at SD-1.5 + CLIP ViT-L/14 sizes with random weights, built on ``device``."""
    import bench_step

    from truepose.models import TargetNet

    with torch.device(device):
        torch.manual_seed(0)
        source_unet = bench_step.UNet2DConditionModel(**bench_step.unet_kwargs(bench_step.FULL))
        target_unet = TargetNet.from_unet(source_unet, region_embed_dim=bench_step.EMBED_DIM)
        source_unet.to(dtype), target_unet.to(dtype)
        pipe = bench_step.build_pipeline(bench_step.FULL, {"source": source_unet, "caa": target_unet}, device, dtype)
    return pipe


def time_generation(pipe, batch_size: int, steps: int, device: torch.device) -> dict:
    import bench_step

    source, parsing, keypoints = bench_step.make_person(HEIGHT, WIDTH)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    pipe(
        [source] * batch_size,
        [keypoints] * batch_size,
        source_parsing=[parsing] * batch_size,
        height=HEIGHT,
        width=WIDTH,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    torch.cuda.synchronize(device)
    return {"s": round(time.perf_counter() - start, 3), "peak_gib": gib(torch.cuda.max_memory_allocated(device))}


def time_training(init_dir: str, output_dir: str, device: torch.device) -> dict:
    """10 steps of ``truepose.train``; step ends read from its progress bar (synchronised)."""
    import truepose.train as train_module

    step_ends: list[float] = []

    class StepClock(train_module.tqdm):
        def update(self, n=1):
            torch.cuda.synchronize(device)
            step_ends.append(time.perf_counter())
            return super().update(n)

    mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    args = [
        "--pretrained_model", init_dir, "--output_dir", output_dir, "--num_pairs", "48",
        "--resolution", str(HEIGHT), str(WIDTH), "--train_batch_size", str(TRAIN_BATCH_SIZE),
        "--max_train_steps", str(TRAIN_STEPS), "--checkpointing_steps", str(TRAIN_STEPS), "--mixed_precision", mixed_precision, "--gradient_checkpointing",
        "--learning_rate", "1e-5", "--report_to", "none", "--dataloader_num_workers", "4",
    ]  # fmt: skip
    train_module.tqdm = StepClock
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        train_module.main(args)
    finally:
        train_module.tqdm = StepClock.__bases__[0]
    steps = [b - a for a, b in zip([start, *step_ends], step_ends)]
    return {
        "settings": f"{HEIGHT}x{WIDTH}, batch {TRAIN_BATCH_SIZE}, {TRAIN_STEPS} steps, {mixed_precision} mixed precision, gradient checkpointing, AdamW, "
        "SourceNet + TargetNet + pose encoder trained",
        "first_step_s": round(steps[0], 3),
        "median_step_s": round(statistics.median(steps[1:]), 3),
        "peak_gib": gib(torch.cuda.max_memory_allocated(device)),
        "wall_s_with_load_and_saves": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="also write the JSON here")
    parser.add_argument("--workdir", default="/tmp/truepose-gpu-check", help="scratch folder (about 35 GB written)")
    args = parser.parse_args(argv)
    device = require_cuda()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_step
    import diffusers

    result: dict = {
        "device": torch.cuda.get_device_name(device),
        "gpu_memory_gib": gib(torch.cuda.get_device_properties(device).total_memory),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }

    def report() -> None:
        line = json.dumps(result)
        if args.output:
            with open(args.output, "w") as f:
                f.write(line + "\n")

    start = time.perf_counter()
    pipe = build_pipeline(device, torch.float16)
    result["build_s"] = round(time.perf_counter() - start, 1)
    init_dir = os.path.join(args.workdir, "init")
    shutil.rmtree(args.workdir, ignore_errors=True)
    pipe.save_pretrained(init_dir)

    time_generation(pipe, 1, 2, device)  # warm-up
    result["generation"] = {
        "settings": f"fp16, {HEIGHT}x{WIDTH}, {STEPS} DDIM steps, guidance 2 (CFG)",
        **{f"batch_{b}": time_generation(pipe, b, STEPS, device) for b in BATCH_SIZES},
    }
    report()

    attention = bench_step.attention_check_and_timing(bench_step.FULL, 5, device, torch.float16, repeats=5)
    result["sdpa_kernel"] = {"shape": attention["shape"], "kernel": attention["sdpa_kernel"], "ms": attention["ms"]}
    report()

    pipe.enable_model_cpu_offload()
    torch.cuda.empty_cache()
    try:
        result["cpu_offload"] = time_generation(pipe, 1, STEPS, device)
    except RuntimeError as error:  # recorded, so that the training part still runs
        result["cpu_offload"] = {"error": str(error)[:300]}
    del pipe
    torch.cuda.empty_cache()
    report()

    result["training"] = time_training(init_dir, os.path.join(args.workdir, "run"), device)
    shutil.rmtree(args.workdir, ignore_errors=True)
    result["total_s"] = round(time.perf_counter() - start, 1)
    report()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
