"""Train TruePose with accelerate: ``truepose train ...`` or ``accelerate launch -m truepose.train ...``.

Trains SourceNet, TargetNet (with its CAA weights) and the pose encoder; the VAE and CLIP stay frozen. Every random
draw for a training pair (VAE posterior sample, noise, timestep, condition dropout) comes from its own generator
seeded by ``(seed, step, micro-step, position in the global batch)`` and the data order from ``(seed, epoch)``: a
resumed run continues exactly where it stopped, and N processes with batch b train the same weights as one process
with batch N * b.
"""

import argparse
import contextlib
import datetime
import errno
import glob
import importlib
import json
import math
import os
import pickle
import shutil
import socket
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType, LoggerType, ProjectConfiguration, broadcast, set_seed
from accelerate.utils import load as accelerate_load
from diffusers import DDPMScheduler
from diffusers.optimization import SchedulerType, get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ._errors import describe_error
from .conditioning.parsing import as_parsing_map, get_label_map
from .conditioning.pose import draw_skeleton
from .data.common import collate_pairs
from .models.target_net import parameters_after_reference_capture
from .pipeline import TruePosePipeline

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
# The EMA state of a checkpoint: shadow weights named like the trained parameters, and its scalar settings.
EMA_WEIGHTS_NAME = "ema.safetensors"
EMA_CONFIG_NAME = "ema.json"
EMA_CONFIG_KEYS = (
    "decay",
    "min_decay",
    "optimization_step",
    "update_after_step",
    "use_ema_warmup",
    "inv_gamma",
    "power",
)
# Held in --output_dir by the main process of the run writing there (JSON: pid, host, start time).
LOCK_NAME = ".truepose-train.lock"
# diffusers' schedulers that need no option truepose train does not have (piecewise_constant needs step rules).
LR_SCHEDULERS = [kind.value for kind in SchedulerType if kind != SchedulerType.PIECEWISE_CONSTANT]
REPORT_TO = ["none", *(kind.value for kind in LoggerType)]


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
    source_unet: torch.nn.Module,
    target_unet: torch.nn.Module,
    pose_encoder: torch.nn.Module,
    noise_scheduler: DDPMScheduler,
    batch: TrainingBatch,
    condition_dropout: float,
    generators: list[torch.Generator],
    backward,
) -> torch.Tensor:
    """One denoising loss on ``batch``, and ``backward(loss)``.

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
    prediction = target_unet(
        noisy_latents, timesteps, image_embeds, pose_features=pose_features, layer_references=layer_references
    ).sample
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


def save_ema_state(ema: EMAModel, parameter_names: list[str], folder: str) -> None:
    """The EMA state into ``folder``: shadow weights as safetensors (named like the trained parameters) and the
    scalar settings of ``EMAModel.state_dict()`` as JSON; nothing is pickled."""
    state = ema.state_dict()
    shadow = {
        name: tensor.detach().contiguous().cpu() for name, tensor in zip(parameter_names, state["shadow_params"])
    }
    save_file(shadow, os.path.join(folder, EMA_WEIGHTS_NAME))
    with open(os.path.join(folder, EMA_CONFIG_NAME), "w") as f:
        json.dump({key: state[key] for key in EMA_CONFIG_KEYS}, f)


def load_ema_state(ema: EMAModel, parameter_names: list[str], folder: str) -> None:
    """Restore the EMA state that [`save_ema_state`] wrote into ``folder`` (no unpickling), on the device the
    shadow weights were on."""
    weights_path, config_path = os.path.join(folder, EMA_WEIGHTS_NAME), os.path.join(folder, EMA_CONFIG_NAME)
    try:
        with open(config_path) as f:
            config = json.load(f)
        shadow = load_file(weights_path)
    except (OSError, ValueError, SafetensorError) as error:
        raise ValueError(
            f"--resume_from_checkpoint: the EMA state in {folder} cannot be read ({describe_error(error)}); the "
            "checkpoint is truncated or damaged."
        ) from None
    if not isinstance(config, dict) or any(key not in config for key in EMA_CONFIG_KEYS):
        raise ValueError(f"--resume_from_checkpoint: {config_path} must be a JSON object with keys {EMA_CONFIG_KEYS}.")
    message = mismatch_message(
        weights_path,
        "trained parameters (EMA)",
        {name: tuple(tensor.shape) for name, tensor in shadow.items()},
        {name: tuple(tensor.shape) for name, tensor in zip(parameter_names, ema.shadow_params)},
    )
    if message:
        raise ValueError(message)
    device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
    try:
        ema.load_state_dict(
            {**{key: config[key] for key in EMA_CONFIG_KEYS}, "shadow_params": [shadow[n] for n in parameter_names]}
        )
    except ValueError as error:
        raise ValueError(f"--resume_from_checkpoint: {config_path}: {error}.") from None
    ema.to(device)


def mismatch_message(path: str, label: str, stored: dict[str, tuple], expected: dict[str, tuple]) -> str | None:
    """An error naming what differs between the tensor shapes ``stored`` in ``path`` and those of this run's
    ``label`` (``expected``), by name, and the likely cause; None when they match."""
    reshaped = [key for key in expected if key in stored and stored[key] != expected[key]]
    missing = [key for key in expected if key not in stored]
    unexpected = [key for key in stored if key not in expected]
    if not (reshaped or missing or unexpected):
        return None
    parts = []
    if reshaped:
        key = reshaped[0]
        parts.append(
            f"{len(reshaped)} of another shape (first: {key!r} {stored[key]} in the checkpoint, {expected[key]} here)"
        )
    if missing:
        parts.append(f"{len(missing)} missing (first: {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]!r})")
    if any("lora_" in key for key in reshaped + missing + unexpected):
        cause = "another --lora_rank"
    else:
        cause = "another --pretrained_model or --freeze_source_unet"
    return (
        f"--resume_from_checkpoint: {path} does not match this run's {label}: tensors {', '.join(parts)}. It was "
        f"probably written with {cause}; resume with the options of the run that wrote it."
    )


def read_checkpoint_step(folder: str) -> int:
    """The step in ``folder/truepose_step.json``."""
    path = os.path.join(folder, "truepose_step.json")
    try:
        with open(path) as f:
            step = json.load(f)["step"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"--resume_from_checkpoint: {path} cannot be read ({describe_error(error)}); expected JSON like "
            '{"step": 500}. The checkpoint is damaged.'
        ) from None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"--resume_from_checkpoint: {path} holds step {step!r}, not an integer >= 0.")
    return step


def check_checkpoint_files(folder: str, use_ema: bool) -> None:
    """Refuse, before any work, a checkpoint that is incomplete, truncated, or holds a pickle that could run code.

    Checks that every file this trainer writes is there and readable: the step, each model's safetensors header
    (a cut-short file fails here), and every file accelerate reads with ``torch.load(weights_only=True)``
    (optimizer, LR scheduler, random states...), read the same way here (memory-mapped, so cheap) because accelerate
    silently skips random states it cannot read. EMA states saved as a pickle (``custom_checkpoint_*.pkl``, written
    by accelerate's ``register_for_checkpointing`` in earlier versions) are refused unread.
    """
    read_checkpoint_step(folder)
    pickles = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "custom_checkpoint_*.pkl")))
    if pickles:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} holds {', '.join(pickles)}, a state saved as a Python pickle (the EMA "
            "of an earlier truepose version, or a planted file). Pickles can run code when loaded, so truepose never "
            f"loads them. Resume from a checkpoint written by this version (it stores the EMA as {EMA_WEIGHTS_NAME} "
            f"and {EMA_CONFIG_NAME}), or start a new run."
        )
    required = ["model.safetensors", "optimizer.bin", "scheduler.bin"]
    if use_ema:
        required += [EMA_WEIGHTS_NAME, EMA_CONFIG_NAME]
    for name in required:
        if not os.path.isfile(os.path.join(folder, name)):
            hint = (
                "it was written without --use_ema: resume without --use_ema, or start a new run"
                if name.startswith("ema.")
                else "the checkpoint is incomplete (copied in part?)"
            )
            raise ValueError(f"--resume_from_checkpoint: {folder} has no {name}: {hint}.")
    names = sorted(os.listdir(folder))
    for name in names:
        path = os.path.join(folder, name)
        if name.endswith(".safetensors"):
            try:
                with safe_open(path, framework="pt"):
                    pass
            except (OSError, SafetensorError) as error:
                raise ValueError(
                    f"--resume_from_checkpoint: {path} cannot be read ({describe_error(error)}); the file is "
                    "truncated or damaged (a copy cut short?)."
                ) from None
        elif name.endswith((".bin", ".pkl", ".pt")):
            check_torch_file(path)


def check_torch_file(path: str) -> None:
    """Read ``path`` as accelerate does (``torch.load(weights_only=True)``, memory-mapped when it is torch's zip
    format) and name it in the error when that fails: nothing in the file is run either way."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on the pickle protocol of a file refused anyway
            accelerate_load(path, map_location="cpu", mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, AttributeError) as error:
        if isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error):
            reason = (
                "it holds objects other than tensors and numbers, which could run code, so it was not loaded (nothing "
                "in it ran). Do not resume from a checkpoint you did not write"
            )
        else:
            reason = f"{describe_error(error)}; the file is truncated or damaged (a copy cut short?)"
        raise ValueError(f"--resume_from_checkpoint: {path} cannot be read safely: {reason}.") from None


