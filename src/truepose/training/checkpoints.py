"""The checkpoints of `truepose train`: ``checkpoint-{step}`` folders written atomically, the EMA state in them
(safetensors and JSON, never a pickle), and the checks that refuse a checkpoint that is incomplete, truncated, holds
code, or was written by a run with other options, before any work."""

import errno
import glob
import json
import os
import pickle
import shutil
import warnings
import zipfile
from dataclasses import asdict, dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from accelerate.utils import load as accelerate_load
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .._errors import describe_error

CHECKPOINT_PREFIX = "checkpoint-"
STEP_FILE = "truepose_step.json"
# The EMA state of a checkpoint: shadow weights named like the trained parameters, and its scalar settings.
# Where accelerate writes the one prepared model, by engine: one process and DDP, FSDP (full state dict), DeepSpeed.
MODEL_FILES = {"DDP": "model.safetensors", "FSDP": "pytorch_model_fsdp.bin", "DeepSpeed": "pytorch_model"}
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


@dataclass
class RunSegment:
    """Optimizer steps ``first_step`` to ``last_step`` of a run, trained by one launch (a resumed run adds one)."""

    first_step: int
    last_step: int
    processes: int
    batch_size: int  # per process
    accumulation: int
    engine: str  # a key of MODEL_FILES

    def describe(self) -> str:
        """E.g. ``steps 0-500: 8 processes x batch 4 x 2 accumulation (DDP)``."""
        processes = f"{self.processes} process{'es' if self.processes > 1 else ''}"
        return (
            f"steps {self.first_step}-{self.last_step}: {processes} x batch {self.batch_size} x {self.accumulation} "
            f"accumulation ({self.engine})"
        )


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str,
    step: int,
    keep: int | None,
    segments: list[RunSegment],
    ema: EMAModel | None = None,
    parameter_names: list[str] | None = None,
) -> None:
    """Write ``checkpoint-{step}`` atomically: accelerate's state, the EMA ([`save_ema_state`]) and the step with the
    run's ``segments`` so far into a temporary folder, then one rename; only then are checkpoints beyond the newest
    ``keep`` removed.

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
            with open(os.path.join(partial, STEP_FILE), "w") as f:
                json.dump({"step": step, "segments": [asdict(segment) for segment in segments]}, f)
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


def load_checkpoint(
    accelerator: Accelerator,
    folder: str,
    denoiser: torch.nn.Module,
    ema: EMAModel | None,
    parameter_names: list[str],
    engine: str,
) -> tuple[int, list[RunSegment]]:
    """Restore the model, optimizer, LR scheduler and random states (accelerate: safetensors and
    ``torch.load(weights_only=True)``) and the EMA ([`load_ema_state`]) from ``folder``; returns its step and the
    run segments that trained it.
    ``denoiser`` is the unwrapped trained [`TruePoseDenoiser`]; ``engine`` a key of ``MODEL_FILES``."""
    check_checkpoint_model(folder, denoiser, engine, len(parameter_names))
    try:
        accelerator.load_state(folder)
    except Exception as error:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} could not be loaded ({describe_error(error)}); it is damaged, or was "
            "written by a run with other options (--lora_rank, --freeze_source_unet, --pretrained_model)."
        ) from error
    if ema is not None:
        load_ema_state(ema, parameter_names, folder)
    return read_checkpoint_step(folder), read_checkpoint_segments(folder)


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


def read_checkpoint_segments(folder: str) -> list[RunSegment]:
    """The run segments that trained the checkpoint in ``folder`` (none for checkpoints of earlier versions, which
    did not record them). Call after [`read_checkpoint_step`], which checks the file."""
    with open(os.path.join(folder, STEP_FILE)) as f:
        segments = json.load(f).get("segments", [])
    try:
        return [RunSegment(**segment) for segment in segments]
    except TypeError as error:
        raise ValueError(
            f"--resume_from_checkpoint: {os.path.join(folder, STEP_FILE)} is damaged ({error})."
        ) from None


def read_checkpoint_step(folder: str) -> int:
    """The step in ``folder/truepose_step.json``."""
    path = os.path.join(folder, STEP_FILE)
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
    read_checkpoint_segments(folder)
    pickles = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "custom_checkpoint_*.pkl")))
    if pickles:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} holds {', '.join(pickles)}, a state saved as a Python pickle (the EMA "
            "of an earlier truepose version, or a planted file). Pickles can run code when loaded, so truepose never "
            f"loads them. Resume from a checkpoint written by this version (it stores the EMA as {EMA_WEIGHTS_NAME} "
            f"and {EMA_CONFIG_NAME}), or start a new run."
        )
    engines = [engine for engine, name in MODEL_FILES.items() if os.path.exists(os.path.join(folder, name))]
    if len(engines) != 1:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} holds {'no' if not engines else 'more than one'} model state "
            f"({' or '.join(MODEL_FILES.values())}): the checkpoint is incomplete (copied in part?) or not a truepose "
            "checkpoint."
        )
    required = [] if engines == ["DeepSpeed"] else ["optimizer.bin", "scheduler.bin"]  # DeepSpeed's are inside
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
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)
    for path in paths:
        name = os.path.basename(path)
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


def deepspeed_state_classes() -> list[type]:
    """The plain-data classes DeepSpeed pickles into its checkpoints besides tensors (a loss scaler's settings, the
    ZeRO stage, a parameter fragment's address; none defines ``__setstate__`` or ``__reduce__``); none without
    DeepSpeed installed."""
    try:
        from deepspeed.runtime.fp16.loss_scaler import LossScaler
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address
    except ImportError:
        return []
    return [LossScaler, ZeroStageEnum, fragment_address]


def check_torch_file(path: str) -> None:
    """Read ``path`` as accelerate does (``torch.load(weights_only=True)``, memory-mapped when it is torch's zip
    format; DeepSpeed's plain-data classes allowed too, [`deepspeed_state_classes`]) and name it in the error when
    that fails: nothing in the file is run either way. DeepSpeed itself then loads its files with a full unpickler,
    which can only rebuild what this read allowed."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(deepspeed_state_classes()):
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


def training_engine(accelerator: Accelerator) -> str:
    """The engine ``accelerator`` trains with, as ``MODEL_FILES`` names it: "FSDP", "DeepSpeed", or "DDP" (also one
    process, which writes the same files)."""
    return {DistributedType.FSDP: "FSDP", DistributedType.DEEPSPEED: "DeepSpeed"}.get(
        accelerator.distributed_type, "DDP"
    )


def check_checkpoint_model(folder: str, denoiser: torch.nn.Module, engine: str, num_trained: int) -> None:
    """Refuse a checkpoint that ``engine`` (a key of ``MODEL_FILES``) cannot resume, whose model state does not hold
    exactly the tensors of this run's trained ``denoiser``, or whose optimizer trained another number of parameter
    tensors than this run's ``num_trained``, naming the likely cause. DeepSpeed's own files are only checked for
    safety ([`check_checkpoint_files`]): DeepSpeed names what does not match when it loads them."""
    written_by = next(name for name, file in MODEL_FILES.items() if os.path.exists(os.path.join(folder, file)))
    if written_by != engine:
        raise ValueError(
            f"--resume_from_checkpoint: {folder} was written under {written_by} ({MODEL_FILES[written_by]}) and this "
            f"run uses {engine}, which reads {MODEL_FILES[engine]}: resume it with the launch that wrote it (see "
            "docs/training.md, 'Several processes')."
        )
    path = os.path.join(folder, MODEL_FILES[engine])
    if engine == "DDP":
        with safe_open(path, framework="pt") as f:
            stored = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    elif engine == "FSDP":
        stored = {
            key: tuple(value.shape) for key, value in accelerate_load(path, map_location="cpu", mmap=True).items()
        }
    else:
        return
    message = mismatch_message(
        path, "TruePoseDenoiser", stored, {key: tuple(value.shape) for key, value in denoiser.state_dict().items()}
    )
    if message:
        raise ValueError(message)
    optimizer_path = os.path.join(folder, "optimizer.bin")
    optimizer = accelerate_load(optimizer_path, map_location="cpu", mmap=True)
    stored_count = sum(len(group["params"]) for group in optimizer["param_groups"])
    if stored_count != num_trained:
        raise ValueError(
            f"--resume_from_checkpoint: {optimizer_path} trained {stored_count} parameter tensors and this run trains "
            f"{num_trained}: it was probably written with{'' if stored_count < num_trained else 'out'} "
            "--freeze_source_unet; resume with the options of the run that wrote it."
        )


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
        cause = "another --pretrained_model"
    return (
        f"--resume_from_checkpoint: {path} does not match this run's {label}: tensors {', '.join(parts)}. It was "
        f"probably written with {cause}; resume with the options of the run that wrote it."
    )
