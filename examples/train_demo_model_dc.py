"""Train the small TruePose shipped inside the package (`truepose demo` uses it): a DC-AE VAE, on CPU, from scratch.

The shipped model starts as one lineage, `dc4h`, trained in several runs, each continuing the last one's checkpoint
to a larger ``--train_steps``, then continued on studio backgrounds with `train_demo_model.py --init_from` and given
a fine-tuned decoder by `finetune_demo_decoder.py` (docs/install.md, "The shipped demo model", records every run):

    for N in 200 1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 11000; do
      OMP_NUM_THREADS=2 python examples/train_demo_model_dc.py --output_dir runs/dc4h --latent_channels 4 \
          --head_channels 16 --channels_last --lr_scheduler constant_with_warmup --ema_decay 0.999 --train_steps $N
    done

What it changes against `train_demo_model.py` (the recipe of the model shipped before, an `AutoencoderTiny`):
1. the VAE: a small DC-AE (`AutoencoderDC`, 4x down, `--latent_channels`) trained on 64x64 crops. Its
   space-to-channel shortcuts start it close to a patch autoencoder, where the TAESD- and SD-style autoencoders
   tried first stayed near 20 dB and lost garment colour;
2. its latents standardised per channel (`normalise_latent_channels`, folded into its weights, so the pipeline's
   one `scaling_factor` is 1): the raw channels' standard deviations range over 1.3-10.5 and their means over +-6;
3. the same UNet layout (48-96-96, attention at the two upper levels), with ``--head_channels 16`` attention heads of
   16 channels (the same weights as 16 heads; 2x faster steps on a CPU with ``--channels_last``).
The earlier attempts (16 latent channels at 144x96 and 96x64; 4 channels with a cosine schedule in one run) are in
docs/install.md. The paper's HPFA ablation is the same recipe from the same initial weights with HPFA off:

    OMP_NUM_THREADS=2 python examples/train_demo_model_dc.py --output_dir runs/dc4h-hpfa-off --copy_init_from runs/dc4h \
        --hpfa_off --channels_last --lr_scheduler constant_with_warmup --ema_decay 0.999 --train_steps 7000
"""

import argparse
import functools
import os
import time

import torch
from diffusers import AutoencoderDC, UNet2DConditionModel
from train_demo_model import (
    EMBED_DIM,
    _synthetic_pixels,
    add_unet_training_options,
    assemble_pipeline,
    reconstruction_loss,
    reproduce_command,
    store_shipped,
    train_unets,
    unet_training_summary,
)

from truepose import TruePosePipeline
from truepose.data import SyntheticPoseDataset
from truepose.demo import HELD_OUT_SEED


def build_vae(latent_channels: int = 16) -> AutoencoderDC:
    """A small DC-AE (diffusers' `AutoencoderDC`, the deep-compression autoencoder of SANA): 4x down by pixel
    unshuffling, `latent_channels` latent channels, one residual block per level, no attention. Its space-to-channel
    shortcuts start it close to a patch autoencoder, so it reaches a high reconstruction PSNR in minutes on a CPU (the
    TAESD- and SD-style autoencoders tried first learnt colours far more slowly)."""
    levels = 3
    return AutoencoderDC(
        latent_channels=latent_channels,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=(16, 32, 64),
        decoder_block_out_channels=(16, 32, 64),
        encoder_layers_per_block=(1,) * levels,
        decoder_layers_per_block=(1,) * levels,
        encoder_qkv_multiscales=((),) * levels,
        decoder_qkv_multiscales=((),) * levels,
    )