def check_checkpoint_models(folder: str, models: dict[str, torch.nn.Module]) -> None:
    """Refuse a checkpoint whose model files do not hold exactly the tensors of this run's trained ``models`` (in
    accelerate's order: ``model.safetensors``, ``model_1.safetensors``, ...), naming the likely cause."""
    stored_files = sorted(
        name for name in os.listdir(folder) if name.startswith("model") and name.endswith(".safetensors")
    )
    expected_files = [f"model{'_' + str(i) if i else ''}.safetensors" for i in range(len(models))]
    if sorted(expected_files) != stored_files:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} holds {len(stored_files)} trained model(s) ({stored_files}), this run "
            f"trains {len(models)} ({', '.join(models)}): it was probably written with"
            f"{'out' if len(stored_files) > len(models) else ''} --freeze_source_unet."
        )
    for (label, model), name in zip(models.items(), expected_files):
        path = os.path.join(folder, name)
        with safe_open(path, framework="pt") as f:
            stored = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
        message = mismatch_message(
            path, label, stored, {key: tuple(value.shape) for key, value in model.state_dict().items()}
        )
        if message:
            raise ValueError(message)


def load_checkpoint(
    accelerator: Accelerator,
    folder: str,
    models: dict[str, torch.nn.Module],
    ema: EMAModel | None,
    parameter_names: list[str],
) -> int:
    """Restore models, optimizer, LR scheduler and random states (accelerate: safetensors and
    ``torch.load(weights_only=True)``) and the EMA ([`load_ema_state`]) from ``folder``; returns its step.
    ``models`` are the unwrapped trained models by name, in the order they were prepared."""
    check_checkpoint_models(folder, models)
    try:
        accelerator.load_state(folder)
    except Exception as error:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} could not be loaded ({describe_error(error)}); it is damaged, or was "
            "written by a run with other options (--lora_rank, --freeze_source_unet, --pretrained_model)."
        ) from error
    if ema is not None:
        load_ema_state(ema, parameter_names, folder)
    return read_checkpoint_step(folder)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str,
    step: int,
    keep: int | None,
    ema: EMAModel | None = None,
    parameter_names: list[str] | None = None,
) -> None:
    """Write ``checkpoint-{step}`` atomically: accelerate's state, the EMA ([`save_ema_state`]) and the step into a
    temporary folder, then one rename; only then are checkpoints beyond the newest ``keep`` removed.

    Raises:
        OSError: when any process fails to write (a full disk...): names the checkpoint and the step; the temporary
            folder is removed and earlier checkpoints are left as they were.
    """
    final = os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")
    partial = os.path.join(output_dir, f".partial-{CHECKPOINT_PREFIX}{step}")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    failure = None
    try:
        accelerator.save_state(partial)
        if accelerator.is_main_process:
            if ema is not None:
                save_ema_state(ema, parameter_names, partial)
            with open(os.path.join(partial, "truepose_step.json"), "w") as f:
                json.dump({"step": step}, f)
    except Exception as error:  # torch and safetensors report a full disk as RuntimeError / SafetensorError
        failure = error
    failed = accelerator.gather(torch.tensor([int(failure is not None)], device=accelerator.device))
    if failed.any():
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        accelerator.wait_for_everyone()
        reason = describe_error(failure) if failure is not None else "another process failed to write its part"
        raise OSError(
            getattr(failure, "errno", None) or errno.EIO,
            f"Could not write checkpoint {final} at step {step}: {reason}. The partial checkpoint was removed and "
            "earlier checkpoints are kept; free space (or fix the folder) and continue with --resume_from_checkpoint "
            "latest.",
        ) from failure
    if accelerator.is_main_process:
        replaced = os.path.join(output_dir, f".replaced-{CHECKPOINT_PREFIX}{step}")
        if os.path.isdir(final):  # written by the run before an earlier checkpoint was resumed: this one replaces it
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(final, replaced)
        os.replace(partial, final)
        shutil.rmtree(replaced, ignore_errors=True)
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
    parser.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="constant_with_warmup")
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
    parser.add_argument("--report_to", choices=REPORT_TO, default="tensorboard")
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
    if not 0 <= args.seed < 2**32 or args.data_seed < 0:
        parser.error(f"--seed must be in [0, 2**32 - 1] and --data_seed >= 0, got {args.seed}, {args.data_seed}")
    if args.lr_scheduler == "polynomial" and args.learning_rate <= 1e-7:
        parser.error(
            f"--lr_scheduler polynomial decays to 1e-7: --learning_rate must be above it, got {args.learning_rate}"
        )
    check_environment(parser, args)
    return args


