"""Train TruePose with accelerate: ``truepose train ...`` or ``accelerate launch -m truepose.train ...``.

Trains SourceNet, TargetNet (with its CAA weights) and the pose encoder; the VAE and CLIP stay frozen. Every random
draw for a training pair (VAE posterior sample, noise, timestep, condition dropout) comes from its own generator
seeded by ``(seed, step, micro-step, position in the global batch)`` and the data order from ``(seed, epoch)``: a
resumed run continues exactly where it stopped, and N processes with batch b train the same weights as one process
with batch N * b.
"""

import argparse
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ._errors import describe_error
from .conditioning.parsing import get_label_map
from .models import TruePoseDenoiser
from .models.target_net import parameters_after_reference_capture
from .pipeline import TruePosePipeline
from .training.args import add_arguments, check_args, check_launch, check_no_other_checkpoints, check_output_dir
from .training.batches import (
    EpochPermutationSampler,
    PairNamingDataset,
    TrainingBatch,
    build_dataset,
    make_batch,
    make_dataloader,
)
from .training.checkpoints import RunSegment, latest_checkpoint, load_checkpoint, save_checkpoint, training_engine
from .training.lock import output_dir_lock
from .training.outputs import save_validation, write_model_card

logger = logging.get_logger(__name__)


def pair_generators(seed: int, step: int, micro_step: int, first_index: int, batch_size: int) -> list[torch.Generator]:
    """One CPU generator per pair of a micro-batch, seeded by its position ``first_index + row`` in the global batch
    (all processes together), so the random draws do not depend on how the global batch is split over processes.
    Seeds are taken modulo 2**64, torch's range (every seed below it unchanged), so any ``--seed`` up to 2**32 - 1 works
    at any step."""
    return [
        torch.Generator().manual_seed(
            (((seed * 1_000_003 + step) * 1_009 + micro_step) * 100_003 + first_index + row) % 2**64
        )
        for row in range(batch_size)
    ]


def training_loss(
    pipe: TruePosePipeline,
    denoiser: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    batch: TrainingBatch,
    condition_dropout: float,
    generators: list[torch.Generator],
    backward,
) -> torch.Tensor:
    """One denoising loss on ``batch``, and ``backward(loss)``.

    ``pipe`` provides the frozen encoders (VAE, CLIP, parsing masks: [`~TruePosePipeline.encode_source_conditions`])
    and the preprocessing; ``denoiser`` is the trained [`TruePoseDenoiser`], as accelerate prepared it (DDP, FSDP,
    DeepSpeed). ``generators`` (one CPU generator per pair) draw every random number of the step.
    """
    device = pipe.vae.device
    width, height = batch.sources[0].size
    with torch.no_grad():
        target_latents = pipe.encode_source_latents(batch.targets, height, width, device, generators)

    dropped = (torch.cat([torch.rand(1, generator=g) for g in generators]) < condition_dropout).to(device)
    conditions = pipe.encode_source_conditions(
        batch.sources, batch.parsing_maps, get_label_map(batch.label_map), height, width, device, dropped
    )
    pose_pixels = pipe.prepare_pose(batch.pose_images, height, width, device, pipe.pose_encoder.dtype)

    noise = randn_tensor(target_latents.shape, generator=generators, device=device, dtype=target_latents.dtype)
    num_train_timesteps = noise_scheduler.config.num_train_timesteps
    timesteps = torch.cat([torch.randint(0, num_train_timesteps, (1,), generator=g) for g in generators]).to(device)
    noisy_latents = noise_scheduler.add_noise(target_latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(target_latents, noise, timesteps)
    else:
        target = noise
    prediction = denoiser(
        noisy_latents,
        timesteps,
        image_embeds=conditions.image_embeds,
        source_latents=conditions.source_latents,
        pose_pixels=pose_pixels,
        person_mask=conditions.person_mask,
        region_masks=conditions.region_masks,
        region_embeds=conditions.region_embeds,
        source_dropped=conditions.source_dropped,
    )
    loss = F.mse_loss(prediction.float(), target.float())
    backward(loss)
    return loss.detach()


@dataclass
class TrainedModel:
    """The model a run trains and its parameters that get gradients."""

    denoiser: TruePoseDenoiser  # SourceNet, TargetNet and the pose encoder of the pipeline, as one module
    lora_unets: list[torch.nn.Module]  # the UNets given LoRA adapters, merged before the pipeline is saved
    parameter_names: list[str]  # "{component}.{parameter name}", as the EMA state names them
    parameters: list[torch.nn.Parameter]


@dataclass
class TrainingRun:
    """What the steps work on, once accelerate has prepared it."""

    pipe: TruePosePipeline  # the frozen encoders (VAE, CLIP) and the preprocessing
    noise_scheduler: DDPMScheduler
    denoiser: torch.nn.Module  # the trained TruePoseDenoiser as accelerate prepared it (DDP, FSDP, DeepSpeed)
    trained: TrainedModel
    ema: EMAModel | None
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    dataloader: DataLoader
    sampler: EpochPermutationSampler
    dataset: Dataset
    earlier_segments: list[RunSegment] = field(default_factory=list)  # the launches before this one (resumes)
    first_step: int = 0  # the step this launch started at

    def segments(self, accelerator: Accelerator, args: argparse.Namespace, step: int) -> list[RunSegment]:
        """Every launch that trained the weights up to ``step``, this one last (unless it trained no step)."""
        if step == self.first_step and self.earlier_segments:
            return self.earlier_segments
        current = RunSegment(
            first_step=self.first_step,
            last_step=step,
            processes=accelerator.num_processes,
            batch_size=args.train_batch_size,
            accumulation=args.gradient_accumulation_steps,
            engine=training_engine(accelerator),
        )
        return [*self.earlier_segments, current]


def train(args: argparse.Namespace) -> TruePosePipeline:
    """Run training; returns the final pipeline (also saved to ``args.output_dir``).

    Every process checks the options and folders first ([`check_output_dir`]); the lock on ``--output_dir`` is taken
    once the Accelerator exists, because only then is it known which process is the main one (the one that takes
    it) and can the others learn that it was refused. Nothing is loaded before it.
    """
    check_output_dir(args)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.report_to != "none" else None,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=f"{args.output_dir}/logs"),
    )
    check_launch(accelerator, args)
    with output_dir_lock(accelerator, args.output_dir):
        check_no_other_checkpoints(args)  # again under the lock: a run may have ended in between
        return run_training(args, accelerator)


