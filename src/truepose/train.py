"""Train TruePose with accelerate: ``truepose train ...`` or ``accelerate launch -m truepose.train ...``.

Trains SourceNet, TargetNet (with its CAA weights) and the pose encoder; the VAE and CLIP stay frozen. Every random
draw for a training pair (VAE posterior sample, noise, timestep, condition dropout) comes from its own generator
seeded by ``(seed, step, micro-step, position in the global batch)`` and the data order from ``(seed, epoch)``: a
resumed run continues exactly where it stopped, and N processes with batch b train the same weights as one process
with batch N * b.
"""

import argparse
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType, ProjectConfiguration, set_seed
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .conditioning.parsing import as_parsing_map, get_label_map
from .conditioning.pose import draw_skeleton
from .data.common import collate_pairs
from .models.target_net import parameters_after_reference_capture
from .pipeline import TruePosePipeline

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


class EpochPermutationSampler(Sampler[int]):
    """Shuffles with a permutation seeded by ``(seed, epoch)``: the same order again after a resume."""

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())


@dataclass
class TrainingBatch:
    """One batch in the trainer's form: images at the training size, skeletons and parsing maps."""

    sources: list[PIL.Image.Image]
    targets: list[PIL.Image.Image]
    pose_images: list[PIL.Image.Image]
    parsing_maps: list[np.ndarray]
    label_map: str


def make_batch(items: dict) -> TrainingBatch:
    """Collated dataset items -> [`TrainingBatch`] (skeletons drawn from the target keypoints)."""
    if any(parsing is None for parsing in items["source_parsing"]):
        raise ValueError(
            "Training needs source parsing maps: give the dataset a parsing_dir, or run `truepose preprocess`."
        )
    width, height = items["source_image"][0].size
    label_map = items["label_map"][0]
    return TrainingBatch(
        sources=items["source_image"],
        targets=items["target_image"],
        pose_images=[draw_skeleton(k, height, width) for k in items["target_keypoints"]],
        parsing_maps=[
            as_parsing_map(parsing, height, width, label_map, argument_name=f"source parsing of pair {name!r}")
            for parsing, name in zip(items["source_parsing"], items["name"])
        ],
        label_map=label_map,
    )


class NamedPairErrors(Dataset):
    """``dataset`` whose loading errors name the pair (and so the files) that failed, e.g. a corrupt image."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.dataset[index]
        except Exception as error:
            pair = self.dataset.pairs[index] if hasattr(self.dataset, "pairs") else index
            raise RuntimeError(f"Training data: pair {index} {pair} could not be loaded: {error}") from error


def pair_generators(seed: int, step: int, micro_step: int, first_index: int, batch_size: int) -> list[torch.Generator]:
    """One CPU generator per pair of a micro-batch, seeded by its position ``first_index + row`` in the global batch
    (all processes together), so the random draws do not depend on how the global batch is split over processes."""
    return [
        torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + micro_step) * 100_003 + first_index + row)
        for row in range(batch_size)
    ]


def training_loss(
    pipe: TruePosePipeline,
    source_unet: torch.nn.Module,
    target_unet: torch.nn.Module,
    pose_encoder: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    batch: TrainingBatch,
    condition_dropout: float,
    generators: list[torch.Generator],
    backward,
) -> torch.Tensor:
    """One denoising loss on ``batch``; ``backward(loss)`` runs inside TargetNet's conditions (for checkpointing).

    ``pipe`` provides the frozen encoders (VAE, CLIP) and the preprocessing; the three trained models are passed
    separately because accelerate may have wrapped them (DDP, FSDP). ``generators`` (one CPU generator per pair)
    draw every random number of the step.
    """
    device = pipe.vae.device
    width, height = batch.sources[0].size
    with torch.no_grad():
        target_latents = pipe.encode_source_latents(batch.targets, height, width, device, generators)

    dropped = (torch.cat([torch.rand(1, generator=g) for g in generators]) < condition_dropout).to(device)
    reference, image_embeds = pipe.encode_source(
        batch.sources, batch.parsing_maps, get_label_map(batch.label_map), height, width, device, dropped, source_unet
    )
    unwrapped_target = getattr(target_unet, "module", target_unet)
    layer_references = unwrapped_target.prepare_reference(reference, tuple(target_latents.shape[-2:]))
    # Dropped rows keep the source keys with weight exactly 0 (a -inf bias) instead of skipping them: SourceNet then
    # gets its (zero) gradient even when every row of a process is dropped, as DDP needs on every process.
    layer_references = {name: replace(ref, num_source_free_rows=0) for name, ref in layer_references.items()}
    pose_features = pose_encoder(pipe.prepare_pose(batch.pose_images, height, width, device, pipe.pose_encoder.dtype))

    noise = randn_tensor(target_latents.shape, generator=generators, device=device, dtype=target_latents.dtype)
    num_train_timesteps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.cat([torch.randint(0, num_train_timesteps, (1,), generator=g) for g in generators]).to(device)
    noisy_latents = noise_scheduler.add_noise(target_latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(target_latents, noise, timesteps)
    else:
        target = noise
    with unwrapped_target.conditioned(pose_features, layer_references):
        prediction = target_unet(noisy_latents, timesteps, image_embeds).sample
        loss = F.mse_loss(prediction.float(), target.float())
        backward(loss)
    return loss.detach()


def add_lora(unet: torch.nn.Module, rank: int) -> None:
    """Freeze ``unet`` and give its attention projections trainable LoRA adapters; TruePose's own processor weights
    (CAA) stay fully trainable."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"]
        )
    )
    for name, parameter in unet.named_parameters():
        if ".processor." in name:
            parameter.requires_grad_(True)