def check_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that need something installed or configured, refused here rather than after the model loads
    (bitsandbytes, the --report_to tracker) or after training (--push_to_hub: token, repository id, network mode)."""
    from accelerate.tracking import get_available_trackers
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if args.use_8bit_adam:
        try:
            importlib.import_module("bitsandbytes")
        except Exception as error:
            parser.error(
                f"--use_8bit_adam needs bitsandbytes, which cannot be imported ({describe_error(error)}): "
                "pip install bitsandbytes (CUDA GPUs), or leave out --use_8bit_adam"
            )
    if args.report_to not in ("none", "all") and LoggerType(args.report_to) not in get_available_trackers():
        parser.error(
            f"--report_to {args.report_to}: the {args.report_to} package is not installed; install it "
            "(tensorboard comes with pip install 'truepose[train]'), or pass --report_to none"
        )
    if args.push_to_hub or args.hub_model_id:
        repo_id = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            source = "--hub_model_id" if args.hub_model_id else "--push_to_hub: the --output_dir folder name"
            parser.error(
                f"{source} {repo_id!r} is not a valid Hub repository id ({error}); pass --hub_model_id user/name"
            )
    if args.push_to_hub:
        import huggingface_hub

        if huggingface_hub.constants.HF_HUB_OFFLINE:
            parser.error(
                "--push_to_hub cannot upload while HF_HUB_OFFLINE is set; unset it, or leave out --push_to_hub"
            )
        if huggingface_hub.get_token() is None:
            parser.error(
                "--push_to_hub needs a Hugging Face token, checked now because the upload comes after training: run "
                "`hf auth login` or set HF_TOKEN, or leave out --push_to_hub"
            )


def check_output_dir(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output folder that is (or is inside) the ``--pretrained_model`` folder, cannot be
    written, is locked by a run still writing there, or holds another run's checkpoints; and a checkpoint to resume
    from that is missing, incomplete, truncated or holds a pickle ([`check_checkpoint_files`])."""
    if os.path.isdir(args.pretrained_model):
        start, output = os.path.realpath(args.pretrained_model), os.path.realpath(args.output_dir)
        if os.path.commonpath([start, output]) == start:
            raise ValueError(
                f"--output_dir {args.output_dir!r} {'is' if output == start else 'is inside'} --pretrained_model "
                f"{args.pretrained_model!r}: training would overwrite the model it starts from. Choose an "
                "--output_dir outside it."
            )
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.output_dir):
            pass
    except OSError as error:
        raise ValueError(f"--output_dir {args.output_dir!r} cannot be written: {error}") from None
    lock = read_lock(os.path.join(args.output_dir, LOCK_NAME))
    if lock is not None and not lock_is_stale(lock[1]):
        raise ValueError(lock_message(args.output_dir, lock[1]))
    check_no_other_checkpoints(args)
    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = latest_checkpoint(args.output_dir)
    elif resume and not os.path.isfile(os.path.join(resume, "truepose_step.json")):
        raise ValueError(f"--resume_from_checkpoint {resume!r} does not exist (or is not a truepose checkpoint).")
    if resume:
        check_checkpoint_files(resume, args.use_ema)