def run_training(args: argparse.Namespace, accelerator: Accelerator) -> TruePosePipeline:
    """The training of [`train`], under its lock: prepare the data, models and optimizer, resume, run the steps, save
    the pipeline."""
    dataset = PairNamingDataset(build_dataset(args))  # before the model: a bad --data_root fails at once
    set_seed(args.seed)  # new layers (LoRA) start the same whatever the number of processes
    pipe, noise_scheduler = load_pipeline(args, accelerator)
    trained = prepare_model(args, pipe)
    optimizer, lr_scheduler = make_optimizer(args, trained.parameters, accelerator.num_processes)
    dataloader, sampler = make_dataloader(args, dataset)
    denoiser, optimizer, dataloader, lr_scheduler = accelerator.prepare(
        trained.denoiser, optimizer, dataloader, lr_scheduler
    )
    trained = replace(trained, parameters=trained_parameters(accelerator.unwrap_model(denoiser)))  # FSDP's shards
    ema = EMAModel(trained.parameters, decay=args.ema_decay) if args.use_ema else None
    pipe.to(accelerator.device)
    if ema is not None:
        ema.to(accelerator.device)  # beside the weights it follows (EMAModel keeps its copy where it was made)
    run = TrainingRun(
        pipe=pipe,
        noise_scheduler=noise_scheduler,
        denoiser=denoiser,
        trained=trained,
        ema=ema,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        dataloader=dataloader,
        sampler=sampler,
        dataset=dataset,
    )
    global_step, run.earlier_segments = resume(args, accelerator, denoiser, ema, trained.parameter_names)
    run.first_step = global_step
    if accelerator.is_main_process:
        accelerator.init_trackers("truepose", config={k: str(v) for k, v in vars(args).items()})
    global_step = run_steps(args, accelerator, run, global_step)
    save_pipeline(args, accelerator, run, global_step)
    accelerator.end_training()
    return pipe


