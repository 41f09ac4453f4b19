"""Attention shares of the shipped demo model on held-out synthetic pairs, with HPFA on and off.

    OMP_NUM_THREADS=2 python examples/analyse_demo_model.py --num_pairs 20

Prints the mean shares (target, body, clothing, face, background and the source's total) per setting, and writes the
per-layer bar chart and source heatmap of the first pair to docs/images/ (see docs/analysis.md).
"""

import argparse

import numpy as np
import torch
from evaluate_demo_model import held_out_items

from truepose.analysis import GROUPS, attention_heatmap, attention_shares, plot_attention_shares
from truepose.demo import DEMO_RESOLUTION, load_shipped_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_pairs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--images_dir", default="docs/images")
    args = parser.parse_args()

    pipe = load_shipped_model()
    pipe.set_progress_bar_config(disable=True)
    items = held_out_items(args.num_pairs, DEMO_RESOLUTION)
    defaults = {key: pipe.target_unet.config[key] for key in ("hpfa_sigma", "hpfa_delta")}
    settings = {
        "HPFA on (as trained)": defaults,
        "HPFA off (sigma 1, delta 0)": {"hpfa_sigma": 1.0, "hpfa_delta": 0.0},
    }
    columns = (*GROUPS, "source")
    print("| setting | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for name, hpfa in settings.items():
        pipe.target_unet.set_truepose_settings(**hpfa)
        means = []
        for index in range(args.num_pairs):
            item = items[index]
            pictured = index == 0 and hpfa == defaults
            shares = attention_shares(
                pipe,
                item["source_image"],
                item["target_keypoints"],
                item["source_parsing"],
                num_inference_steps=args.steps,
                generator=torch.Generator().manual_seed(index),
                heatmap_layers="largest" if pictured else None,
            )
            means.append([shares["mean"][key] for key in columns])
            if pictured:
                title = f"Shipped demo model, held-out pair 0, {args.steps} steps averaged"
                plot_attention_shares(shares, f"{args.images_dir}/attention_shares.png", title=title)
                attention_heatmap(shares, item["source_image"], f"{args.images_dir}/attention_heatmap.png")
        print(f"| {name} | " + " | ".join(f"{value:.3f}" for value in np.mean(means, axis=0)) + " |", flush=True)
    pipe.target_unet.set_truepose_settings(**defaults)


if __name__ == "__main__":
    main()
