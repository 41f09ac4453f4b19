"""Learning evidence for the shipped demo model: held-out synthetic pairs, scored against baselines.

    OMP_NUM_THREADS=2 python examples/evaluate_demo_model.py --num_pairs 200 --output docs/demo_model_results.json \\
        --previous_model runs/previous-model --previous_resolution 96 64 --figure docs/images/demo_pairs.png

Rows: the VAE's reconstruction of the true target (what a perfect generator with this VAE would score), copying the
source image, the model (guidance 2.0), the same model with the source dropped (guidance 0: the unconditional
branch alone), with HPFA off at inference (sigma=1, delta=0: plain reference attention, on the same weights) or CAA
off (top-k 0), the paper's ablation (``--hpfa_off_model``: the same recipe trained with HPFA off, at this resolution),
and a previous model (``--previous_model``, run at its own resolution on the same pairs, which the renderer draws as
the same scene at any size of the same aspect, then resized bicubically to this resolution).

Columns, all against the ground-truth target:

- whole image: SSIM as the protocol computes it (skimage, window 51, on [0, 1]) and PSNR (data range 1);
- person region (the target parsing's non-background pixels): `region_ssim` and `region_psnr`;
- garment colour: `region_color_difference` (CIE76 ΔE of the mean CIELAB colour) of the upper and the lower
  clothes, averaged over the garments the target wears;
- garment pattern: `region_edge_ssim` (SSIM of the edge maps) over the same garments.

``--figure`` draws 8 pairs picked by ``numpy.random.default_rng(0)`` among the held-out pairs (not chosen by hand):
source | target pose | generated | ground truth.
"""

import argparse
import json

import numpy as np
import PIL.Image
import torch

from truepose.conditioning.pose import draw_skeleton, rescale_keypoints
from truepose.data import BACKGROUND_SETS, SyntheticPoseDataset
from truepose.demo import DEMO_BACKGROUNDS, DEMO_RESOLUTION, HELD_OUT_SEED, load_shipped_model
from truepose.evaluation import (
    identity_region_masks,
    psnr,
    region_color_difference,
    region_edge_ssim,
    region_psnr,
    region_ssim,
    ssim,
)
from truepose.pipeline import TruePosePipeline

GARMENTS = ("upper_clothes", "lower_clothes")
FIGURE_PAIRS = 8
TRUEPOSE = "TruePose (guidance 2.0)"
HPFA_OFF = "HPFA off at inference (sigma 1, delta 0)"
HPFA_OFF_TRAINED = "HPFA off in training (the paper's ablation: same recipe and steps)"
# row name -> (TargetNet settings changed from the model's own, guidance scale)
VARIANTS = {
    TRUEPOSE: ({}, 2.0),
    "source dropped (guidance 0)": ({}, 0.0),
    HPFA_OFF: ({"hpfa_sigma": 1.0, "hpfa_delta": 0.0}, 2.0),
    "CAA off (top-k 0)": ({"caa_top_k": 0}, 2.0),
}


def add_scoring_arguments(parser: argparse.ArgumentParser, num_pairs: int) -> None:
    """The options every script that scores demo models on held-out pairs takes (`--num_pairs` default: `num_pairs`)."""
    parser.add_argument("--resolution", type=int, nargs=2, default=list(DEMO_RESOLUTION), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--num_pairs", type=int, default=num_pairs)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch_size", type=int, default=20)
    parser.add_argument(
        "--backgrounds",
        choices=BACKGROUND_SETS,
        default=DEMO_BACKGROUNDS,
        help="the held-out pairs' backgrounds (the same people and poses either way; docs/data.md)",
    )


def held_out_items(num_pairs: int, size: tuple[int, int], backgrounds: str = DEMO_BACKGROUNDS) -> list[dict]:
    """The first `num_pairs` held-out synthetic pairs (seed `HELD_OUT_SEED`, never seen in training) at `size`, with
    `backgrounds` ("varied" or "studio")."""
    dataset = SyntheticPoseDataset(num_pairs, image_size=size, seed=HELD_OUT_SEED, backgrounds=backgrounds)
    return [dataset[i] for i in range(num_pairs)]


