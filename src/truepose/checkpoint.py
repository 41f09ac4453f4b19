"""Pipeline checkpoint folders (``model_index.json`` and one folder per component): checked before loading, loaded
and saved quietly, and errors that name the file or config field at fault.

[`TruePosePipeline.from_pretrained`] and [`TruePosePipeline.save_pretrained`] are thin entry points to
[`load_checkpoint`] and [`save_checkpoint`]; the loading and writing themselves are diffusers' (and the atomic swap
`truepose._saving.atomic_folder`).

Every saved folder follows diffusers' convention for pipelines it does not ship: ``model_index.json`` names the class
as ``["pipeline_truepose", "TruePosePipeline"]`` and the folder holds ``pipeline_truepose.py``, which only imports the
class from the installed truepose, so ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` loads it
(and, without ``trust_remote_code``, diffusers says to pass it). [`pipeline_class_name`] lets TruePose's own
``from_pretrained`` read both that form and the plain ``"TruePosePipeline"`` of folders saved before it, without
running the file.
"""

import contextlib
import importlib
import inspect
import json
import os
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderTiny, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import logging
from diffusers.utils.hub_utils import load_or_create_model_card, populate_model_card
from huggingface_hub import create_repo
from transformers import CLIPVisionModelWithProjection

from ._errors import describe_error, read_json
from ._hub import is_local_path, is_placeholder_id, placeholder_note
from ._saving import atomic_folder, interrupted_save
from ._warnings import transformers_bars_off
from .models import PoseEncoder, TargetNet

# The module file diffusers' custom-pipeline loading imports from a checkpoint folder (``<PIPELINE_MODULE>.py``).
PIPELINE_MODULE = "pipeline_truepose"

_PIPELINE_FILE = '''"""The pipeline class of this TruePose checkpoint, for diffusers' custom-pipeline loading:
``DiffusionPipeline.from_pretrained(this_folder_or_hub_id, trust_remote_code=True)``.

It only imports the class from the installed truepose package (``pip install truepose``);
``{name}.from_pretrained(...)`` loads the same folder without it.
"""

from {module} import {name}

__all__ = ["{name}"]
'''


def pipeline_class_name(config: dict) -> dict:
    """``config`` (a ``model_index.json``) with a custom-pipeline ``_class_name`` ``[PIPELINE_MODULE, name]``
    replaced by ``name``, so that a TruePose class loads its own folders without importing their pipeline file."""
    name = config.get("_class_name")
    if isinstance(name, list) and len(name) == 2 and name[0] == PIPELINE_MODULE:
        config = {**config, "_class_name": name[1]}
    return config