def build_dataset(args: argparse.Namespace) -> Dataset:
    from . import data

    size = tuple(args.resolution)
    if args.dataset == "synthetic":
        return data.SyntheticPoseDataset(args.num_pairs, image_size=size, seed=args.data_seed)
    if args.dataset == "deepfashion":
        return data.DeepFashionDataset(args.data_root, split="train", image_size=size, parsing_dir=args.parsing_dir)
    return data.FolderPairDataset(args.data_root, image_size=size, parsing_dir=args.parsing_dir)


def checkpoint_steps(output_dir: str) -> list[int]:
    """Steps of the completed ``checkpoint-{step}`` folders in ``output_dir``, sorted.

    Raises:
        ValueError: for a ``checkpoint-*`` name that is not ``checkpoint-{step}``; resuming and pruning would
            otherwise have to guess what it is.
    """
    if not os.path.isdir(output_dir):
        return []
    names = [name for name in os.listdir(output_dir) if name.startswith(CHECKPOINT_PREFIX)]
    odd = [name for name in names if not name[len(CHECKPOINT_PREFIX) :].isdigit()]
    if odd:
        raise ValueError(
            f"{output_dir} holds {odd}, not of the form {CHECKPOINT_PREFIX}<step>: rename or move them (the trainer "
            "resumes from and prunes checkpoint folders by their step number)."
        )
    return sorted(int(name[len(CHECKPOINT_PREFIX) :]) for name in names)


def latest_checkpoint(output_dir: str) -> str | None:
    """The completed checkpoint with the highest step in ``output_dir``, or None."""
    steps = checkpoint_steps(output_dir)
    return os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{steps[-1]}") if steps else None