def load_for_scoring(path: str) -> TruePosePipeline:
    """The pipeline saved in `path`, in float32 (as `truepose demo` loads the shipped model), progress bars off."""
    pipe = TruePosePipeline.from_pretrained(path, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: TruePosePipeline, items: list[dict], steps: int, guidance_scale: float) -> list[np.ndarray]:
    images = pipe(
        [item["source_image"] for item in items],
        [item["target_keypoints"] for item in items],
        source_parsing=[item["source_parsing"] for item in items],
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=[torch.Generator().manual_seed(i) for i in range(len(items))],
    ).images
    return [np.asarray(image) for image in images]


def generate_all(pipe: TruePosePipeline, items: list[dict], steps: int, guidance_scale: float, batch_size: int) -> list[np.ndarray]:  # fmt: skip
    outputs = []
    for start in range(0, len(items), batch_size):
        outputs += generate(pipe, items[start : start + batch_size], steps, guidance_scale)
    return outputs


@torch.no_grad()
def reconstruct(pipe: TruePosePipeline, images: list, size: tuple[int, int]) -> list[np.ndarray]:
    """VAE encode -> decode of the true targets: the ceiling any generator with this VAE can reach."""
    latents = pipe.encode_source_latents(images, *size, pipe.device)
    decoded = pipe.image_processor.postprocess(pipe.decode_latents(latents), output_type="np")
    return [(image * 255).round().astype(np.uint8) for image in decoded]


def score(truth: np.ndarray, generated: np.ndarray, parsing: np.ndarray) -> dict[str, float]:
    """The table's columns for one `(H, W, 3)` uint8 pair and the target's ATR parsing map."""
    person = parsing != 0
    garments = [mask for region, mask in identity_region_masks(parsing, "atr").items() if region in GARMENTS]
    return {
        "ssim": ssim(truth, generated),
        "psnr": psnr(truth, generated),
        "person_ssim": region_ssim(truth, generated, person),
        "person_psnr": region_psnr(truth, generated, person),
        "garment_delta_e": float(np.mean([region_color_difference(truth, generated, m) for m in garments])),
        "garment_edge_ssim": float(np.mean([region_edge_ssim(truth, generated, m) for m in garments])),
    }


def generate_variants(
    pipe: TruePosePipeline, items: list[dict], variants: dict[str, tuple[dict, float]], steps: int, batch_size: int
) -> dict[str, list[np.ndarray]]:
    """The images of each of `variants` (as `VARIANTS`); the model's own TargetNet settings are restored after."""
    defaults = {key: pipe.target_unet.config[key] for key in ("hpfa_sigma", "hpfa_delta", "caa_top_k")}
    outputs = {}
    for name, (settings, guidance_scale) in variants.items():
        pipe.target_unet.set_truepose_settings(**{**defaults, **settings})
        outputs[name] = generate_all(pipe, items, steps, guidance_scale, batch_size)
        print(f"generated: {name}", flush=True)
    pipe.target_unet.set_truepose_settings(**defaults)
    return outputs


def baseline_outputs(pipe: TruePosePipeline, items: list[dict], size: tuple[int, int]) -> dict[str, list[np.ndarray]]:
    """The two rows every table starts with: the VAE's reconstruction of the target (ceiling), the source copied."""
    return {
        "VAE reconstruction of the target (ceiling)": reconstruct(
            pipe, [item["target_image"] for item in items], size
        ),
        "copy the source image": [np.asarray(item["source_image"]) for item in items],
    }


def hpfa_off_trained_outputs(path: str, items: list[dict], steps: int, batch_size: int) -> list[np.ndarray]:
    """The images of the model in `path`, trained with HPFA off (its TargetNet's sigma 1, delta 0), guidance 2.0."""
    pipe = load_for_scoring(path)
    settings = (pipe.target_unet.config.hpfa_sigma, pipe.target_unet.config.hpfa_delta)
    if settings != (1.0, 0.0):
        raise ValueError(f"--hpfa_off_model {path!r} has HPFA on (sigma, delta = {settings}); expected (1.0, 0.0).")
    return generate_all(pipe, items, steps, VARIANTS[TRUEPOSE][1], batch_size)


def pair_scores(images: list[np.ndarray], items: list[dict]) -> list[dict[str, float]]:
    """The table's columns (`score`) of each of `images` against the target of its pair in `items`."""
    return [score(np.asarray(item["target_image"]), image, item["target_parsing"]) for image, item in zip(images, items)]  # fmt: skip


def mean_scores(images: list[np.ndarray], items: list[dict]) -> dict[str, float]:
    """The table's columns (`score`) of `images` against the targets of `items`, averaged over the pairs."""
    per_pair = pair_scores(images, items)
    return {key: float(np.mean([scores[key] for scores in per_pair])) for key in per_pair[0]}