def write_pipeline_module(folder: str, pipeline_class: type) -> None:
    """Make the checkpoint in ``folder`` loadable by plain ``DiffusionPipeline.from_pretrained(folder,
    trust_remote_code=True)``: write ``PIPELINE_MODULE``.py (an import of ``pipeline_class``) and name it in
    ``model_index.json``. A class defined in ``__main__`` (not importable by name) keeps diffusers' plain form."""
    if pipeline_class.__module__ == "__main__":
        return
    file = os.path.join(folder, f"{PIPELINE_MODULE}.py")
    with open(file, "w", encoding="utf-8") as f:
        f.write(_PIPELINE_FILE.format(module=pipeline_class.__module__, name=pipeline_class.__name__))
    index_file = os.path.join(folder, "model_index.json")
    index = _read_json(index_file)
    index["_class_name"] = [PIPELINE_MODULE, pipeline_class.__name__]
    with open(index_file, "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


def load_checkpoint(
    load: Callable[..., DiffusionPipeline], pretrained_model_name_or_path: str | os.PathLike, **kwargs
) -> DiffusionPipeline:
    """``load(path, **kwargs)`` (a pipeline class's [`DiffusionPipeline.from_pretrained`]) with clear errors for a
    missing or incomplete checkpoint: a local folder is checked first (the first file it lacks, or the config field
    it gets wrong, is named); a Hub id that cannot be loaded gets the advice to download it and load it locally."""
    if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
        raise TypeError(
            "`pretrained_model_name_or_path` must be a checkpoint folder or Hub id, got "
            f"{type(pretrained_model_name_or_path).__name__}."
        )
    path = os.fspath(pretrained_model_name_or_path)
    _check_name(path)
    if os.path.isdir(path) and not _check_checkpoint_folder(path):
        kwargs.setdefault("use_safetensors", False)  # .bin weights only: no failed look for safetensors first
    try:
        with _quiet_components():
            return load(path, **kwargs)
    except (OSError, ValueError, RuntimeError) as error:
        if os.path.isdir(path):
            raise _load_error(path, error) from None
        if isinstance(error, RuntimeError):
            raise
        raise hub_load_error(path, error) from None


def read_model_index(pretrained_model_name_or_path: str | os.PathLike) -> dict:
    """The ``model_index.json`` of a checkpoint folder or Hub id, read without loading any weights (of a Hub id, that
    one file is downloaded, or taken from the cache offline), with `load_checkpoint`'s errors for a folder that does
    not exist, a placeholder id or a Hub id that cannot be reached."""
    path = os.fspath(pretrained_model_name_or_path)
    _check_name(path)
    if os.path.isdir(path):
        file = os.path.join(path, "model_index.json")
        if not os.path.isfile(file):
            raise OSError(f"{path!r} is not a TruePose checkpoint: it has no model_index.json.")
    else:
        from huggingface_hub import hf_hub_download

        try:
            file = hf_hub_download(path, "model_index.json")
        except Exception as error:  # offline, no such repo, auth: all end with the same advice
            raise hub_load_error(path, error) from None
    return pipeline_class_name(_read_json(file))


def has_parser(model_index: dict) -> bool:
    """Whether a checkpoint's ``model_index.json`` (`read_model_index`) names a ``parser`` component."""
    entry = model_index.get("parser")
    return isinstance(entry, list) and len(entry) == 2 and None not in entry


def _check_name(path: str) -> None:
    """Refuse at once what cannot be loaded: a save's temporary folder, a local path that does not exist (never
    retried as a Hub id, `truepose._hub.is_local_path`), a placeholder id of the docs."""
    _check_not_interrupted(path)
    if os.path.isdir(path):
        return
    if is_local_path(path):
        raise OSError(f"No TruePose checkpoint folder at {path!r}: the folder does not exist.")
    if is_placeholder_id(path):
        raise OSError(f"Could not load the TruePose checkpoint {path!r}: {placeholder_note()}")


def hub_load_error(path: str, error: Exception) -> OSError:
    """The error of a Hub id that could not be loaded: how to download it for use offline."""
    return OSError(
        f"Could not load the TruePose checkpoint {path!r} from the Hugging Face Hub ({type(error).__name__}). "
        f"Without network access, download it elsewhere (`hf download {path} --local-dir truepose-model`), "
        "copy the folder here and pass its path: `TruePosePipeline.from_pretrained('truepose-model')`."
    )


def save_checkpoint(
    save: Callable[..., None],
    upload: Callable[..., Any],
    pipeline_class: type,
    save_directory: str | os.PathLike,
    safe_serialization: bool = True,
    variant: str | None = None,
    max_shard_size: int | str | None = None,
    push_to_hub: bool = False,
    **kwargs,
) -> None:
    """``save(folder, ...)`` (a pipeline's [`DiffusionPipeline.save_pretrained`]) into ``save_directory``, all or
    nothing (see [`TruePosePipeline.save_pretrained`]); with ``push_to_hub=True`` the repository is created first and
    ``upload(folder, repo_id, ...)`` (the pipeline's ``_upload_folder``) sends the saved folder after the swap.
    ``pipeline_class`` is written into the folder for diffusers' custom-pipeline loading (`write_pipeline_module`)."""
    if not isinstance(save_directory, (str, os.PathLike)):
        raise TypeError(f"`save_directory` must be a folder path, got {type(save_directory).__name__}.")
    path = os.fspath(save_directory)
    if not path.strip():
        raise ValueError(
            "`save_directory` is empty; name the folder to write the checkpoint into (use '.' for the current "
            "directory)."
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`save_directory` {path!r} is a file, not a folder.")
    path = os.path.realpath(path)  # a symlinked folder: swap its target, keep the link
    hub_options = {
        k: kwargs.pop(k) for k in ("repo_id", "token", "private", "commit_message", "create_pr") if k in kwargs
    }
    if push_to_hub:  # before any work, as diffusers does: no token or network fails here
        repo_id = hub_options.get("repo_id", os.path.basename(path))
        token = hub_options.get("token")
        repo_id = create_repo(repo_id, exist_ok=True, private=hub_options.get("private"), token=token).repo_id
    with _quiet_components(), atomic_folder(path) as folder:
        save(folder, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size, **kwargs)
        write_pipeline_module(folder, pipeline_class)
    if push_to_hub:
        model_card = populate_model_card(load_or_create_model_card(repo_id, token=token, is_pipeline=True))
        model_card.save(os.path.join(path, "README.md"))
        upload(
            path, repo_id, token=token, commit_message=hub_options.get("commit_message"),
            create_pr=hub_options.get("create_pr", False),
        )  # fmt: skip


# diffusers warns on every load of an AutoencoderTiny config, about a field AutoencoderTiny itself writes into it
_AUTOENCODER_TINY_NOTE = re.compile(
    r"The config attributes \{'block_out_channels': \[[\d, ]*\]\} were passed to AutoencoderTiny,"
)


@contextlib.contextmanager
def _quiet_components() -> Iterator[None]:
    """Silence what every pipeline load or save would print without cause: diffusers' note that an `AutoencoderTiny`
    config holds ``block_out_channels`` (which `AutoencoderTiny.__init__` registers itself) and transformers'
    weight loading/writing bars, which would nest inside the pipeline's component bar."""
    config_logger = logging.get_logger("diffusers.configuration_utils")
    keep = lambda record: not _AUTOENCODER_TINY_NOTE.match(record.getMessage())  # noqa: E731
    config_logger.addFilter(keep)
    try:
        with transformers_bars_off():
            yield
    finally:
        config_logger.removeFilter(keep)


_REQUIRED_COMPONENTS = (
    "vae", "source_unet", "target_unet", "pose_encoder", "image_encoder", "feature_extractor", "scheduler"
)  # fmt: skip
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")


def _check_not_interrupted(path: str) -> None:
    """Refuse to load the temporary folder of a save in progress, and name the old checkpoint a killed save left
    beside a missing ``path``."""
    if re.fullmatch(r"\..+\.tmp-[0-9a-f]{8}", os.path.basename(os.path.normpath(path))):
        raise OSError(
            f"{path!r} is the temporary folder of a `save_pretrained` that is running or was interrupted; it may be "
            "incomplete. Load the folder it was saving into."
        )
    old = interrupted_save(os.path.realpath(path))
    if old is not None:
        raise OSError(
            f"No TruePose checkpoint folder at {path!r}: a save into it was interrupted, and the previous checkpoint "
            f"is at {old!r}. Rename that folder back to {os.path.basename(os.path.normpath(path))!r} (the next "
            "`save_pretrained` into this path does so itself)."
        )


def _check_checkpoint_folder(path: str) -> bool:
    """Raise a clear error naming the first file a local checkpoint folder lacks, or the config field it gets wrong.

    Weights may be safetensors or ``.bin`` files, sharded or not, with or without a variant (``*.fp16.safetensors``):
    which of them is loaded, and how, is left to [`DiffusionPipeline.from_pretrained`]. Returns whether any
    component has safetensors weights.
    """
    index_file = os.path.join(path, "model_index.json")
    if not os.path.isfile(index_file):
        raise OSError(f"{path!r} is not a TruePose checkpoint: it has no model_index.json.")
    index = _read_json(index_file)
    has_safetensors = False
    for name in _REQUIRED_COMPONENTS:
        entry = index.get(name)
        if not isinstance(entry, list) or len(entry) != 2 or None in entry:
            raise OSError(f"Checkpoint {path!r} is incomplete: model_index.json has no `{name}` component.")
        folder = os.path.join(path, name)
        files = os.listdir(folder) if os.path.isdir(folder) else []
        configs = [f for f in files if f.endswith(".json") and not f.endswith(".index.json")]
        if not configs:
            raise OSError(f"Checkpoint {path!r} is incomplete: missing {os.path.join(name, 'config.json')}.")
        if name not in ("feature_extractor", "scheduler") and not any(f.endswith(_WEIGHT_SUFFIXES) for f in files):
            raise OSError(f"Checkpoint {path!r} is incomplete: no weights (.safetensors or .bin) in {name}/.")
        _check_component_class(index_file, name, *entry)
        for config_name in configs:
            _check_config_types(os.path.join(folder, config_name), *entry)
        for weights in sorted(f for f in files if f.endswith(".safetensors")):
            _check_safetensors_header(os.path.join(folder, weights), name)
        has_safetensors = has_safetensors or any(".safetensors" in f for f in files)
    return has_safetensors


# What each component must be; model_index.json may name a subclass (e.g. a fine-tuned TargetNet).
_COMPONENT_TYPES: dict[str, tuple[type, ...]] = {
    "vae": (AutoencoderKL, AutoencoderTiny, AutoencoderDC),
    "source_unet": (UNet2DConditionModel,),
    "target_unet": (TargetNet,),
    "pose_encoder": (PoseEncoder,),
    "image_encoder": (CLIPVisionModelWithProjection,),
}


def _check_component_class(index_file: str, name: str, library: str, class_name: str) -> None:
    """Refuses, at load, a component class that cannot do its part: e.g. a plain `UNet2DConditionModel` as
    ``target_unet`` would load and fail only at the first call."""
    wanted = _COMPONENT_TYPES.get(name)
    if wanted is None:
        return
    cls = None
    if library in ("diffusers", "transformers") or library.startswith("truepose."):
        try:
            cls = getattr(importlib.import_module(library), class_name, None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, wanted)):
        names = " or ".join(f"{t.__module__.split('.')[0]}.{t.__name__}" for t in wanted)
        raise ValueError(
            f"{index_file}: component `{name}` is [{library!r}, {class_name!r}], but TruePose needs a {names} (or a "
            "subclass) there."
        )


def _check_safetensors_header(file: str, name: str) -> None:
    """Reads a safetensors file's header (not its tensors) and refuses one that is not safetensors or is cut short,
    naming the component folder and file."""
    from safetensors import safe_open

    try:
        with safe_open(file, framework="pt") as weights:
            weights.keys()
    except Exception as error:  # SafetensorError derives from Exception only
        raise OSError(
            f"{name}/{os.path.basename(file)} in {os.path.dirname(os.path.dirname(file))!r} is not a valid safetensors "
            f"file ({describe_error(error)}); the file is damaged or incomplete: download or save it again."
        ) from None


def _expected_shapes(folder: str, library: str, class_name: str) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes the component's config builds (on the meta device: no memory, no weights); None when the
    class cannot be built that way."""
    try:
        cls = getattr(importlib.import_module(library), class_name)
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if library == "transformers":
                model = cls(cls.config_class.from_pretrained(folder))
            else:
                model = cls.from_config(cls.load_config(folder))
        return {key: tuple(value.shape) for key, value in model.state_dict().items()}
    except Exception:  # any class we cannot build on meta: no diagnosis, the original error is reported
        return None


def _load_error(path: str, error: Exception) -> Exception:
    """The error of a local checkpoint that passed `_check_checkpoint_folder` but failed to load, as one message
    naming the component folder and file at fault (found by comparing weight shapes with the configs)."""
    from safetensors import safe_open

    message = " ".join(str(error).split())
    index = _read_json(os.path.join(path, "model_index.json"))
    for name in _REQUIRED_COMPONENTS:
        folder = os.path.join(path, name)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
        expected = _expected_shapes(folder, *index[name]) if files else None
        if expected is None:
            continue
        for file in files:
            with safe_open(os.path.join(folder, file), framework="pt") as weights:
                for key in weights.keys():
                    shape = tuple(weights.get_slice(key).get_shape())
                    if key in expected and expected[key] != shape:
                        return ValueError(
                            f"Checkpoint {path!r}: {name}/{file} holds `{key}` with shape {shape}, but "
                            f"{name}/config.json builds it with shape {expected[key]}: the config was changed after "
                            "the weights were saved (or they belong to another model)."
                        )
    kind = type(error) if isinstance(error, (OSError, ValueError)) else ValueError
    return kind(f"Could not load the TruePose checkpoint {path!r}: {message}")


def _read_json(file: str) -> dict:
    """The JSON object in ``file``; a clear error naming the file when it is not one."""
    content = read_json(file, file)
    if not isinstance(content, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(content).__name__}.")
    return content


def _json_types(annotation: Any, default: Any) -> tuple[type, ...] | None:
    """The JSON value types a config field with this ``__init__`` annotation (or, unannotated, this default) takes;
    `None` when it cannot tell (then the field is not checked)."""
    if annotation is inspect.Parameter.empty:
        annotation = type(default) if default is not None and default is not inspect.Parameter.empty else None
    if annotation is None or isinstance(annotation, str):
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        allowed = [_json_types(arg, None) for arg in typing.get_args(annotation)]
        return None if None in allowed else tuple(t for types_ in allowed for t in types_)
    base = typing.get_origin(annotation) or annotation
    json_types = {bool: (bool,), int: (int,), float: (int, float), str: (str,), tuple: (list,), list: (list,)}
    return (type(None),) if annotation is type(None) else json_types.get(base)


def _check_config_types(config_file: str, library: str, class_name: str) -> None:
    """Check each field of a diffusers/truepose component config against the type its class's ``__init__`` takes.

    Catches e.g. ``"block_out_channels": "64"`` with an error naming the file and the field instead of one from deep
    inside the model's constructor. Fields whose type cannot be told from the signature are not checked.
    """
    config = _read_json(config_file)
    if library != "diffusers" and not library.startswith("truepose."):
        return  # transformers components validate their own configs
    cls = getattr(importlib.import_module(library), class_name, None)
    if cls is None or not hasattr(cls, "config_name"):
        return
    for field, parameter in inspect.signature(cls.__init__).parameters.items():
        allowed = _json_types(parameter.annotation, parameter.default) if field in config else None
        value = config.get(field)
        if allowed is None or value is None and parameter.default is None:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = {list: "list", type(None): "null"}
            wanted = " or ".join(sorted({names.get(t, t.__name__) for t in allowed}))
            raise ValueError(
                f"{config_file}: field `{field}` must be {wanted} (like its default {parameter.default!r}), "
                f"got {type(value).__name__} {value!r}."
            )
