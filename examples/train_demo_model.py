"""Train the small TruePose that was shipped inside the package until 2026-12-04, on CPU, from scratch (the model
shipped now is made by `train_demo_model_dc.py`, with a DC-AE; this script's pieces are shared by it):

    OMP_NUM_THREADS=2 python examples/train_demo_model.py --output_dir runs/demo-model
    cp -r runs/demo-model/shipped/. src/truepose/assets/truepose-synthetic/

Three stages, all on the procedural synthetic set (no download):
1. a small TAESD-style autoencoder (`AutoencoderTiny`, 4x down, 4 latent channels) trained on synthetic images;
2. an untrained TruePose built around it: two small SD-style UNets (same weights), a small frozen random CLIP
   vision encoder (a fixed random projection of the image: the stand-in for CLIP ViT-L/14 at this size), a pose
   encoder; new layers zero-initialised as in `from_stable_diffusion`;
3. `truepose train` (the library's own trainer) on synthetic pairs with v-prediction (an epsilon loss gives almost
   no gradient at high noise, where the source and pose must decide the image: trained with it, a first version
   learnt to denoise but barely used the source); the shipped folder is the trained pipeline stored in fp16
   (loaded as float32), with a model card.

With ``--init_from FOLDER`` stages 1-2 are skipped: `truepose train` continues from a trained pipeline (the shipped
model of 2026-11-28 was made by one such continuation of the from-scratch run; docs/install.md gives both commands):

    OMP_NUM_THREADS=2 python examples/train_demo_model.py --output_dir runs/demo-model-continued \
        --init_from runs/demo-model/shipped --train_steps 1900 --learning_rate 3e-4 --ema_decay 0.999 --seed 1
"""

import argparse
import copy
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderDC, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from truepose import PoseEncoder, TargetNet, TruePosePipeline
from truepose.data import BACKGROUND_SETS, SyntheticPoseDataset
from truepose.pipeline import SD15_SCHEDULER_CONFIG
from truepose.train import main as train_main

EMBED_DIM = 64


def build_vae() -> AutoencoderTiny:
    """A TAESD-style autoencoder (no normalisation layers: it learns colours in a few hundred steps), 4x down."""
    return AutoencoderTiny(
        encoder_block_out_channels=(48, 48, 48),
        decoder_block_out_channels=(48, 48, 48),
        num_encoder_blocks=(1, 2, 2),
        num_decoder_blocks=(2, 2, 1),
        latent_channels=4,
    )


def _synthetic_pixels(dataset: SyntheticPoseDataset, step: int, batch_size: int) -> torch.Tensor:
    """`(batch_size, 3, H, W)` in [-1, 1]: sources and targets of consecutive pairs."""
    items = [dataset[(step * batch_size // 2 + i) % len(dataset)] for i in range(batch_size // 2)]
    images = [item[key] for item in items for key in ("source_image", "target_image")]
    pixels = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1 for im in images]))
    return pixels.permute(0, 3, 1, 2)


def reconstruction_loss(reconstruction: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """The demo autoencoders' training loss: L1 + MSE between a reconstruction and its pixels `(N, 3, H, W)`."""
    return F.l1_loss(reconstruction, pixels) + F.mse_loss(reconstruction, pixels)


def train_vae(vae: AutoencoderTiny, steps: int, size: tuple[int, int], batch_size: int, seed: int, backgrounds: str) -> AutoencoderTiny:  # fmt: skip
    """Autoencoder training with L1 + MSE reconstruction; latents then scaled to unit variance (SD's scaling_factor)."""
    torch.manual_seed(seed)
    dataset = SyntheticPoseDataset(
        steps * batch_size // 2 + 1, image_size=size, seed=seed + 1, backgrounds=backgrounds
    )
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    vae.train()
    start = time.time()
    for step in range(steps):
        pixels = _synthetic_pixels(dataset, step, batch_size)
        reconstruction = vae.decode(vae.encode(pixels).latents).sample
        loss = reconstruction_loss(reconstruction, pixels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"vae step {step} loss {loss.item():.4f} ({time.time() - start:.0f}s)", flush=True)
    vae.eval()
    with torch.no_grad():
        std = vae.encode(pixels).latents.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae


def build_pipeline(vae: AutoencoderTiny, seed: int) -> TruePosePipeline:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(48, 96, 96),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=EMBED_DIM,
        attention_head_dim=16,
        norm_num_groups=16,
    )
    return assemble_pipeline(vae, unet)


