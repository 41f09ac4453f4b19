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

import torch
from accelerate import Accelerator
from accelerate.utils import load as accelerate_load
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .._errors import describe_error

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
