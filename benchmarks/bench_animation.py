"""Animation and source K/V caching: what one photo along T poses costs per frame, and a step with cached K/V.

Two cases, measured in one run, same machine, random weights at full SD-1.5 sizes (``--quick``: reduced sizes):

1. **Source K/V caching on single images** (batch 2, classifier-free guidance): one TargetNet step with HPFA+CAA whose
   source keys/values are projected once per generation (``TargetNet.project_source``, what the pipeline does) vs the
   same step projecting them at every step vs reference attention (``AttnProcessor2_0`` over ``[x ; source]``, the
   Animate Anyone baseline of ``bench_step.py``). Round-robin, median of ``--repeats``.
2. **Animation vs single-image calls**: ``TruePoseAnimationPipeline`` on T = ``--frames`` poses (batches of
   ``--frames-per-batch``, shared noise) vs single-image ``TruePosePipeline`` calls on the same poses. Times are split
   by component (SourceNet, CLIP, VAE encode/decode, the denoising loop ``pipe.denoise``). ``--steps`` steps are run;
   the 35-step figures scale the denoising loops linearly and keep every other part as measured. Single-image calls
   are identical work, so ``--single-calls`` of them are run (default: all T) and the T-call total is their mean x T.

The last line is one JSON object; ratios are ``x / y``:

| key | meaning | target (issue 13) |
|---|---|---|
| ``animation_frame_over_single_denoise`` | animation time per frame / denoising-loop time of a single-image call | <= 1.02 |
| ``caa_cached_over_reference`` | HPFA+CAA step with cached source K/V / reference attention step | <= 1.00 |

    python benchmarks/bench_animation.py --steps 2 --single-calls 2          # full size, CPU: tens of minutes
    python benchmarks/bench_animation.py --quick                              # reduced sizes, a minute or two
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_step import (  # noqa: E402
    FULL,
    QUICK,
    ComponentTimer,
    ReferenceAttnProcessor,
    build_pipeline,
    build_unets,
    machine_description,
    make_person,
    make_step_setup,
    make_sync,
    print_table,
    time_round_robin,
)

from truepose import TruePoseAnimationPipeline  # noqa: E402

TARGETS = {"animation_frame_over_single_denoise": 1.02, "caa_cached_over_reference": 1.00}
PARTS = ("denoise", "sourcenet", "clip", "vae_encode", "vae_decode", "pose_encoder")


def step_times(size, unets, device, dtype, repeats: int, sync) -> dict[str, float]:
    """Median ms of one batch-2 step: reference attention, HPFA+CAA projecting source K/V per step, and cached."""
    setup = make_step_setup(size, unets["source"], device, dtype)
    layer_references = unets["caa"].prepare_reference(setup.source_reference, setup.latent_size)
    with torch.inference_mode():
        cached_references = unets["caa"].project_source(layer_references)
    for name, processor in unets["reference"].attn_processors.items():
        if isinstance(processor, ReferenceAttnProcessor):
            processor.tokens = setup.source_reference.bank[name]
    x, t, emb, pose = setup.latents, setup.timestep, setup.encoder_hidden_states, setup.pose_features

    def target_step(references):
        def call():
            with torch.inference_mode():
                return unets["caa"](x, t, emb, pose_features=pose, layer_references=references, return_dict=False)

        return call

    def reference_step():
        with torch.inference_mode():
            return unets["reference"](x, t, emb, return_dict=False)

    calls = {
        "reference": reference_step,
        "caa": target_step(layer_references),
        "caa_cached": target_step(cached_references),
    }
    with torch.inference_mode():
        cached_out, uncached_out = calls["caa_cached"]()[0], calls["caa"]()[0]
    max_error = float((cached_out - uncached_out).abs().max())
    for call in calls.values():  # warm-up
        call()
    times = time_round_robin(calls, repeats, sync)
    for processor in unets["reference"].attn_processors.values():
        if isinstance(processor, ReferenceAttnProcessor):
            processor.tokens = None
    return {name: 1000 * statistics.median(values) for name, values in times.items()} | {"max_abs_error": max_error}


def timed_call(pipe, sync, call) -> dict:
    """Run ``call()``; wall time and the time inside each pipeline part."""
    timer = ComponentTimer(sync)
    timer.module(pipe.source_unet, "sourcenet")
    timer.module(pipe.pose_encoder, "pose_encoder")
    timer.method(pipe.vae, "encode", "vae_encode")
    timer.method(pipe.vae, "decode", "vae_decode")
    timer.method(pipe, "encode_image", "clip")
    timer.method(pipe, "denoise", "denoise")
    try:
        sync()
        start = time.perf_counter()
        call()
        sync()
        total = time.perf_counter() - start
    finally:
        timer.remove()
    parts = {name: timer.total(name) for name in PARTS}
    return {"total_s": total, "parts_s": parts, "other_s": total - sum(parts.values())}


def at_steps(measured: dict, run_steps: int, steps: int) -> dict:
    """The split at ``steps`` denoising steps: the loop scaled linearly, every other part as measured."""
    parts = dict(measured["parts_s"])
    parts["denoise"] *= steps / run_steps
    return {"total_s": sum(parts.values()) + measured["other_s"], "parts_s": parts, "other_s": measured["other_s"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (UNet 64-128-256-256, 256x176)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--frames-per-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps run (default 35; quick 5)")
    parser.add_argument("--extrapolate-to", type=int, default=35)
    parser.add_argument("--single-calls", type=int, default=None, help="single-image calls run (default --frames)")
    parser.add_argument("--repeats", type=int, default=3, help="step timings: round-robin repeats (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    size = QUICK if args.quick else FULL
    device, dtype = torch.device(args.device), torch.float32 if args.device == "cpu" else torch.float16
    steps = args.steps or size.steps
    single_calls = args.single_calls or args.frames
    sync = make_sync(device)
    started, wall = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.perf_counter()
    print(f"# {size.name}; device {args.device} ({machine_description(device)}), {dtype}")
    print(f"# torch {torch.__version__}, load {os.getloadavg()}")

    unets = build_unets(size, device, dtype)

    # 1. Source K/V caching, one step
    step_ms = step_times(size, unets, device, dtype, args.repeats, sync)
    print("\n## One TargetNet step, batch 2 (CFG), median of", args.repeats, "(ms)")
    print_table(
        ["variant", "ms", "/reference"],
        [
            [label, f"{step_ms[key]:.0f}", f"{step_ms[key] / step_ms['reference']:.3f}"]
            for key, label in (
                ("reference", "reference attention (AttnProcessor2_0 over [x;src])"),
                ("caa", "HPFA+CAA, source K/V projected at every step"),
                ("caa_cached", "HPFA+CAA, source K/V projected once (pipeline)"),
            )
        ],
    )
    print(f"max |cached - uncached| noise prediction: {step_ms['max_abs_error']:.2e}")

    # 2. Animation vs single-image calls
    pipe = build_pipeline(size, unets, device, dtype)
    animation = TruePoseAnimationPipeline(**pipe.components)
    animation.set_progress_bar_config(disable=True)
    source, parsing, keypoints = make_person(size.height, size.width)
    poses = np.stack([keypoints] * args.frames)
    poses[:, 2:8, 1] += np.linspace(0, size.height / 16, args.frames)[:, None]  # arms move
    common = {"source_parsing": parsing, "num_inference_steps": steps, "guidance_scale": 2.0, "output_type": "np"}

    def single(i: int):
        return pipe(source, poses[i], generator=torch.Generator().manual_seed(0), **common)

    def animate():
        return animation(
            source, poses, frames_per_batch=args.frames_per_batch, generator=torch.Generator().manual_seed(0), **common
        )

    pipe(source, poses[0], **{**common, "num_inference_steps": 1})  # warm-up
    singles = [timed_call(pipe, sync, lambda i=i: single(i)) for i in range(single_calls)]
    single_run = {
        "total_s": statistics.mean(s["total_s"] for s in singles),
        "parts_s": {p: statistics.mean(s["parts_s"][p] for s in singles) for p in PARTS},
        "other_s": statistics.mean(s["other_s"] for s in singles),
    }
    animation_run = timed_call(animation, sync, animate)
    n, T = args.extrapolate_to, args.frames
    single_n, animation_n = at_steps(single_run, steps, n), at_steps(animation_run, steps, n)
    rows = []
    for label, run in ((f"{steps} steps (measured)", None), (f"{n} steps (loops scaled)", n)):
        s = single_run if run is None else single_n
        a = animation_run if run is None else animation_n
        rows.append(
            [
                label,
                f"{T * s['total_s']:.1f}",
                f"{a['total_s']:.1f}",
                f"{a['total_s'] / T:.2f}",
                f"{s['parts_s']['denoise']:.2f}",
                f"{a['total_s'] / T / s['parts_s']['denoise']:.3f}",
                f"{T * s['total_s'] / a['total_s']:.2f}x",
            ]
        )
    print(f"\n## {T} frames: animation (batches of {args.frames_per_batch}) vs {T} single-image calls (s)")
    print(f"single-image calls run: {single_calls} (the {T}-call total is their mean x {T})")
    print_table(
        ["", f"{T} single calls", "animation", "anim. per frame", "single denoise loop", "frame/loop", "speedup"], rows
    )
    print_table(
        ["part", "single call s", "animation s", "animation per frame s"],
        [
            [p, f"{single_run['parts_s'][p]:.2f}", f"{animation_run['parts_s'][p]:.2f}",
             f"{animation_run['parts_s'][p] / T:.2f}"]
            for p in PARTS
        ]
        + [["other", f"{single_run['other_s']:.2f}", f"{animation_run['other_s']:.2f}", f"{animation_run['other_s'] / T:.2f}"]],
    )  # fmt: skip

    result = {
        "animation_frame_over_single_denoise": animation_n["total_s"] / T / single_n["parts_s"]["denoise"],
        "caa_cached_over_reference": step_ms["caa_cached"] / step_ms["reference"],
        "animation_frame_over_single_denoise_measured": animation_run["total_s"]
        / T
        / single_run["parts_s"]["denoise"],
        "animation_denoise_per_frame_over_single_denoise": animation_run["parts_s"]["denoise"]
        / T
        / single_run["parts_s"]["denoise"],
        "caa_uncached_over_reference": step_ms["caa"] / step_ms["reference"],
        "caa_cached_over_uncached": step_ms["caa_cached"] / step_ms["caa"],
        "step_ms": {k: step_ms[k] for k in ("reference", "caa", "caa_cached")},
        "max_abs_error_cached_vs_uncached": step_ms["max_abs_error"],
        "frames": T,
        "frames_per_batch": args.frames_per_batch,
        "steps_run": steps,
        "extrapolated_to": n,
        "single_calls_run": single_calls,
        "single_call_s": single_run,
        "animation_s": animation_run,
        "speedup_over_single_calls": T * single_n["total_s"] / animation_n["total_s"],
        "targets": TARGETS,
        "size": "quick" if args.quick else "full",
        "device": args.device,
        "machine": machine_description(device),
        "torch": torch.__version__,
        "date": started,
        "wall_s": time.perf_counter() - wall,
        "loadavg_after": os.getloadavg(),
    }
    result["targets_met"] = {key: result[key] <= target for key, target in TARGETS.items()}
    print("\n## Targets:", ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in result["targets_met"].items()))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