def check_no_other_checkpoints(args: argparse.Namespace) -> None:
    """Refuse an ``--output_dir`` holding checkpoints when the run does not resume (it would mix two runs)."""
    steps = checkpoint_steps(args.output_dir)
    if steps and not args.resume_from_checkpoint:
        raise ValueError(
            f"--output_dir {args.output_dir!r} already holds checkpoints (steps {steps}). Pass "
            "--resume_from_checkpoint latest to continue that run, or choose a new --output_dir."
        )


def read_lock(path: str) -> tuple[str, dict] | None:
    """``(text, holder)`` of the lock file ``path``: holder is its JSON (pid, host, started), or ``{}`` for a lock
    being written or damaged. None when there is no lock."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        holder = {}
    return text, holder if isinstance(holder, dict) else {}


def lock_is_stale(holder: dict) -> bool:
    """Whether a lock was left by a run on this host whose process no longer exists (killed, or out of memory).
    A lock from another host (a shared file system) is never taken for stale: its process cannot be seen."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0 or os.name == "nt":
        return False  # (on Windows os.kill would end the process rather than test it)
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def lock_message(output_dir: str, holder: dict) -> str:
    """The refusal naming the run that holds the lock on ``output_dir``."""
    path = os.path.join(output_dir, LOCK_NAME)
    run = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
    return (
        f"--output_dir {output_dir!r} is in use by another truepose train run ({run}; lock file {path}). Wait for it "
        "to end or choose another --output_dir; if that run no longer exists (e.g. it ran on another machine), delete "
        "the lock file."
    )