def assemble_pipeline(vae: AutoencoderTiny | AutoencoderDC, unet: UNet2DConditionModel) -> TruePosePipeline:
    """An untrained TruePose around `vae` and `unet` (copied into SourceNet and TargetNet): a frozen random 64-d CLIP
    vision encoder (drawn from torch's global generator after the UNet), a pose encoder, DDIM."""
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            projection_dim=EMBED_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=64,
            patch_size=8,
        )
    ).eval()
    return TruePosePipeline(
        vae=vae,
        source_unet=copy.deepcopy(unet),
        target_unet=TargetNet.from_unet(unet, region_embed_dim=EMBED_DIM),
        pose_encoder=PoseEncoder(block_out_channels=(16, 32, 64), out_channels=unet.config.block_out_channels[0]),
        image_encoder=image_encoder,
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}),
        scheduler=DDIMScheduler(**SD15_SCHEDULER_CONFIG),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/demo-model")
    parser.add_argument("--resolution", type=int, nargs=2, default=[96, 64], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--vae_steps", type=int, default=1200)
    parser.add_argument("--train_steps", type=int, default=2600)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=6e-4)
    parser.add_argument("--num_pairs", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema_decay", type=float, default=None, help="keep an EMA of the weights (default: none)")
    add_unet_training_options(parser)
    parser.add_argument("--init_from", default=None, help="a trained pipeline folder to continue training from")
    args = parser.parse_args()
    size = tuple(args.resolution)

    if args.init_from and not os.path.isfile(os.path.join(args.init_from, "model_index.json")):
        parser.error(f"--init_from {args.init_from!r} is not a pipeline folder (no model_index.json)")
    init_dir = args.init_from or os.path.join(args.output_dir, "init")
    if not os.path.isfile(os.path.join(init_dir, "model_index.json")):
        vae = train_vae(build_vae(), args.vae_steps, size, batch_size=8, seed=args.seed, backgrounds=args.backgrounds)
        build_pipeline(vae, args.seed).save_pretrained(init_dir)
    checkpointing_steps, validation_steps = (200, args.train_steps // 2) if args.init_from else (250, 500)
    train_unets(init_dir, os.path.join(args.output_dir, "final"), args, checkpointing_steps, validation_steps)
    ship(args, reproduce_command(parser, args, "train_demo_model.py"))


def add_unet_training_options(parser: argparse.ArgumentParser) -> None:
    """The options of `train_unets` that both demo recipes share besides steps, batch, lr and EMA."""
    parser.add_argument(
        "--lr_scheduler",
        default="cosine",
        help="`truepose train`'s --lr_scheduler; constant_with_warmup for a lineage trained in several runs",
    )
    parser.add_argument(
        "--channels_last", action="store_true", help="`truepose train --channels_last` (1.4x faster on this CPU)"
    )
    parser.add_argument(
        "--backgrounds",
        choices=BACKGROUND_SETS,
        default="varied",
        help="the synthetic pairs' backgrounds (`truepose train --synthetic_backgrounds`; docs/data.md)",
    )


def reproduce_command(parser: argparse.ArgumentParser, args: argparse.Namespace, script: str) -> str:
    """The command line of `examples/<script>` that gives `args`: `--output_dir` and every option that differs from
    its default (a flag alone when it is `True`), in lines of about 100 characters joined by shell continuations
    (indented for a model card)."""
    defaults = vars(parser.parse_args([]))
    lines = [f"python examples/{script}"]
    for name, value in vars(args).items():
        if value != defaults[name] or name == "output_dir":
            option = f"--{name}" if value is True else f"--{name} " + " ".join(map(str, value if isinstance(value, list) else [value]))  # fmt: skip
            if len(lines[-1]) + len(option) >= 100:
                lines.append(option)
            else:
                lines[-1] += " " + option
    return " \\\n        ".join(lines)


def unet_training_summary(args: argparse.Namespace) -> str:
    """What `train_unets` runs, for a model card: steps, batch, learning rate, objective and EMA."""
    ema = "" if args.ema_decay is None else f", EMA {args.ema_decay}"
    return f"{args.train_steps} steps of `truepose train`, batch {args.batch_size}, lr {args.learning_rate} ({args.lr_scheduler}), v-prediction{ema}"  # fmt: skip


def ship(args: argparse.Namespace, command: str) -> None:
    """`output_dir/final` stored as `output_dir/shipped` (`store_shipped`), its card naming `command`."""
    training = unet_training_summary(args)
    if args.init_from:
        description = f"by continuing the trained pipeline in `{args.init_from}` ({training}); its own card follows."
    else:
        description = f"""by `examples/train_demo_model.py` on the procedural synthetic set only: an
`AutoencoderTiny` VAE ({args.vae_steps} steps), two SD-style UNets (48-96-96) and a pose encoder ({training}), a
frozen random CLIP vision encoder. Weights in fp16; not a model of real people."""
    shipped = store_shipped(args.output_dir, args.resolution, command, description)
    if args.init_from and os.path.isfile(os.path.join(args.init_from, "README.md")):
        with open(os.path.join(args.init_from, "README.md")) as f:
            start_text = (
                f.read().split("---\n", 2)[-1].replace("# TruePose demo model", "## It continues: TruePose demo model")
            )
        with open(os.path.join(shipped, "README.md"), "a") as f:
            f.write("\n" + start_text)


def train_unets(init_dir: str, output_dir: str, args: argparse.Namespace, checkpointing_steps: int, validation_steps: int, extra_args: Sequence[str] = ()) -> None:  # fmt: skip
    """`truepose train` of the pipeline in `init_dir` (untrained, or one to continue) on synthetic pairs: v-prediction,
    `args.lr_scheduler` with 100 warm-up steps, checkpoints every `checkpointing_steps` (resumed with `--resume_from_checkpoint latest`), 4 validation
    pairs, an EMA of the weights when `args.ema_decay` is set; `extra_args` are more `truepose train` options."""
    height, width = args.resolution
    ema = [] if args.ema_decay is None else ["--use_ema", "--ema_decay", str(args.ema_decay)]
    channels_last = ["--channels_last"] if args.channels_last else []
    train_main(
        [
            "--pretrained_model", init_dir, "--output_dir", output_dir,
            "--dataset", "synthetic", "--num_pairs", str(args.num_pairs), "--data_seed", str(args.seed + 2),
            "--synthetic_backgrounds", args.backgrounds,
            "--resolution", str(height), str(width), "--train_batch_size", str(args.batch_size),
            "--max_train_steps", str(args.train_steps), "--learning_rate", str(args.learning_rate),
            "--prediction_type", "v_prediction", "--lr_scheduler", args.lr_scheduler, "--lr_warmup_steps", "100",
            "--checkpointing_steps", str(checkpointing_steps), "--checkpoints_total_limit", "2",
            "--resume_from_checkpoint", "latest", "--validation_steps", str(validation_steps),
            "--num_validation_pairs", "4", "--seed", str(args.seed), "--report_to", "tensorboard",
        ]
        + ema
        + channels_last
        + list(extra_args)
    )  # fmt: skip


def store_shipped(output_dir: str, resolution: list[int], command: str, description: str, trained_on: str = "CPU") -> str:  # fmt: skip
    """`output_dir/final` saved in fp16 as `output_dir/shipped` (returned), with a README: what it is ("A small
    TruePose trained on " + `trained_on` + " " + `description`) and the `command` that made it (on CPU run with
    `OMP_NUM_THREADS=2`)."""
    shipped = os.path.join(output_dir, "shipped")
    TruePosePipeline.from_pretrained(os.path.join(output_dir, "final"), dtype=torch.float16).save_pretrained(shipped)
    card = f"""---
license: apache-2.0
library_name: diffusers
tags: [truepose, pose-transfer, person-image-synthesis]
---

# TruePose demo model (synthetic people, {resolution[0]}x{resolution[1]})

A small TruePose trained on {trained_on} {description}

    {"OMP_NUM_THREADS=2 " if trained_on == "CPU" else ""}{command}

```python
from truepose.demo import load_shipped_model

pipe = load_shipped_model()
```
"""
    with open(os.path.join(shipped, "README.md"), "w") as f:
        f.write(card)
    return shipped


if __name__ == "__main__":
    main()
