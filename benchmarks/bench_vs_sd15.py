#!/usr/bin/env python
"""TruePose against a plain SD-1.5 generation of the same size, in one run, with the computed attention floor.

Random weights, nothing downloaded. Both sides use the same UNet weights (bench_step's `build_unets`: the plain UNet
shares TargetNet's), the same VAE, DDIM with SD-1.5's schedule, the same size, steps, guidance 2 (batch 2 through
the UNet) and dtype:

- plain: diffusers' ``StableDiffusionPipeline`` (UNet + VAE decode) with the text encoder replaced by a fixed
  `(1, 77, 768)` prompt embedding (the unconditional one zeros), no safety checker;
- TruePose: ``TruePosePipeline`` built as bench_step builds it (SourceNet, CLIP ViT on the source and its region
  crops, parsing passed in, keypoint pose), its time split by part with bench_step's `time_generation`.

Per denoising step: the median UNet / TargetNet call inside the generation. The attention floor is computed from
the plain UNet's layer shapes (a meta-device pass under ``torch.utils.flop_counter``: matmul, convolution and
attention FLOPs, 2 per multiply-add): a TruePose step does the plain step's work plus, in every self-attention layer,
the conditional rows' attention over the source tokens (q.k and p.v; the source keys/values are projected once per
generation, the unconditional rows skip the source). floor = (plain FLOPs + extra attention FLOPs) / plain FLOPs.
Also given: the same with the step's cross-attention over TruePose's one image-embedding token instead of 77 prompt
tokens (what TargetNet computes), which is why a measured step ratio can sit below the floor. The time floor is the
same extra work timed instead of counted: per ``attn1`` layer shape, the conditional row's attention through the
library's `fused_reference_attention` over ``[own ; source]`` keys minus plain SDPA over its own keys (median of
``--repeats``, at least 5), summed over the layers and added to the measured plain step. Where attention runs at a
lower FLOP rate than the rest of the step (CPU), the time floor lies above the FLOP floor.

``--profile`` adds where a TruePose step's time goes beyond the plain step's: one plain UNet step and one TargetNet
step as the pipeline runs it (source keys/values projected once), both with the one-token context, under
``torch.profiler``, self time per operator, the largest differences first.

Prints tables and, on its last line, one JSON object. Examples::

    python benchmarks/bench_vs_sd15.py --quick                  # reduced sizes, < 1 min on one CPU thread
    python benchmarks/bench_vs_sd15.py --steps 3                # full size on CPU, 3 steps (ratios per step hold)
    python benchmarks/bench_vs_sd15.py --device cuda --output vs_sd15.json
    python benchmarks/bench_vs_sd15.py --steps 5 --profile     # + the step's time by operator, TruePose vs plain
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_step import (  # noqa: E402
    EMBED_DIM,
    FULL,
    GENERATION_PARTS,
    QUICK,
    ComponentTimer,
    Size,
    build_pipeline,
    build_unets,
    machine_description,
    make_step_setup,
    make_sync,
    print_table,
    time_generation,
    time_round_robin,
    unet_kwargs,
)
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import Attention  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from truepose.models.attention import fused_reference_attention, hpfa_log_weights  # noqa: E402
from truepose.pipeline import SD15_SCHEDULER_CONFIG  # noqa: E402

TINY = Size(
    name="tiny (UNet 32-64-64-64, VAE 32x4, 2-layer CLIP, 128x88)",
    unet_channels=(32, 64, 64, 64),
    height=128,
    width=88,
    steps=2,
    vae_channels=(32, 32, 32, 32),
    clip=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=32,
        image_size=224,
        projection_dim=EMBED_DIM,
    ),
)
PROMPT_TOKENS = 77  # SD-1.5's CLIP text sequence length
GUIDANCE_SCALE = 2.0
PROFILE_ROWS = 12  # operators printed by --profile (the JSON has all)


# ----------------------------------------------------------------------------------------------------------------------
# Attention floor
# ----------------------------------------------------------------------------------------------------------------------


def self_attention_layers(
    size: Size, batch: int = 2, context_tokens: int = PROMPT_TOKENS
) -> tuple[list[dict[str, int]], int]:
    """The plain UNet's ``attn1`` layers (tokens, heads, head_dim) and the FLOPs of one batch-``batch`` step.

    ``context_tokens``: length of the cross-attention context (77 prompt tokens; TruePose's is 1 image embedding).

    Runs the UNet on the meta device (no memory, no compute) under ``FlopCounterMode``.
    """
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_kwargs(size)).eval()
        latents = torch.empty(batch, 4, size.height // 8, size.width // 8)
        prompt = torch.empty(batch, context_tokens, EMBED_DIM)
        timestep = torch.tensor(500)
    layers: list[dict[str, int]] = []

    def record(module: Attention, args: tuple, kwargs: dict) -> None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        layers.append(
            {"tokens": hidden_states.shape[1], "heads": module.heads, "head_dim": module.inner_dim // module.heads}
        )

    for name, module in unet.named_modules():
        if name.endswith("attn1") and isinstance(module, Attention):
            module.register_forward_pre_hook(record, with_kwargs=True)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(latents, timestep, encoder_hidden_states=prompt)
    return layers, counter.get_total_flops()


def extra_attention_flops(layers: list[dict[str, int]], conditional_rows: int = 1) -> int:
    """FLOPs the conditional rows add by also attending to the source tokens (as many as the layer's own tokens).

    Per layer and conditional row: ``tokens x source_tokens`` scores (q.k) and as many weighted sums of values (p.v),
    each ``heads x head_dim`` multiply-adds, 2 FLOPs each. The keys/values of the source are projected once per
    generation, so no projection FLOPs per step.
    """
    total = 0
    for layer in layers:
        source_tokens = layer.get("source_tokens", layer["tokens"])
        per_product = 2 * conditional_rows * layer["heads"] * layer["tokens"] * source_tokens * layer["head_dim"]
        total += 2 * per_product  # q.k and p.v
    return total


def attention_floor(plain_flops: int, layers: list[dict[str, int]], conditional_rows: int = 1) -> float:
    """(plain step FLOPs + extra attention FLOPs) / plain step FLOPs."""
    return (plain_flops + extra_attention_flops(layers, conditional_rows)) / plain_flops


def time_extra_attention(
    layers: list[dict[str, int]], device: torch.device, dtype: torch.dtype, sync: Callable[[], None], repeats: int
) -> float:
    """Seconds per step the conditional row spends on the source tokens: the sum over ``layers`` of (the library's
    fused attention over ``[own ; source]`` keys with HPFA weights) minus (plain SDPA over the own keys), each the
    median of ``repeats`` calls (after a warm-up, the two interleaved, bench_step's `time_round_robin`) with random
    inputs of the layer's shape; one timing per distinct shape."""
    generator = torch.Generator().manual_seed(3)
    seconds_by_shape: dict[tuple[int, int, int, int], float] = {}
    total = 0.0
    for layer in layers:
        shape = (layer["tokens"], layer.get("source_tokens", layer["tokens"]), layer["heads"], layer["head_dim"])
        if shape not in seconds_by_shape:
            tokens, source_tokens, heads, head_dim = shape
            query, key, value = (
                torch.randn(1, heads, tokens, head_dim, generator=generator).to(device, dtype) for _ in range(3)
            )
            source_key, source_value = (
                torch.randn(1, heads, source_tokens, head_dim, generator=generator).to(device, dtype) for _ in range(2)
            )
            person = torch.rand(1, source_tokens, generator=generator).to(device)
            log_weight = hpfa_log_weights(person, sigma=0.3, delta=0.3)
            calls = {
                "with_source": functools.partial(
                    fused_reference_attention, query, key, value, source_key, source_value, log_weight
                ),
                "own_only": functools.partial(torch.nn.functional.scaled_dot_product_attention, query, key, value),
            }
            with torch.no_grad():
                for call in calls.values():  # warm-up
                    call()
                times = time_round_robin(calls, repeats, sync)
            seconds_by_shape[shape] = float(np.median(times["with_source"]) - np.median(times["own_only"]))
        total += seconds_by_shape[shape]
    return total


# ----------------------------------------------------------------------------------------------------------------------
# Where the step's extra time goes
# ----------------------------------------------------------------------------------------------------------------------


def profile_step_difference(
    unets: dict[str, torch.nn.Module], size: Size, device: torch.device, dtype: torch.dtype, sync: Callable[[], None]
) -> list[dict]:
    """Self time per operator (ms; CUDA kernel time on a GPU) of one plain UNet step and one TargetNet HPFA+CAA step
    as the pipeline runs it (source keys/values projected once, the unconditional row without the source), both
    batch 2 with the same one-token context, under ``torch.profiler`` after a warm-up call of each; one row per operator,
    the largest TruePose-minus-plain difference first (with each operator's number of calls)."""
    setup = make_step_setup(size, unets["source"], device, dtype)
    target_unet = unets["caa"]
    references = target_unet.project_source(target_unet.prepare_reference(setup.source_reference, setup.latent_size))
    x, t, context = setup.latents, setup.timestep, setup.encoder_hidden_states
    steps = {
        "plain": lambda: unets["plain"](x, t, context, return_dict=False),
        "truepose": lambda: target_unet(
            x, t, context, pose_features=setup.pose_features, layer_references=references, return_dict=False
        ),
    }
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    events: dict[str, dict[str, tuple[float, int]]] = {}  # step -> operator -> (self ms, calls)
    with torch.inference_mode():
        for step in steps.values():  # warm-up, both before either is profiled
            step()
        sync()
        for name, step in steps.items():
            with profile(activities=activities) as profiler:
                step()
                sync()
            events[name] = {
                event.key: ((event.self_device_time_total if on_gpu else event.self_cpu_time_total) / 1e3, event.count)
                for event in profiler.key_averages()
            }
    rows = []
    for op in set(events["plain"]) | set(events["truepose"]):
        (plain_ms, plain_calls), (truepose_ms, truepose_calls) = (events[name].get(op, (0.0, 0)) for name in steps)
        rows.append(
            {"op": op, "plain_ms": plain_ms, "truepose_ms": truepose_ms, "plain_calls": plain_calls,
             "truepose_calls": truepose_calls}
        )  # fmt: skip
    return sorted(rows, key=lambda row: row["truepose_ms"] - row["plain_ms"], reverse=True)


# ----------------------------------------------------------------------------------------------------------------------
# Plain SD-1.5 generation
# ----------------------------------------------------------------------------------------------------------------------


def build_plain_pipeline(unet: UNet2DConditionModel, vae: torch.nn.Module) -> StableDiffusionPipeline:
    """``StableDiffusionPipeline`` over ``unet`` and ``vae`` without text encoder, tokenizer or safety checker."""
    pipe = StableDiffusionPipeline(
        vae,
        None,
        None,
        unet,
        DDIMScheduler(**SD15_SCHEDULER_CONFIG),
        None,
        None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_plain_generation(
    pipe: StableDiffusionPipeline, size: Size, steps: int, prompt_embeds: torch.Tensor, sync: Callable[[], None]
) -> dict:
    """One plain generation with ``steps`` steps, split into UNet, VAE decode and glue."""
    timer = ComponentTimer(sync)
    timer.module(pipe.unet, "unet")
    timer.method(pipe.vae, "decode", "vae_decode")
    try:
        sync()
        start = time.perf_counter()
        pipe(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=torch.zeros_like(prompt_embeds),
            height=size.height,
            width=size.width,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE_SCALE,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )
        sync()
        total = time.perf_counter() - start
    finally:
        timer.remove()
    parts = {name: timer.total(name) for name in ("unet", "vae_decode")}
    return {
        "steps": steps,
        "total_s": total,
        "parts_s": parts,
        "glue_s": total - sum(parts.values()),
        "step_s": float(np.median(timer.calls["unet"])),
        "unet_calls": len(timer.calls["unet"]),
    }


def median_run(runs: list[dict]) -> dict:
    """The run whose total time is the median (the lower one for an even count)."""
    ordered = sorted(runs, key=lambda run: run["total_s"])
    return ordered[(len(ordered) - 1) // 2]


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="reduced sizes (UNet 64-128-256-256, 256x176, 5 steps)")
    sizes.add_argument("--tiny", action="store_true", help="test sizes (UNet 32-64-64-64, 128x88, 2 steps)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 35 full, 5 quick, 2 tiny)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=1, help="timed generations per side (median reported)")
    parser.add_argument("--output", default=None, help="also write the JSON to this file")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one plain and one TruePose step by operator (torch.profiler)",
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    load_before = os.getloadavg()
    size = TINY if args.tiny else QUICK if args.quick else FULL
    steps = args.steps or size.steps
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    sync = make_sync(device)
    print(f"# TruePose vs plain SD-1.5: {size.name}, {steps} DDIM steps, guidance {GUIDANCE_SCALE}, {dtype}, {device}")

    layers, plain_flops = self_attention_layers(size)
    extra_flops = extra_attention_flops(layers)
    floor = (plain_flops + extra_flops) / plain_flops
    _, one_token_flops = self_attention_layers(size, context_tokens=1)
    floor_one_token = (one_token_flops + extra_flops) / plain_flops

    unets = build_unets(size, device, dtype)
    truepose_pipe = build_pipeline(size, unets, device, dtype)
    plain_pipe = build_plain_pipeline(unets["plain"], truepose_pipe.vae)
    prompt_embeds = torch.randn(1, PROMPT_TOKENS, EMBED_DIM, generator=torch.Generator().manual_seed(2))
    prompt_embeds = prompt_embeds.to(device, dtype)

    time_plain_generation(plain_pipe, size, 2, prompt_embeds, sync)  # warm-up
    time_generation(truepose_pipe, size, 2, device, sync)
    plain_runs, truepose_runs = [], []
    for _ in range(args.repeats):  # interleaved, so a change of machine load hits both sides alike
        plain_runs.append(time_plain_generation(plain_pipe, size, steps, prompt_embeds, sync))
        truepose_runs.append(time_generation(truepose_pipe, size, steps, device, sync))
    plain, truepose = median_run(plain_runs), median_run(truepose_runs)

    ratio_total = truepose["total_s"] / plain["total_s"]
    ratio_step = truepose["targetnet_step_s"] / plain["step_s"]
    ratio_loop = truepose["parts_s"]["targetnet"] / plain["parts_s"]["unet"]
    extra_attention_s = time_extra_attention(layers, device, dtype, sync, max(args.repeats, 5))
    time_floor = (plain["step_s"] + extra_attention_s) / plain["step_s"]

    print(f"\n## Generation, {steps} steps, median of {args.repeats} (s)")
    rows = [
        ["end to end", f"{plain['total_s']:.3f}", f"{truepose['total_s']:.3f}", f"{ratio_total:.3f}"],
        ["denoising step (median call)", f"{plain['step_s']:.4f}", f"{truepose['targetnet_step_s']:.4f}",
         f"{ratio_step:.3f}"],
        ["denoising calls (sum)", f"{plain['parts_s']['unet']:.3f}", f"{truepose['parts_s']['targetnet']:.3f}",
         f"{ratio_loop:.3f}"],
        ["VAE decode", f"{plain['parts_s']['vae_decode']:.3f}", f"{truepose['parts_s']['vae_decode']:.3f}", "-"],
    ]  # fmt: skip
    print_table(["", "plain SD-1.5", "TruePose", "TruePose / plain"], rows)

    print("\n## TruePose split (s)")
    rows = []
    for name in (*GENERATION_PARTS, "glue"):
        seconds = truepose["glue_s"] if name == "glue" else truepose["parts_s"][name]
        rows.append([name, f"{seconds:.3f}", f"{seconds / truepose['total_s']:.1%}"])
    rows.append(["total", f"{truepose['total_s']:.3f}", "100%"])
    print_table(["part", "s", "share"], rows)
    print(f"plain SD-1.5 glue (scheduler, CFG, image postprocessing): {plain['glue_s']:.3f} s")

    print("\n## Attention floor (batch 2, conditional row attends to the source, K/V projected once)")
    print_table(
        ["plain step GFLOP", "extra attention GFLOP", "floor", "floor, 1-token context", "extra attention s",
         "time floor", "measured step", "measured end to end"],
        [[f"{plain_flops / 1e9:.1f}", f"{extra_flops / 1e9:.2f}", f"{floor:.4f}", f"{floor_one_token:.4f}",
          f"{extra_attention_s:.4f}", f"{time_floor:.4f}", f"{ratio_step:.3f}", f"{ratio_total:.3f}"]],
    )  # fmt: skip
    print(
        "floor: plain step (77 prompt tokens) + extra attention; floor, 1-token context: the same with the step's "
        "cross-attention over TruePose's one image-embedding token (what TargetNet computes); time floor: measured "
        "plain step + the extra attention timed layer by layer"
    )
    plain_rate = plain_flops / plain["step_s"] / 1e9
    attention_rate = extra_flops / extra_attention_s / 1e9 if extra_attention_s > 0 else None  # None: lost in noise
    print(
        f"FLOP rate: plain step {plain_rate:.1f} GFLOP/s, extra attention {attention_rate or float('nan'):.1f} GFLOP/s"
    )

    profile_rows = None
    if args.profile:
        profile_rows = profile_step_difference(unets, size, device, dtype, sync)
        plain_total = sum(row["plain_ms"] for row in profile_rows)
        truepose_total = sum(row["truepose_ms"] for row in profile_rows)
        print(
            f"\n## Profile of one step by operator, self time (ms): plain {plain_total:.1f}, TruePose {truepose_total:.1f}"
        )
        shown = profile_rows[:PROFILE_ROWS] + [
            {"op": "all other operators", **{key: sum(row[key] for row in profile_rows[PROFILE_ROWS:]) for key in ("plain_ms", "truepose_ms", "plain_calls", "truepose_calls")}}
        ]  # fmt: skip
        print_table(
            ["operator", "plain", "TruePose", "TruePose - plain", "of the plain step", "calls (plain / TruePose)"],
            [[row["op"], f"{row['plain_ms']:.1f}", f"{row['truepose_ms']:.1f}", f"{row['truepose_ms'] - row['plain_ms']:+.1f}",
              f"{(row['truepose_ms'] - row['plain_ms']) / plain_total:+.2%}", f"{row['plain_calls']} / {row['truepose_calls']}"]
             for row in shown],
        )  # fmt: skip

    result = {
        "plain": plain,
        "truepose": truepose,
        "truepose_over_plain": {"end_to_end": ratio_total, "step": ratio_step, "denoising_calls": ratio_loop},
        "attention_floor": floor,
        "attention_floor_one_token_context": floor_one_token,
        "attention_time_floor": time_floor,
        "extra_attention_s": extra_attention_s,
        "gflop_per_s": {"plain_step": plain_rate, "extra_attention": attention_rate},
        "profile_ms": profile_rows,
        "floor_flops": {
            "plain_step": plain_flops,
            "plain_step_one_token_context": one_token_flops,
            "extra_attention": extra_flops,
            "self_attention_layers": layers,
        },
        "size": "tiny" if args.tiny else "quick" if args.quick else "full",
        "steps": steps,
        "guidance_scale": GUIDANCE_SCALE,
        "prompt_tokens": PROMPT_TOKENS,
        "repeats": args.repeats,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "machine": machine_description(device),
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": time.perf_counter() - wall_start,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    line = json.dumps(result, default=float)
    print(line)
    if args.output:
        with open(args.output, "w") as f:
            f.write(line + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