def acquire_output_lock(output_dir: str) -> str:
    """Create the lock file of ``output_dir`` atomically (``O_CREAT | O_EXCL``) holding this process's pid, host and
    start time as JSON, and return its path. A stale lock ([`lock_is_stale`]) is moved aside and taken over (logged
    at info level); it is checked to be the very file judged stale, so two runs taking it over at once cannot both
    win.

    Raises:
        ValueError: naming the run (pid, host, start time) that holds the lock.
    """
    path = os.path.join(output_dir, LOCK_NAME)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            lock = read_lock(path)
            if lock is None:  # released in between
                continue
            text, holder = lock
            if not lock_is_stale(holder):
                raise ValueError(lock_message(output_dir, holder)) from None
            aside = f"{path}.stale-{os.getpid()}"
            try:
                os.replace(path, aside)
            except FileNotFoundError:  # another run moved it first
                continue
            with open(aside) as f:
                moved = f.read()
            if moved != text:  # another run took the stale lock over in between: this is its live lock
                os.replace(aside, path)
                raise ValueError(lock_message(output_dir, (read_lock(path) or ("", {}))[1])) from None
            os.remove(aside)
            logger.info(f"Took over the stale lock {path} of pid {holder['pid']} (started {holder.get('started')}).")
            continue
        with os.fdopen(descriptor, "w") as f:
            json.dump(record, f)
        return path
    raise ValueError(f"--output_dir {output_dir!r}: another run is starting in it at the same moment.")


@contextlib.contextmanager
def output_dir_lock(accelerator: Accelerator, output_dir: str) -> Iterator[None]:
    """Hold the lock on ``output_dir`` for the run (removed at its end, also on error). Only the main process takes
    it (one run, one lock, whatever the number of processes); the outcome is broadcast, so every process stops when
    it is refused."""
    path, refusal = None, None
    if accelerator.is_main_process:
        try:
            path = acquire_output_lock(output_dir)
        except (ValueError, OSError) as error:
            refusal = error
    taken = broadcast(torch.tensor([int(refusal is None)], device=accelerator.device), from_process=0)
    if refusal is not None:
        raise refusal
    if not taken.item():
        raise ValueError(f"--output_dir {output_dir!r}: the main process could not lock it (its error says why).")
    try:
        yield
    finally:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


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
    check_launch(accelerator)
    with output_dir_lock(accelerator, args.output_dir):
        check_no_other_checkpoints(args)  # again under the lock: a run may have ended in between
        return run_training(args, accelerator)


def run_training(args: argparse.Namespace, accelerator: Accelerator) -> TruePosePipeline:
    """The training of [`train`], under its lock."""
    dataset = NamedPairErrors(build_dataset(args))  # before the model: a bad --data_root fails at once
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
    trained_names = ["target_unet", "pose_encoder", "source_unet"][: len(trained)]
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
    named_parameters = [
        (f"{label}.{name}", parameter)
        for label, model in zip(trained_names, trained)
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    ]
    parameter_names, parameters = [name for name, _ in named_parameters], [p for _, p in named_parameters]
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
    pipe.to(accelerator.device)
    if ema is not None:
        ema.to(accelerator.device)  # beside the weights it follows (EMAModel keeps its copy where it was made)

    global_step = 0
    resume = (
        latest_checkpoint(args.output_dir) if args.resume_from_checkpoint == "latest" else args.resume_from_checkpoint
    )
    if resume:
        unwrapped = [accelerator.unwrap_model(model) for model in models]  # accelerate saves unwrapped state dicts
        global_step = load_checkpoint(accelerator, resume, dict(zip(trained_names, unwrapped)), ema, parameter_names)
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
                save_checkpoint(
                    accelerator, args.output_dir, global_step, args.checkpoints_total_limit, ema, parameter_names
                )
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
            repo_id = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
            try:
                pipe.push_to_hub(repo_id)
            except Exception as error:
                raise OSError(
                    f"--push_to_hub: the upload to {repo_id!r} failed ({describe_error(error)}). The trained pipeline "
                    f"is saved in {args.output_dir!r}: upload it later with TruePosePipeline.from_pretrained(...)"
                    f".push_to_hub({repo_id!r})."
                ) from error
    accelerator.end_training()
    return pipe


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