def save_checkpoint(accelerator: Accelerator, output_dir: str, step: int, keep: int | None) -> None:
    """Write ``checkpoint-{step}`` atomically: into a temporary folder, then one rename."""
    final = os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")
    partial = os.path.join(output_dir, f".partial-{CHECKPOINT_PREFIX}{step}")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)
    if accelerator.is_main_process:
        with open(os.path.join(partial, "truepose_step.json"), "w") as f:
            json.dump({"step": step}, f)
        os.replace(partial, final)
        if keep:
            for old in checkpoint_steps(output_dir)[:-keep]:
                shutil.rmtree(os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{old}"))
    accelerator.wait_for_everyone()


def render_validation(pipe: TruePosePipeline, dataset: Dataset, indices: list[int], seed: int) -> PIL.Image.Image:
    """A grid: one row per pair, source | target skeleton | generated | ground truth."""
    rows = []
    for index in indices:
        item = dataset[index]
        width, height = item["source_image"].size
        generated = pipe(
            item["source_image"],
            item["target_keypoints"],
            source_parsing=item["source_parsing"],
            parsing_label_map=item["label_map"],
            num_inference_steps=20,
            generator=torch.Generator(pipe.device).manual_seed(seed),
        ).images[0]
        skeleton = draw_skeleton(item["target_keypoints"], height, width)
        rows.append([item["source_image"], skeleton, generated, item["target_image"]])
    width, height = rows[0][0].size
    grid = PIL.Image.new("RGB", (4 * width, len(rows) * height))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid.paste(image, (c * width, r * height))
    return grid


def base_model_id(pretrained_model: str) -> str | None:
    """The Hub id the run started from: ``pretrained_model`` itself, or for a local folder the ``base_model`` its
    model card names (None if it names none)."""
    if not os.path.isdir(pretrained_model):
        return pretrained_model
    card_path = os.path.join(pretrained_model, "README.md")
    if not os.path.isfile(card_path):
        return None
    from huggingface_hub import ModelCard

    base_model = ModelCard.load(card_path).data.base_model
    return base_model[0] if isinstance(base_model, list) else base_model


def write_model_card(
    output_dir: str, args: argparse.Namespace, pipe: TruePosePipeline, step: int, num_processes: int
) -> None:
    """``README.md`` with Hub metadata (base model, pipeline tag, tags) and the run's data, steps and settings."""
    from huggingface_hub import ModelCard, ModelCardData

    config = pipe.target_unet.config
    data = f"`{args.dataset}`" + (
        f" ({args.num_pairs} pairs, seed {args.data_seed})"
        if args.dataset == "synthetic"
        else f" from `{args.data_root}`"
    )
    metadata = ModelCardData(
        license="apache-2.0",
        library_name="diffusers",
        base_model=base_model_id(args.pretrained_model),
        pipeline_tag="image-to-image",
        tags=["truepose", "pose-transfer", "person-image-synthesis", "diffusers"],
    )
    settings = [
        f"batch {args.train_batch_size} per process x {num_processes} process(es) x {args.gradient_accumulation_steps}"
        " accumulation",
        f"lr {args.learning_rate}",
        f"condition dropout {args.condition_dropout}",
        f"objective {pipe.scheduler.config.prediction_type}",
    ]
    settings += ["SourceNet frozen"] * args.freeze_source_unet + [f"LoRA rank {args.lora_rank}, merged"] * bool(
        args.lora_rank
    )
    content = f"""---
{metadata.to_yaml()}
---

# TruePose ({args.dataset})

Trained with `truepose train`.

- Started from: `{args.pretrained_model}`
- Data: {data}, {args.resolution[0]}x{args.resolution[1]}
- Steps: {step} ({", ".join(settings)})
- HPFA: sigma {config.hpfa_sigma}, delta {config.hpfa_delta}; CAA: top-k {config.caa_top_k} on {list(config.caa_blocks)}

```python
from truepose import TruePosePipeline

pipe = TruePosePipeline.from_pretrained("{args.hub_model_id or output_dir}")
```
"""
    ModelCard(content).save(os.path.join(output_dir, "README.md"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="truepose train", description=__doc__)
    parser.add_argument(
        "--pretrained_model", required=True, help="TruePose checkpoint (folder or Hub id) to start from"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--dataset", choices=["synthetic", "deepfashion", "folder"], default="synthetic")
    parser.add_argument("--data_root", help="dataset root (deepfashion, folder)")
    parser.add_argument("--parsing_dir", help="parsing maps folder (deepfashion, folder)")
    parser.add_argument("--num_pairs", type=int, default=10_000, help="synthetic pairs")
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, nargs=2, default=[256, 176], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--train_batch_size", type=int, default=4)
    parser.add_argument("--max_train_steps", type=int, default=1000)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--lr_scheduler", default="constant_with_warmup")
    parser.add_argument("--lr_warmup_steps", type=int, default=0)
    parser.add_argument("--adam_weight_decay", type=float, default=1e-2)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes AdamW8bit (CUDA)")
    parser.add_argument("--use_ema", action="store_true")
    parser.add_argument("--ema_decay", type=float, default=0.9999)
    parser.add_argument("--condition_dropout", type=float, default=0.3)
    parser.add_argument("--prediction_type", choices=["epsilon", "v_prediction"], default=None)
    parser.add_argument("--freeze_source_unet", action="store_true")
    parser.add_argument("--lora_rank", type=int, default=0, help="train LoRA adapters (peft) on the UNets' attention")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder or "latest"')
    parser.add_argument("--validation_steps", type=int, default=0, help="0: no validation images")
    parser.add_argument("--num_validation_pairs", type=int, default=2)
    parser.add_argument("--report_to", default="tensorboard")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)
    args = parser.parse_args(argv)
    if args.dataset != "synthetic" and not args.data_root:
        parser.error(f"--data_root is required for --dataset {args.dataset}")
    if not 0 <= args.condition_dropout < 1:
        parser.error(f"--condition_dropout must be in [0, 1), got {args.condition_dropout}")
    for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    for name in ("num_pairs", "num_validation_pairs", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    for name in ("lora_rank", "lr_warmup_steps", "validation_steps", "dataloader_num_workers"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if min(args.resolution) < 1:
        parser.error(f"--resolution must be two positive integers (height width), got {args.resolution}")
    if not args.learning_rate > 0 or not 0 < args.ema_decay < 1 or not args.max_grad_norm > 0:
        parser.error(
            "--learning_rate and --max_grad_norm must be > 0 and --ema_decay in (0, 1), got "
            f"{args.learning_rate}, {args.max_grad_norm}, {args.ema_decay}"
        )
    return args


def check_output_dir(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output folder that cannot be written or that holds another run's checkpoints."""
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.output_dir):
            pass
    except OSError as error:
        raise ValueError(f"--output_dir {args.output_dir!r} cannot be written: {error}") from None
    steps = checkpoint_steps(args.output_dir)
    if steps and not args.resume_from_checkpoint:
        raise ValueError(
            f"--output_dir {args.output_dir!r} already holds checkpoints (steps {steps}). Pass "
            "--resume_from_checkpoint latest to continue that run, or choose a new --output_dir."
        )
    resume = args.resume_from_checkpoint
    if resume and resume != "latest" and not os.path.isfile(os.path.join(resume, "truepose_step.json")):
        raise ValueError(f"--resume_from_checkpoint {resume!r} does not exist (or is not a truepose checkpoint).")


def check_launch(accelerator: Accelerator) -> None:
    """Refuse a launch that asked for several processes but started one (``accelerate launch --cpu
    --num_processes N`` runs a single process and would silently train N times slower than asked), and DeepSpeed
    (accelerate's DeepSpeed integration prepares one trained model; this trainer has three)."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise NotImplementedError(
            "truepose train does not run under DeepSpeed yet: accelerate's DeepSpeed integration takes one trained "
            "model and this trainer trains three (TargetNet, SourceNet, pose encoder). Use DDP or FSDP "
            "(examples/accelerate/)."
        )
    if accelerator.num_processes == 1 and "MASTER_PORT" in os.environ and "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "The launcher asked for several processes but started only this one (accelerate's --cpu launcher runs "
            "one process). For N processes on CPU run `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m "
            "truepose.train ...`; on GPUs `accelerate launch --multi_gpu --num_processes N -m truepose.train ...`."
        )


def train(args: argparse.Namespace) -> TruePosePipeline:
    """Run training; returns the final pipeline (also saved to ``args.output_dir``)."""
    check_output_dir(args)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.report_to != "none" else None,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=f"{args.output_dir}/logs"),
    )
    check_launch(accelerator)
    set_seed(args.seed)  # new layers (LoRA) start the same whatever the number of processes
    # Trained weights in float32 whatever the stored dtype (fp16 checkpoints); mixed precision is accelerate's job.
    pipe = TruePosePipeline.from_pretrained(args.pretrained_model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if any(size % pipe.vae_scale_factor for size in args.resolution):
        raise ValueError(f"--resolution {args.resolution} must be multiples of {pipe.vae_scale_factor} for this VAE.")
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    if args.prediction_type:
        noise_scheduler.register_to_config(prediction_type=args.prediction_type)
        pipe.scheduler.register_to_config(prediction_type=args.prediction_type)
    pipe.vae.requires_grad_(False)
    pipe.image_encoder.requires_grad_(False)
    pipe.source_unet.requires_grad_(not args.freeze_source_unet)
    trained = [pipe.target_unet, pipe.pose_encoder] + ([] if args.freeze_source_unet else [pipe.source_unet])
    lora_unets = [unet for unet in (pipe.target_unet, pipe.source_unet) if unet in trained] if args.lora_rank else []
    for unet in lora_unets:
        add_lora(unet, args.lora_rank)
    # Layers SourceNet runs after its last captured input never reach TargetNet: they are not trained (DDP needs
    # every trained parameter to get a gradient). Likewise CAA's weights when CAA is off.
    unused = set(parameters_after_reference_capture(pipe.source_unet))
    for name, parameter in pipe.source_unet.named_parameters():
        parameter.requires_grad_(parameter.requires_grad and name not in unused)
    if pipe.target_unet.config.caa_top_k == 0:
        for name, parameter in pipe.target_unet.named_parameters():
            parameter.requires_grad_(parameter.requires_grad and ".processor.caa_" not in name)
    if args.gradient_checkpointing:
        pipe.target_unet.enable_gradient_checkpointing()
        pipe.source_unet.enable_gradient_checkpointing()
    parameters = [p for model in trained for p in model.parameters() if p.requires_grad]
    ema = EMAModel(parameters, decay=args.ema_decay) if args.use_ema else None

    if args.use_8bit_adam:
        import bitsandbytes

        optimizer_class = bitsandbytes.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    optimizer = optimizer_class(parameters, lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    dataset = NamedPairErrors(build_dataset(args))
    sampler = EpochPermutationSampler(len(dataset), args.seed)
    dataloader = DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        collate_fn=collate_pairs,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
    )
    # Only trained models go through accelerate (DDP refuses a module without trainable parameters).
    *models, optimizer, dataloader, lr_scheduler = accelerator.prepare(*trained, optimizer, dataloader, lr_scheduler)
    target_unet, pose_encoder, source_unet = models if len(models) == 3 else (*models, pipe.source_unet)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    pipe.to(accelerator.device)

    global_step = 0
    resume = (
        latest_checkpoint(args.output_dir) if args.resume_from_checkpoint == "latest" else args.resume_from_checkpoint
    )
    if resume:
        accelerator.load_state(resume)
        with open(os.path.join(resume, "truepose_step.json")) as f:
            global_step = json.load(f)["step"]
        logger.info(f"Resumed from {resume} at step {global_step}.")
    if accelerator.is_main_process:
        accelerator.init_trackers("truepose", config={k: str(v) for k, v in vars(args).items()})

    batches_per_epoch = len(dataloader)
    if batches_per_epoch == 0:
        raise ValueError(f"The dataset has {len(dataset)} pairs, fewer than one batch of {args.train_batch_size}.")
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    progress = tqdm(
        total=args.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process
    )
    validation_indices = list(range(min(args.num_validation_pairs, len(dataset))))

    while global_step < args.max_train_steps:
        epoch, step_in_epoch = divmod(global_step, steps_per_epoch)
        sampler.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(dataloader, step_in_epoch * args.gradient_accumulation_steps)
        for micro_step, items in enumerate(epoch_loader):
            accumulation_index = micro_step % args.gradient_accumulation_steps  # resumes start on a step boundary
            batch_size = len(items["name"])
            generators = pair_generators(
                args.seed, global_step, accumulation_index, accelerator.process_index * batch_size, batch_size
            )
            with accelerator.accumulate(target_unet, pose_encoder, source_unet):
                loss = training_loss(
                    pipe,
                    source_unet,
                    target_unet,
                    pose_encoder,
                    noise_scheduler,
                    make_batch(items),
                    args.condition_dropout,
                    generators,
                    accelerator.backward,
                )
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            if ema is not None:
                ema.step(parameters)
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.4f}")
            accelerator.log({"loss": loss.item(), "lr": lr_scheduler.get_last_lr()[0]}, step=global_step)
            if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
                save_checkpoint(accelerator, args.output_dir, global_step, args.checkpoints_total_limit)
            if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
                grid = render_validation(pipe, dataset, validation_indices, args.seed)
                os.makedirs(os.path.join(args.output_dir, "validation"), exist_ok=True)
                grid.save(os.path.join(args.output_dir, "validation", f"step-{global_step}.png"))
                for tracker in accelerator.trackers:
                    if tracker.name == "tensorboard":
                        tracker.writer.add_image("validation", np.asarray(grid), global_step, dataformats="HWC")
            if global_step >= args.max_train_steps:
                break
    progress.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(parameters)
        pipe.target_unet = accelerator.unwrap_model(target_unet)
        pipe.pose_encoder = accelerator.unwrap_model(pose_encoder)
        pipe.source_unet = accelerator.unwrap_model(source_unet)
        for unet in lora_unets:  # the saved pipeline holds plain, merged weights
            unet.fuse_lora()
            unet.unload_lora()
        pipe.save_pretrained(args.output_dir, safe_serialization=True)
        write_model_card(args.output_dir, args, pipe, global_step, accelerator.num_processes)
        if args.push_to_hub:
            pipe.push_to_hub(args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)))
    accelerator.end_training()
    return pipe


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