def figure_indices(num_pairs: int) -> list[int]:
    """The figure's `FIGURE_PAIRS` pairs among `num_pairs` held-out pairs, picked by `default_rng(0)`."""
    return sorted(np.random.default_rng(0).choice(num_pairs, FIGURE_PAIRS, replace=False).tolist())


def print_table(results: dict[str, dict[str, float]]) -> None:
    """`results` (row -> `mean_scores`) as a Markdown table."""
    print("| variant | SSIM | PSNR | person SSIM | person PSNR | garment ΔE | garment edge SSIM |")
    print("|---|---|---|---|---|---|---|")
    for name, s in results.items():
        print(
            f"| {name} | {s['ssim']:.4f} | {s['psnr']:.2f} | {s['person_ssim']:.4f} | {s['person_psnr']:.2f} "
            f"| {s['garment_delta_e']:.2f} | {s['garment_edge_ssim']:.4f} |"
        )


def draw_figure(items: list[dict], generated: list[np.ndarray], indices: list[int], path: str, scale: int = 2) -> None:
    """Rows of source | target pose | generated | ground truth for the pairs `indices`."""
    height, width = np.asarray(items[0]["target_image"]).shape[:2]
    sheet = PIL.Image.new("RGB", (4 * width, len(indices) * height), "white")
    for row, index in enumerate(indices):
        item = items[index]
        panels = [item["source_image"], draw_skeleton(item["target_keypoints"], height, width)]
        panels += [PIL.Image.fromarray(generated[index]), item["target_image"]]
        for column, panel in enumerate(panels):
            sheet.paste(panel, (column * width, row * height))
    sheet.resize((sheet.width * scale, sheet.height * scale), PIL.Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the shipped model")
    add_scoring_arguments(parser, num_pairs=200)
    parser.add_argument("--previous_model", default=None, help="a previous checkpoint to score on the same pairs")
    parser.add_argument("--previous_resolution", type=int, nargs=2, default=[96, 64], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument(
        "--hpfa_off_model", default=None, help="the same recipe trained with HPFA off, scored on the same pairs"
    )
    parser.add_argument("--output", default="demo_model_results.json")
    parser.add_argument("--figure", default=None, help="PNG of 8 held-out pairs picked by a fixed seed")
    args = parser.parse_args()
    size = tuple(args.resolution)

    pipe = load_shipped_model() if args.model is None else load_for_scoring(args.model)
    items = held_out_items(args.num_pairs, size, args.backgrounds)

    outputs = baseline_outputs(pipe, items, size)
    outputs.update(generate_variants(pipe, items, VARIANTS, args.steps, args.batch_size))

    if args.hpfa_off_model is not None:
        outputs[HPFA_OFF_TRAINED] = hpfa_off_trained_outputs(args.hpfa_off_model, items, args.steps, args.batch_size)
        print(f"generated: {HPFA_OFF_TRAINED}", flush=True)
    if args.previous_model is not None:
        previous = load_for_scoring(args.previous_model)
        small = tuple(args.previous_resolution)
        small_items = held_out_items(args.num_pairs, small, args.backgrounds)
        for item, small_item in zip(items, small_items):  # the same scene at both sizes (same aspect ratio)
            expected = rescale_keypoints(small_item["target_keypoints"], small, size)
            if not np.allclose(expected[:, :2], item["target_keypoints"][:, :2], atol=0.5):
                raise ValueError(f"--previous_resolution {small} does not draw the same pairs as {size}.")
        generated = generate_all(previous, small_items, args.steps, 2.0, args.batch_size)
        resized = [PIL.Image.fromarray(image).resize(size[::-1], PIL.Image.BICUBIC) for image in generated]
        outputs[f"previous model ({args.previous_model}, {small[0]}x{small[1]}, resized)"] = [
            np.asarray(image) for image in resized
        ]

    results = {name: mean_scores(images, items) for name, images in outputs.items()}
    with open(args.output, "w") as f:
        json.dump(
            {"num_pairs": args.num_pairs, "steps": args.steps, "resolution": size, "results": results}, f, indent=2
        )
    if args.figure is not None:
        indices = figure_indices(args.num_pairs)
        draw_figure(items, outputs[TRUEPOSE], indices, args.figure)
        print(f"figure: pairs {indices} -> {args.figure}")
    print_table(results)


if __name__ == "__main__":
    main()
