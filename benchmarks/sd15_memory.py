#!/usr/bin/env python
"""Training memory and step time of TruePose at SD-1.5 + CLIP ViT-L/14 size (random weights), measured on CPU.

    OMP_NUM_THREADS=2 python benchmarks/sd15_memory.py [--resolution 256 176] [--steps 2]

Measured (peak RSS increase, ``/proc/self/status`` VmHWM reset before each phase; batch 1; ``--dtype bfloat16``
stores every weight, gradient and activation in bf16, which halves the footprint when float32 does not fit):

1. the weights of every component (RSS after building them, against 4 bytes x parameters);
2. the activations of one training forward + backward (SourceNet frozen, TargetNet and pose encoder trained;
   gradients pre-allocated, so the peak increase is activations and temporaries) without and with gradient
   checkpointing;
3. ``--steps`` real training steps (``truepose.train.training_loss`` + an optimizer step) with checkpointing: their
   time. The optimizer is plain SGD, so that the run fits beside other work in 24 GiB; AdamW's two states per trained
   parameter are computed (8 bytes each, 2 for 8-bit Adam), not measured.

Prints one JSON line: parameter counts, measured bytes, and step times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from diffusers import DDPMScheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step  # noqa: E402

from truepose.data import SyntheticPoseDataset  # noqa: E402
from truepose.data.common import collate_pairs  # noqa: E402
from truepose.models import TargetNet, TruePoseDenoiser  # noqa: E402
from truepose.train import make_batch, pair_generators, training_loss  # noqa: E402


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def count(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, nargs=2, default=[256, 176], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--skip_no_checkpointing", action="store_true")
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="of every weight and activation"
    )
    args = parser.parse_args(argv)
    peak = bench_step.PeakMemory(torch.device("cpu"))
    result: dict = {
        "machine": bench_step.machine_description(torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "resolution": args.resolution,
        "batch_size": 1,
        "dtype": args.dtype,
    }
    dtype = getattr(torch, args.dtype)

    before = rss()
    start = time.perf_counter()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)  # built in ``dtype``: no float32 copy on the way
    source_unet = bench_step.UNet2DConditionModel(**bench_step.unet_kwargs(bench_step.FULL))
    target_unet = TargetNet.from_unet(source_unet, region_embed_dim=bench_step.EMBED_DIM)
    pipe = bench_step.build_pipeline(
        bench_step.FULL, {"source": source_unet.to(dtype), "caa": target_unet.to(dtype)}, torch.device("cpu"), dtype
    )
    torch.set_default_dtype(torch.float32)
    result["build_s"] = round(time.perf_counter() - start, 1)
    components = ("source_unet", "target_unet", "pose_encoder", "vae", "image_encoder")
    result["parameters"] = {name: count(getattr(pipe, name)) for name in components}
    result["weights_bytes_measured"] = rss() - before
    result["weights_bytes_computed"] = dtype.itemsize * sum(result["parameters"].values())

    for module in (pipe.vae, pipe.image_encoder, pipe.source_unet):
        module.requires_grad_(False)
    denoiser = TruePoseDenoiser(pipe.source_unet, pipe.target_unet, pipe.pose_encoder)  # SourceNet frozen
    trained = [pipe.target_unet, pipe.pose_encoder]
    for module in trained:
        module.train()
    parameters = [p for module in trained for p in module.parameters()]
    result["trained_parameters"] = sum(p.numel() for p in parameters)
    for parameter in parameters:
        parameter.grad = torch.zeros_like(parameter)

    height, width = args.resolution
    dataset = SyntheticPoseDataset(args.steps + 2, image_size=(height, width), seed=0)
    batches = [make_batch(collate_pairs([dataset[i]])) for i in range(len(dataset))]
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

    def forward_backward(step: int) -> None:
        training_loss(
            pipe,
            denoiser,
            noise_scheduler,
            batches[step],
            0.0,
            pair_generators(0, step, 0, 0, 1),
            lambda loss: loss.backward(),
        )

    print(json.dumps(result), flush=True)  # progress: one JSON line per phase, the last one complete
    activations = result["activation_bytes_measured"] = {}
    with peak.low_mmap_threshold():
        pipe.target_unet.enable_gradient_checkpointing()
        start = time.perf_counter()
        activations["gradient_checkpointing"] = peak.measure(lambda: forward_backward(1))
        result["forward_backward_s"] = {"gradient_checkpointing": round(time.perf_counter() - start, 1)}
        print(json.dumps(result), flush=True)
        if not args.skip_no_checkpointing:
            pipe.target_unet.disable_gradient_checkpointing()
            start = time.perf_counter()
            activations["no_checkpointing"] = peak.measure(lambda: forward_backward(0))
            result["forward_backward_s"]["no_checkpointing"] = round(time.perf_counter() - start, 1)
            pipe.target_unet.enable_gradient_checkpointing()
            print(json.dumps(result), flush=True)

    optimizer = torch.optim.SGD(parameters, lr=1e-6)
    times = []
    for step in range(args.steps):
        start = time.perf_counter()
        forward_backward(2 + step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        times.append(time.perf_counter() - start)
    result["step_s"] = [round(t, 1) for t in times]
    result["median_step_s"] = round(statistics.median(times), 1)
    result["rss_after_steps_bytes"] = rss()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