def random_crops(pixels: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """One random `crop` x `crop` window of each image of `(N, 3, H, W)` pixels."""
    height, width = pixels.shape[-2:]
    tops = torch.randint(0, height - crop + 1, (len(pixels),), generator=generator).tolist()
    lefts = torch.randint(0, width - crop + 1, (len(pixels),), generator=generator).tolist()
    return torch.stack([image[:, y : y + crop, x : x + crop] for image, y, x in zip(pixels, tops, lefts)])


@torch.no_grad()
def vae_psnr(vae: AutoencoderDC, pixels: torch.Tensor) -> float:
    """Mean PSNR (dB, data range 1) of the reconstructions of `(N, 3, H, W)` pixels in [-1, 1]."""
    reconstruction = vae.decode(vae.encode(pixels).latent).sample.clamp(-1, 1)
    mse = ((reconstruction - pixels) / 2).pow(2).mean(dim=(1, 2, 3))
    return float((-10 * torch.log10(mse)).mean())


def train_vae(
    vae: AutoencoderDC,
    args: argparse.Namespace,
    checkpoint: str,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> AutoencoderDC:
    """Autoencoder training with L1 + MSE reconstruction of random 64x64 crops (`args.vae_batch_size` per step, from
    the sources and targets of synthetic pairs); resumes from ``checkpoint`` (written atomically every 100 steps).
    Then the latents are standardised per channel (`normalise_latent_channels`) and the decoder alone trains
    `args.decoder_steps` more steps on whole images at a tenth of the learning rate, to absorb the image borders the
    fold leaves inexact. Runs on `device`; `num_workers` processes draw the images (the same ones for any number)."""
    steps, batch_size, size = args.vae_steps, args.vae_batch_size, tuple(args.resolution)
    torch.manual_seed(args.seed)
    num_pairs, backgrounds = (steps + args.decoder_steps) * batch_size // 2 + 1, args.backgrounds
    dataset = SyntheticPoseDataset(num_pairs, image_size=size, seed=args.seed + 1, backgrounds=backgrounds)
    held_out = SyntheticPoseDataset(16, image_size=size, seed=HELD_OUT_SEED, backgrounds=backgrounds)
    held_out = _synthetic_pixels(held_out, 0, 32).to(device)
    vae.to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    first_step = 0
    if os.path.isfile(checkpoint):
        state = torch.load(checkpoint, weights_only=True, map_location=device)
        vae.load_state_dict(state["vae"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_step = state["step"]
        print(f"vae: resumed at step {first_step}", flush=True)
    batches = iter(pixel_batches(dataset, range(first_step, steps + args.decoder_steps), batch_size, num_workers))
    vae.train()
    start = time.time()
    for step in range(first_step, steps):
        pixels = random_crops(next(batches), 64, torch.Generator().manual_seed(step)).to(device)
        reconstruction = vae.decode(vae.encode(pixels).latent).sample
        loss = reconstruction_loss(reconstruction, pixels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % 100 == 0 or step == steps - 1:
            state = {"vae": vae.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            torch.save({**state, "step": step + 1}, checkpoint + ".tmp")
            os.replace(checkpoint + ".tmp", checkpoint)
            message = f"vae step {step + 1} loss {loss.item():.4f} ({time.time() - start:.0f}s)"
            if (step + 1) % 500 == 0 or step == steps - 1:
                message += f" held-out PSNR {vae_psnr(vae.eval(), held_out):.2f} dB"
                vae.train()
            print(message, flush=True)

    vae.eval()
    with torch.no_grad():
        normalise_latent_channels(vae, vae.encode(held_out).latent)
    print(f"vae: latents standardised per channel, held-out PSNR {vae_psnr(vae, held_out):.2f} dB", flush=True)
    vae.decoder.train()
    optimizer = torch.optim.AdamW(vae.decoder.parameters(), lr=2e-4)
    for _ in range(args.decoder_steps):
        pixels = next(batches).to(device)
        with torch.no_grad():
            latents = vae.encode(pixels).latent
        reconstruction = vae.decode(latents).sample
        loss = reconstruction_loss(reconstruction, pixels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vae.eval()
    print(f"vae: {args.decoder_steps} decoder steps, held-out PSNR {vae_psnr(vae, held_out):.2f} dB", flush=True)
    return vae


def pixel_batches(
    dataset: SyntheticPoseDataset, steps: range, batch_size: int, num_workers: int
) -> torch.utils.data.DataLoader:
    """`_synthetic_pixels(dataset, step, batch_size)` of each of `steps` in order, drawn by `num_workers` processes
    (0: this one)."""
    draw = functools.partial(_synthetic_pixels, dataset, batch_size=batch_size)
    return torch.utils.data.DataLoader(steps, batch_size=None, num_workers=num_workers, collate_fn=draw)


@torch.no_grad()
def normalise_latent_channels(vae: AutoencoderDC, latents: torch.Tensor) -> AutoencoderDC:
    """Fold a per-channel standardisation of the latents into the VAE's weights, so that its latents have zero mean
    and unit variance in every channel (`scaling_factor` 1; SD-style diffusion expects that, and one global factor
    cannot give it: these channels' standard deviations range over 1.3-10.5 and their means over +-6).

    `latents` `(N, C, h, w)` are the trained encoder's latents of held-out images; their channel means `m` and
    standard deviations `s` define the new latents `(z - m) / s`. The encoder's `conv_out` (3x3) is rescaled and its
    fixed shortcut (the mean of each channel's group of features) compensated at the kernel's centre: exact. The
    decoder's `conv_in` gets `z = s * x + m` the same way; only its zero padding cannot be folded (a border pixel's
    missing neighbours were 0 in the old latents, are `-m / s` in the new), which `train_vae`'s decoder-only steps
    after the fold absorb.
    """
    mean, std = latents.mean(dim=(0, 2, 3)), latents.std(dim=(0, 2, 3))
    encoder, decoder = vae.encoder, vae.decoder
    group = encoder.out_shortcut_average_group_size
    encoder.conv_out.weight.div_(std[:, None, None, None])
    encoder.conv_out.bias.sub_(mean).div_(std)
    for channel in range(len(std)):
        shortcut_features = slice(channel * group, (channel + 1) * group)
        encoder.conv_out.weight[channel, shortcut_features, 1, 1] += (1 / std[channel] - 1) / group
    repeats = decoder.in_shortcut_repeats
    weight = decoder.conv_in.weight
    decoder.conv_in.bias.add_(weight.sum(dim=(2, 3)) @ mean + mean.repeat_interleave(repeats))
    weight.mul_(std[None, :, None, None])
    for feature in range(weight.shape[0]):
        weight[feature, feature // repeats, 1, 1] += std[feature // repeats] - 1
    vae.register_to_config(scaling_factor=1.0)
    return vae


def build_pipeline(
    vae: AutoencoderDC,
    size: tuple[int, int],
    seed: int,
    head_channels: int | None = None,
    block_out_channels: tuple[int, int, int] = (48, 96, 96),
) -> TruePosePipeline:
    """The shipped model's UNet layout (48-96-96, or `block_out_channels`; attention at the two upper levels, so HPFA
    sees the source at 1/4 and 1/8 of the image) on the DC-AE's latent channels. Attention layers have 16 heads (of 3
    and 6 channels), as the shipped model, or heads of `head_channels` channels: the same weights, and on a CPU
    attention with 16-channel heads runs several times faster than with 3-channel ones. (diffusers'
    `attention_head_dim` is the number of heads, as its own comment on SD's config says.)"""
    heads = 16 if head_channels is None else tuple(max(1, c // head_channels) for c in block_out_channels)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=(size[0] // 4, size[1] // 4),
        in_channels=vae.config.latent_channels,
        out_channels=vae.config.latent_channels,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=EMBED_DIM,
        attention_head_dim=heads,
        norm_num_groups=16,
    )
    return assemble_pipeline(vae, unet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/demo-model")
    parser.add_argument("--resolution", type=int, nargs=2, default=[96, 64], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--vae_steps", type=int, default=1200)
    parser.add_argument("--latent_channels", type=int, default=16, help="the DC-AE's latent channels")
    parser.add_argument("--vae_batch_size", type=int, default=16, help="64x64 crops per VAE step")
    parser.add_argument("--decoder_steps", type=int, default=200, help="decoder-only steps after the latent fold")
    parser.add_argument("--train_steps", type=int, default=2600)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=6e-4)
    parser.add_argument("--num_pairs", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema_decay", type=float, default=None, help="keep an EMA of the weights (default: none)")
    parser.add_argument(
        "--head_channels", type=int, default=None, help="channels per attention head (default: 16 heads per layer)"
    )
    parser.add_argument(
        "--copy_init_from",
        default=None,
        help="another run's --output_dir: start from its untrained pipeline (its VAE and initial UNet weights)",
    )
    parser.add_argument(
        "--hpfa_off",
        action="store_true",
        help="train with HPFA off (sigma 1, delta 0: plain reference attention), the paper's ablation of HPFA",
    )
    add_unet_training_options(parser)
    args = parser.parse_args()
    if args.copy_init_from and not os.path.isfile(os.path.join(args.copy_init_from, "init", "model_index.json")):
        parser.error(f"--copy_init_from {args.copy_init_from!r} has no untrained pipeline in its init/ folder")
    size = tuple(args.resolution)
    os.makedirs(args.output_dir, exist_ok=True)

    init_dir = os.path.join(args.output_dir, "init")
    if not os.path.isfile(os.path.join(init_dir, "model_index.json")):
        start = time.time()
        if args.copy_init_from is not None:
            pipe = TruePosePipeline.from_pretrained(os.path.join(args.copy_init_from, "init"), dtype=torch.float32)
        else:
            checkpoint = os.path.join(args.output_dir, "vae-checkpoint.pt")
            vae = train_vae(build_vae(args.latent_channels), args, checkpoint)
            pipe = build_pipeline(vae, size, args.seed, args.head_channels)
            print(f"vae done in {time.time() - start:.0f}s (this run)", flush=True)
        if args.hpfa_off:
            pipe.target_unet.set_truepose_settings(hpfa_sigma=1.0, hpfa_delta=0.0)
        pipe.save_pretrained(init_dir)
    start = time.time()
    train_unets(init_dir, os.path.join(args.output_dir, "final"), args, checkpointing_steps=200, validation_steps=1300)
    print(f"truepose train done in {time.time() - start:.0f}s (this run)", flush=True)
    hpfa_off = "; HPFA off (sigma 1, delta 0) in training and inference" if args.hpfa_off else ""
    description = f"""by `examples/train_demo_model_dc.py` on the procedural synthetic set only: an
`AutoencoderDC` VAE (4x down, {args.latent_channels} latent channels standardised per channel; {args.vae_steps} steps of
{args.vae_batch_size} 64x64 crops), two SD-style UNets (48-96-96 channels) and a pose encoder
({unet_training_summary(args)}{hpfa_off}), a frozen random CLIP vision encoder. Weights in fp16; not a model of real
people. Scores on 200 held-out pairs: docs/install.md."""
    store_shipped(
        args.output_dir, args.resolution, reproduce_command(parser, args, "train_demo_model_dc.py"), description
    )


if __name__ == "__main__":
    main()
