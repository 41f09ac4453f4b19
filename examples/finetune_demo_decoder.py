"""Train a demo model's DC-AE decoder further with its encoder frozen, and put the new decoder into trained pipelines.

The encoder defines the latent space the UNets were trained in; with it frozen, a better decoder raises the VAE's
ceiling (and every generated image) without retraining the UNets (issue 29: the VAE targets). Steps on whole
synthetic images (sources and targets), L1 + MSE, AdamW with a cosine decay; a checkpoint every 100 steps (written
atomically) lets an interrupted run resume.

    OMP_NUM_THREADS=2 python examples/finetune_demo_decoder.py --vae runs/dc4h-studio/final/vae \
        --output_dir runs/decoder-studio --steps 2000 --backgrounds studio \
        --pipelines runs/dc4h-studio/shipped-14000 runs/dc4h-hpfa-off-studio/shipped-14000

writes `runs/decoder-studio/vae` (fp32) and, for each of `--pipelines`, a copy with the new VAE in fp16
(`runs/decoder-studio/dc4h-studio-shipped-14000`, ...).
"""

import argparse
import os
import time

import torch
from diffusers import AutoencoderDC
from train_demo_model import _synthetic_pixels, reconstruction_loss
from train_demo_model_dc import vae_psnr

from truepose import TruePosePipeline
from truepose.data import BACKGROUND_SETS, SyntheticPoseDataset
from truepose.demo import DEMO_RESOLUTION, HELD_OUT_SEED

DATA_SEED = 3  # a synthetic set no run of the demo recipes trained on (the VAE used seed 1, the UNets seed 2)


def finetune_decoder(vae: AutoencoderDC, args: argparse.Namespace, checkpoint: str) -> AutoencoderDC:
    """`args.steps` decoder-only steps of `args.batch_size` whole images (encoder frozen); resumes from
    `checkpoint`. Prints the held-out PSNR (16 held-out pairs' sources and targets) every 250 steps."""
    size = tuple(args.resolution)
    dataset = SyntheticPoseDataset(
        args.steps * args.batch_size // 2 + 1, size, DATA_SEED, backgrounds=args.backgrounds
    )
    held_out = SyntheticPoseDataset(16, size, HELD_OUT_SEED, backgrounds=args.backgrounds)
    held_out = _synthetic_pixels(held_out, 0, 32)
    vae.requires_grad_(False).eval()
    vae.decoder.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(vae.decoder.parameters(), lr=args.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    first_step = 0
    if os.path.isfile(checkpoint):
        state = torch.load(checkpoint, weights_only=True)
        vae.decoder.load_state_dict(state["decoder"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_step = state["step"]
        print(f"decoder: resumed at step {first_step}", flush=True)
    else:
        print(f"decoder: held-out PSNR {vae_psnr(vae, held_out):.2f} dB before", flush=True)
    start = time.time()
    for step in range(first_step, args.steps):
        pixels = _synthetic_pixels(dataset, step, args.batch_size)
        with torch.no_grad():
            latents = vae.encode(pixels).latent
        loss = reconstruction_loss(vae.decode(latents).sample, pixels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % 100 == 0 or step == args.steps - 1:
            state = {"decoder": vae.decoder.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save({**state, "scheduler": scheduler.state_dict(), "step": step + 1}, checkpoint + ".tmp")
            os.replace(checkpoint + ".tmp", checkpoint)
            message = f"decoder step {step + 1} loss {loss.item():.4f} ({time.time() - start:.0f}s)"
            if (step + 1) % 250 == 0 or step == args.steps - 1:
                vae.decoder.eval()
                message += f" held-out PSNR {vae_psnr(vae, held_out):.2f} dB"
                vae.decoder.train()
            print(message, flush=True)
    return vae.requires_grad_(False).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", required=True, help="the trained `AutoencoderDC` folder (a pipeline's `vae/`)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=16, help="whole images per step")
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--resolution", type=int, nargs=2, default=list(DEMO_RESOLUTION), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--backgrounds", choices=BACKGROUND_SETS, default="studio")
    parser.add_argument("--pipelines", nargs="*", default=[], help="trained pipelines to copy with the new decoder")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 2:
        parser.error("--steps must be at least 1 and --batch_size at least 2 (a source and its target)")

    os.makedirs(args.output_dir, exist_ok=True)
    torch.manual_seed(0)
    vae = AutoencoderDC.from_pretrained(args.vae, torch_dtype=torch.float32)
    vae = finetune_decoder(vae, args, os.path.join(args.output_dir, "decoder-checkpoint.pt"))
    vae.save_pretrained(os.path.join(args.output_dir, "vae"))
    vae = AutoencoderDC.from_pretrained(os.path.join(args.output_dir, "vae"), torch_dtype=torch.float16)
    for path in args.pipelines:
        pipe = TruePosePipeline.from_pretrained(path, vae=vae, dtype=torch.float16)
        name = "-".join(os.path.normpath(path).split(os.sep)[-2:])
        pipe.save_pretrained(os.path.join(args.output_dir, name))
        print(f"wrote {os.path.join(args.output_dir, name)}", flush=True)


if __name__ == "__main__":
    main()
