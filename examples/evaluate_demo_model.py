"""Learning evidence for the shipped demo model: held-out synthetic pairs, SSIM and PSNR against baselines.

    python examples/evaluate_demo_model.py --num_pairs 200 --output docs/demo_model_results.json

Rows: the VAE's reconstruction of the true target (what a perfect generator with this VAE would score), the model
(guidance 2.0), copying the source image, the same model with the source dropped (guidance 0: the
unconditional branch alone), and the model with HPFA off (sigma=1, delta=0: plain reference attention) or CAA off
(top-k 0). SSIM is the protocol's (skimage, win 51, on [0, 1]); PSNR with data range 1.
"""

import argparse
import json

import numpy as np
import torch

from truepose.data import SyntheticPoseDataset
from truepose.demo import DEMO_RESOLUTION, HELD_OUT_SEED, load_shipped_model
from truepose.evaluation.metrics import psnr, ssim
from truepose.pipeline import TruePosePipeline


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


@torch.no_grad()
def reconstruct(pipe: TruePosePipeline, images: list) -> list[np.ndarray]:
    """VAE encode -> decode of the true targets: the ceiling any generator with this VAE can reach."""
    height, width = DEMO_RESOLUTION
    latents = pipe.encode_source_latents(images, height, width, pipe.device)
    decoded = pipe.image_processor.postprocess(pipe.decode_latents(latents), output_type="np")
    return [(image * 255).round().astype(np.uint8) for image in decoded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--num_pairs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch_size", type=int, default=20)
    parser.add_argument("--output", default="demo_model_results.json")
    args = parser.parse_args()

    pipe = load_shipped_model() if args.model is None else TruePosePipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    dataset = SyntheticPoseDataset(args.num_pairs, image_size=DEMO_RESOLUTION, seed=HELD_OUT_SEED)
    items = [dataset[i] for i in range(args.num_pairs)]
    truth = [np.asarray(item["target_image"]) for item in items]

    variants = {
        "TruePose (guidance 2.0)": ({}, 2.0),
        "source dropped (guidance 0)": ({}, 0.0),
        "HPFA off (sigma 1, delta 0)": ({"hpfa_sigma": 1.0, "hpfa_delta": 0.0}, 2.0),
        "CAA off (top-k 0)": ({"caa_top_k": 0}, 2.0),
    }
    defaults = {key: pipe.target_unet.config[key] for key in ("hpfa_sigma", "hpfa_delta", "caa_top_k")}
    outputs = {
        "VAE reconstruction of the target (ceiling)": reconstruct(pipe, [item["target_image"] for item in items]),
        "copy the source image": [np.asarray(item["source_image"]) for item in items],
    }
    for name, (settings, guidance_scale) in variants.items():
        pipe.target_unet.set_truepose_settings(**{**defaults, **settings})
        outputs[name] = []
        for start in range(0, len(items), args.batch_size):
            outputs[name] += generate(pipe, items[start : start + args.batch_size], args.steps, guidance_scale)
        print(f"generated: {name}", flush=True)
    pipe.target_unet.set_truepose_settings(**defaults)

    results = {}
    for name, images in outputs.items():
        results[name] = {
            "ssim": float(np.mean([ssim(t, g) for t, g in zip(truth, images)])),
            "psnr": float(np.mean([psnr(t, g) for t, g in zip(truth, images)])),
        }
    with open(args.output, "w") as f:
        json.dump({"num_pairs": args.num_pairs, "steps": args.steps, "results": results}, f, indent=2)
    print("| variant | SSIM | PSNR |\n|---|---|---|")
    for name, scores in results.items():
        print(f"| {name} | {scores['ssim']:.4f} | {scores['psnr']:.2f} |")


if __name__ == "__main__":
    main()