def load_pipeline(args: argparse.Namespace, accelerator: Accelerator) -> tuple[TruePosePipeline, DDPMScheduler]:
    """The pipeline of ``--pretrained_model`` in float32, with whole weights ([`whole_weights`]), and the noise
    scheduler of training (both with ``--prediction_type`` when given)."""
    # Trained weights in float32 whatever the stored dtype (fp16 checkpoints); mixed precision is accelerate's job.
    with whole_weights(accelerator):
        pipe = TruePosePipeline.from_pretrained(args.pretrained_model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if any(size % pipe.vae_scale_factor for size in args.resolution):
        raise ValueError(f"--resolution {args.resolution} must be multiples of {pipe.vae_scale_factor} for this VAE.")
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    if args.prediction_type:
        noise_scheduler.register_to_config(prediction_type=args.prediction_type)
        pipe.scheduler.register_to_config(prediction_type=args.prediction_type)
    return pipe, noise_scheduler


@contextmanager
def whole_weights(accelerator: Accelerator) -> Iterator[None]:
    """Models loaded inside are whole, also under DeepSpeed ZeRO-3, whose config (set by accelerate for transformers
    and diffusers) makes every model loaded while it is set partitioned: the frozen encoders run outside DeepSpeed's
    engine, and the trained model is sharded by ``accelerator.prepare``."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or not plugin.hf_ds_config.is_zero3():
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()


def prepare_model(args: argparse.Namespace, pipe: TruePosePipeline) -> TrainedModel:
    """The [`TruePoseDenoiser`] of ``pipe``'s SourceNet, TargetNet and pose encoder, and what it trains: all three
    (SourceNet frozen with ``--freeze_source_unet``), with LoRA adapters on the UNets under ``--lora_rank``; the VAE and
    CLIP stay frozen, and so do the parameters that cannot reach the loss. Turns on ``--gradient_checkpointing`` and
    ``--channels_last``."""
    pipe.vae.requires_grad_(False)
    pipe.image_encoder.requires_grad_(False)
    pipe.source_unet.requires_grad_(not args.freeze_source_unet)
    trained_unets = [pipe.target_unet] + ([] if args.freeze_source_unet else [pipe.source_unet])
    lora_unets = trained_unets if args.lora_rank else []
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
    denoiser = TruePoseDenoiser(pipe.source_unet, pipe.target_unet, pipe.pose_encoder)
    if args.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    if args.channels_last:
        denoiser.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    return TrainedModel(
        denoiser=denoiser,
        lora_unets=lora_unets,
        parameter_names=[name for name, parameter in denoiser.named_parameters() if parameter.requires_grad],
        parameters=trained_parameters(denoiser),
    )


def trained_parameters(denoiser: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of ``denoiser`` that get gradients, in ``named_parameters`` order (FSDP replaces them with
    their shards when it prepares the model)."""
    return [parameter for parameter in denoiser.parameters() if parameter.requires_grad]


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


def make_optimizer(
    args: argparse.Namespace, parameters: list[torch.nn.Parameter], num_processes: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (bitsandbytes' 8-bit one with ``--use_8bit_adam``) and the ``--lr_scheduler``, whose warmup and length
    count scheduler steps: accelerate steps a prepared scheduler once per process at each optimizer step."""
    if args.use_8bit_adam:
        import bitsandbytes

        optimizer_class = bitsandbytes.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    optimizer = optimizer_class(parameters, lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=args.max_train_steps * num_processes,
    )
    return optimizer, lr_scheduler


def resume(
    args: argparse.Namespace,
    accelerator: Accelerator,
    denoiser: torch.nn.Module,
    ema: EMAModel | None,
    parameter_names: list[str],
) -> tuple[int, list[RunSegment]]:
    """The step the run starts at and the launches that trained it: 0 and none, or with ``--resume_from_checkpoint``
    those of that checkpoint, once its state is loaded ([`load_checkpoint`]). ``denoiser`` is the prepared trained
    model."""
    folder = (
        latest_checkpoint(args.output_dir) if args.resume_from_checkpoint == "latest" else args.resume_from_checkpoint
    )
    if not folder:
        return 0, []
    global_step, segments = load_checkpoint(
        accelerator, folder, accelerator.unwrap_model(denoiser), ema, parameter_names, training_engine(accelerator)
    )
    logger.info(f"Resumed from {folder} at step {global_step}.")
    return global_step, segments


def run_steps(args: argparse.Namespace, accelerator: Accelerator, run: TrainingRun, global_step: int) -> int:
    """The optimizer steps from ``global_step`` to ``--max_train_steps``, each over ``--gradient_accumulation_steps``
    micro-batches ([`training_step`], then [`after_step`]); returns the last step. The data order of an epoch
    depends on the epoch alone, so a resumed run skips the batches its steps already used."""
    batches_per_epoch = len(run.dataloader)
    if batches_per_epoch == 0:
        raise ValueError(f"The dataset has {len(run.dataset)} pairs, fewer than one batch of {args.train_batch_size}.")
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    progress = tqdm(
        total=args.max_train_steps, initial=global_step, desc="train", disable=not accelerator.is_local_main_process
    )
    while global_step < args.max_train_steps:
        epoch, step_in_epoch = divmod(global_step, steps_per_epoch)
        run.sampler.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(run.dataloader, step_in_epoch * args.gradient_accumulation_steps)
        for micro_step, items in enumerate(epoch_loader):
            accumulation_index = micro_step % args.gradient_accumulation_steps  # resumes start on a step boundary
            loss = training_step(args, accelerator, run, items, global_step, accumulation_index)
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            after_step(args, accelerator, run, global_step, loss, progress)
            if global_step >= args.max_train_steps:
                break
    progress.close()
    return global_step


def training_step(
    args: argparse.Namespace,
    accelerator: Accelerator,
    run: TrainingRun,
    items: dict,
    global_step: int,
    accumulation_index: int,
) -> torch.Tensor:
    """One micro-batch: its loss and gradients ([`training_loss`], random draws from [`pair_generators`]), and the
    optimizer and LR scheduler steps once accelerate has accumulated the whole batch. Returns the loss."""
    batch_size = len(items["name"])
    generators = pair_generators(
        args.seed, global_step, accumulation_index, accelerator.process_index * batch_size, batch_size
    )
    with accelerator.accumulate(run.denoiser):
        loss = training_loss(
            run.pipe,
            run.denoiser,
            run.noise_scheduler,
            make_batch(items),
            args.condition_dropout,
            generators,
            accelerator.backward,
        )
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(run.trained.parameters, args.max_grad_norm)
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad()
    return loss


def after_step(
    args: argparse.Namespace,
    accelerator: Accelerator,
    run: TrainingRun,
    global_step: int,
    loss: torch.Tensor,
    progress: tqdm,
) -> None:
    """After optimizer step ``global_step``: the EMA update, the progress bar and logs, a checkpoint every
    ``--checkpointing_steps`` (and at the last step) and a validation grid every ``--validation_steps``."""
    if run.ema is not None:
        run.ema.step(run.trained.parameters)
    progress.update()
    progress.set_postfix(loss=f"{loss.item():.4f}")
    accelerator.log({"loss": loss.item(), "lr": run.lr_scheduler.get_last_lr()[0]}, step=global_step)
    if global_step % args.checkpointing_steps == 0 or global_step == args.max_train_steps:
        save_checkpoint(
            accelerator,
            args.output_dir,
            global_step,
            args.checkpoints_total_limit,
            run.segments(accelerator, args, global_step),
            run.ema,
            run.trained.parameter_names,
        )
    if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
        indices = list(range(min(args.num_validation_pairs, len(run.dataset))))
        save_validation(accelerator, run.pipe, run.dataset, indices, args.seed, args.output_dir, global_step)


def save_pipeline(args: argparse.Namespace, accelerator: Accelerator, run: TrainingRun, global_step: int) -> None:
    """Once every process is done, the main one puts the trained weights (the EMA's with ``--use_ema``, LoRA merged)
    into the pipeline, saves it with its model card to ``--output_dir`` and uploads it with ``--push_to_hub``.

    Under FSDP and DeepSpeed the pipeline's networks hold shards: every process takes part in gathering the whole
    weights, which the main process loads into a new copy of the pipeline ([`unsharded_pipeline`]).
    """
    sharded = training_engine(accelerator) != "DDP"
    state_dict = accelerator.get_state_dict(run.denoiser) if sharded else None
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    if run.ema is not None:
        run.ema.copy_to(run.trained.parameters)
    pipe, lora_unets = (
        unsharded_pipeline(args, accelerator, state_dict) if sharded else (run.pipe, run.trained.lora_unets)
    )
    for unet in lora_unets:  # the saved pipeline holds plain, merged weights
        unet.fuse_lora()
        unet.unload_lora()
    pipe.save_pretrained(args.output_dir, safe_serialization=True)
    write_model_card(args.output_dir, args, pipe, global_step, run.segments(accelerator, args, global_step))
    if args.push_to_hub:
        repo_id = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
        try:
            pipe.push_to_hub(repo_id)
        except Exception as error:
            raise OSError(
                f"--push_to_hub: the upload to {repo_id!r} failed ({describe_error(error)}). The trained pipeline "
                f"is saved in {args.output_dir!r}: upload it later with TruePosePipeline.from_pretrained(...)"
                f".push_to_hub({repo_id!r})."
            ) from error


def unsharded_pipeline(
    args: argparse.Namespace, accelerator: Accelerator, state_dict: dict[str, torch.Tensor]
) -> tuple[TruePosePipeline, list[torch.nn.Module]]:
    """A new copy of the pipeline this run trains, built as the run built it (LoRA adapters included), holding the
    gathered whole weights ``state_dict`` of the trained [`TruePoseDenoiser`]; and its UNets with LoRA adapters."""
    pipe, _ = load_pipeline(args, accelerator)
    trained = prepare_model(args, pipe)
    trained.denoiser.load_state_dict(state_dict)
    return pipe, trained.lora_unets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``truepose train`` ([`add_arguments`]); a wrong value exits with status 2 naming its flag
    ([`check_args`])."""
    parser = argparse.ArgumentParser(prog="truepose train", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":  # as launchers run it (torchrun, accelerate launch): user errors in one line, like the CLI
    from .cli import main as cli_main

    raise SystemExit(cli_main(["train", *sys.argv[1:]]))
