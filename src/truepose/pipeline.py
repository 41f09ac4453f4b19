"""TruePosePipeline: pose-guided person image synthesis with HPFA and CAA (arXiv 2502.03426)."""

import contextlib
import copy
import functools
import importlib
import inspect
import math
import os
import re
import threading
import types
import typing
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderTiny,
    DDIMScheduler,
    DiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput, logging, replace_example_docstring
from diffusers.utils.hub_utils import load_or_create_model_card, populate_model_card
from diffusers.utils.torch_utils import randn_tensor
from huggingface_hub import create_repo
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
from transformers.utils import logging as transformers_logging

from ._errors import describe_error, read_json
from ._saving import atomic_folder, interrupted_save
from ._warnings import warn_caller
from .conditioning import ImageInput, as_parsing_batch, as_pose_batch, to_pil_images
from .conditioning import parsing as parsing_utils
from .conditioning.pose import prepare_pose_image
from .models import (
    LayerReference,
    PoseEncoder,
    SourceReference,
    TargetNet,
    capture_reference_tokens,
)

logger = logging.get_logger(__name__)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from truepose import TruePosePipeline
        >>> from truepose.data import SyntheticPoseDataset
        >>> from truepose.demo import SHIPPED_MODEL

        >>> # the small model shipped in the package; a Hub id or checkpoint folder loads the same way
        >>> pipe = TruePosePipeline.from_pretrained(SHIPPED_MODEL, dtype=torch.float32)
        >>> pair = SyntheticPoseDataset(1, image_size=(96, 64), seed=1000)[0]  # a person the model never saw
        >>> image = pipe(
        ...     pair["source_image"],  # PIL image of the person
        ...     pair["target_keypoints"],  # (18, 3) COCO-18 keypoints, or a skeleton image
        ...     source_parsing=pair["source_parsing"],  # not needed when the pipeline has a `parser`
        ...     parsing_label_map=pair["label_map"],
        ...     num_inference_steps=25,
        ...     generator=torch.Generator().manual_seed(0),
        ... ).images[0]
        >>> image.size
        (64, 96)

        ```
"""


CUSTOM_PIPELINE = os.path.join(os.path.dirname(__file__), "custom_pipeline.py")
"""For ``DiffusionPipeline.from_pretrained(path_or_hub_id, custom_pipeline=CUSTOM_PIPELINE, trust_remote_code=True)``."""

# check_inputs warns (before any work) above these: the memory of a call grows with the batch and the pixel count
LARGE_BATCH_WARNING = 64
LARGE_SIZE_WARNING = 4096

# Stable Diffusion 1.5's noise schedule, for models built without an SD checkpoint at hand.
SD15_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


@dataclass
class TruePosePipelineOutput(BaseOutput):
    """Output of [`TruePosePipeline`].

    Args:
        images (`list[PIL.Image.Image]` or `np.ndarray` or `torch.Tensor`): generated images, ``num_images_per_prompt``
            per source, in the order of the sources.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


@dataclass
class _CallState:
    """What a pipeline call changes while it runs: its own scheduler (a copy of the pipeline's) and the values behind
    the pipeline's ``guidance_scale``, ``interrupt`` and ``num_timesteps`` properties."""

    pipeline: "TruePosePipeline"
    scheduler: Any = None
    guidance_scale: float | None = None
    interrupt: bool = False
    num_timesteps: int | None = None


_CALL_STATE: ContextVar[_CallState | None] = ContextVar("truepose_call_state", default=None)


def per_call_state(call: Callable) -> Callable:
    """Decorator of a pipeline's ``__call__``: the call runs with its own [`_CallState`] (in a context variable, so
    one per thread and asyncio task), which ``pipe.scheduler`` and the call-state properties read and write while it
    runs, its callbacks included. Concurrent calls of one pipeline object then share no mutable state."""

    @functools.wraps(call)
    def isolated_call(self, *args, **kwargs):
        state = _CallState(self, copy.deepcopy(self.scheduler))
        self._latest_call = state
        token = _CALL_STATE.set(state)
        try:
            return call(self, *args, **kwargs)
        finally:
            _CALL_STATE.reset(token)

    return isolated_call


class TruePosePipeline(DiffusionPipeline):
    r"""Pipeline for pose-guided person image synthesis with TruePose.

    SourceNet reads the source person once per call; TargetNet denoises the target with human-parsing-guided fusion
    attention (HPFA) over SourceNet's tokens, CLIP-guided attention alignment (CAA) and pose features.

    Args:
        vae ([`AutoencoderKL`], [`AutoencoderTiny`] or [`AutoencoderDC`]): encodes the source and decodes the result.
        source_unet ([`UNet2DConditionModel`]): SourceNet, run once at timestep 0 on the clean source latents.
        target_unet ([`TargetNet`]): the denoiser with HPFA/CAA self-attention.
        pose_encoder ([`PoseEncoder`]): rendered skeleton -> features added after TargetNet's ``conv_in``.
        image_encoder ([`CLIPVisionModelWithProjection`]): CLIP image embeddings of the source and its regions.
        feature_extractor ([`CLIPImageProcessor`]): CLIP preprocessing.
        scheduler ([`SchedulerMixin`]): DDIM by default; any diffusers scheduler works.
        parser ([`SegformerForSemanticSegmentation`], *optional*): human parser; without it, pass ``source_parsing``.
        parser_processor ([`SegformerImageProcessor`], *optional*): the parser's preprocessing.

    One pipeline object may serve many threads at once (a web server's workers): each call keeps its state to itself
    (a copy of the scheduler, guidance scale, interrupt flag; per-layer references travel as arguments), and its
    images equal those of the same call made alone.
    """

    model_cpu_offload_seq = "image_encoder->parser->source_unet->pose_encoder->target_unet->vae"
    _optional_components = ["parser", "parser_processor"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKL | AutoencoderTiny | AutoencoderDC,
        source_unet: UNet2DConditionModel,
        target_unet: TargetNet,
        pose_encoder: PoseEncoder,
        image_encoder: CLIPVisionModelWithProjection,
        feature_extractor: CLIPImageProcessor,
        scheduler: KarrasDiffusionSchedulers,
        parser: Any = None,
        parser_processor: Any = None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            source_unet=source_unet,
            target_unet=target_unet,
            pose_encoder=pose_encoder,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            scheduler=scheduler,
            parser=parser,
            parser_processor=parser_processor,
        )
        self.vae_scale_factor = vae_spatial_compression(self.vae)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.pose_image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor, do_normalize=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "TruePosePipeline":
        """[`DiffusionPipeline.from_pretrained`] with clear errors for a missing or incomplete checkpoint."""
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            raise TypeError(
                "`pretrained_model_name_or_path` must be a checkpoint folder or Hub id, got "
                f"{type(pretrained_model_name_or_path).__name__}."
            )
        path = os.fspath(pretrained_model_name_or_path)
        _check_not_interrupted(path)
        if os.path.isdir(path):
            if not _check_checkpoint_folder(path):
                kwargs.setdefault("use_safetensors", False)  # .bin weights only: no failed look for safetensors first
        elif not re.fullmatch(r"[\w.-]+/[\w.-]+", path) or path.startswith("."):
            raise OSError(f"No TruePose checkpoint folder at {path!r}: the folder does not exist.")
        try:
            with _quiet_components():
                return super().from_pretrained(path, **kwargs)
        except (OSError, ValueError, RuntimeError) as error:
            if os.path.isdir(path):
                raise _load_error(path, error) from None
            if isinstance(error, RuntimeError):
                raise
            raise OSError(
                f"Could not load the TruePose checkpoint {path!r} from the Hugging Face Hub ({type(error).__name__}). "
                f"Without network access, download it elsewhere (`hf download {path} --local-dir truepose-model`), "
                "copy the folder here and pass its path: `TruePosePipeline.from_pretrained('truepose-model')`."
            ) from None

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        """[`DiffusionPipeline.save_pretrained`], all or nothing: the checkpoint is written into a hidden sibling
        folder and swapped into place, so a save killed at any moment leaves the old checkpoint or the new one in
        ``save_directory``, never a mix. Entries of the old folder that are not part of the checkpoint (a training
        run's ``checkpoint-*`` folders, logs) are kept. An empty path (which would write into the current directory)
        or an existing file is refused before anything is written. With ``push_to_hub=True`` the repository is
        created first and the saved folder is uploaded after the swap (``repo_id``, ``token``, ``private``,
        ``commit_message``, ``create_pr`` as in diffusers)."""
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
            super().save_pretrained(
                folder, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size, **kwargs
            )
        if push_to_hub:
            model_card = populate_model_card(load_or_create_model_card(repo_id, token=token, is_pipeline=True))
            model_card.save(os.path.join(path, "README.md"))
            self._upload_folder(
                path, repo_id, token=token, commit_message=hub_options.get("commit_message"),
                create_pr=hub_options.get("create_pr", False),
            )  # fmt: skip

    def to(self, *args, **kwargs) -> "TruePosePipeline":
        """[`DiffusionPipeline.to`] without its per-component "float16 cannot run on cpu" warning: TruePose runs in
        float16 on CPU (slowly), so the warning is not true here."""
        kwargs.setdefault("silence_dtype_warnings", True)
        return super().to(*args, **kwargs)

    @classmethod
    def from_stable_diffusion(
        cls,
        stable_diffusion: str | os.PathLike,
        image_encoder: str | os.PathLike | None = None,
        image_encoder_subfolder: str | None = None,
        dtype: torch.dtype | None = None,
        pose_encoder_channels: tuple[int, ...] | None = None,
        **target_net_settings,
    ) -> "TruePosePipeline":
        """An untrained TruePose from SD-1.5 (VAE, UNet, scheduler config) and CLIP ViT-L/14 image-encoder weights.

        Both UNets copy SD's UNet; CAA projections and the pose encoder's last layer are zero, so the result behaves
        like SD's UNet with reference attention. ``target_net_settings`` go to [`TargetNet`] (``hpfa_sigma``, ...).

        Args:
            stable_diffusion: folder or Hub id of a diffusers SD-1.5 pipeline (``vae/``, ``unet/``, ``scheduler/``),
                e.g. ``"stable-diffusion-v1-5/stable-diffusion-v1-5"``; an image-variation pipeline such as
                ``"lambdalabs/sd-image-variations-diffusers"`` has the same three folders.
            image_encoder: folder or Hub id of the CLIP vision tower: an image-variation pipeline (``image_encoder/``
                with ``feature_extractor/`` beside it) or a CLIP checkpoint with its ``preprocessor_config.json``.
                Default: ``stable_diffusion`` (an image-variation pipeline holds everything).
            image_encoder_subfolder: the tower's subfolder. Default: ``image_encoder`` where that folder exists (for a
                Hub id: where it loads), else the root. The preprocessing is read from the same folder, else from
                ``feature_extractor/``.
            dtype: dtype of every model (e.g. ``torch.float16``); default: as saved.
            pose_encoder_channels: [`PoseEncoder`] channels. Default: 16, doubled at each of the VAE's downsamplings
                (``(16, 32, 64, 128)`` for SD's 8x VAE).
        """
        image_encoder = stable_diffusion if image_encoder is None else image_encoder
        try:
            with warnings.catch_warnings():
                # diffusers passes huggingface_hub's deprecated `local_dir_use_symlinks` when it downloads a config
                warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument is deprecated", UserWarning)
                vae = AutoencoderKL.from_pretrained(stable_diffusion, subfolder="vae", dtype=dtype)
                unet = UNet2DConditionModel.from_pretrained(stable_diffusion, subfolder="unet", dtype=dtype)
                scheduler = DDIMScheduler.from_pretrained(stable_diffusion, subfolder="scheduler")
                encoder, feature_extractor = cls._load_clip_image_encoder(
                    image_encoder, image_encoder_subfolder, dtype
                )
        except (OSError, ValueError) as error:
            if os.path.isdir(stable_diffusion) and os.path.isdir(image_encoder):
                raise
            raise OSError(
                f"Could not load SD-1.5 {os.fspath(stable_diffusion)!r} and the CLIP image encoder "
                f"{os.fspath(image_encoder)!r} ({describe_error(error)}). Without network access, download them "
                "elsewhere (`hf download <repo id> --local-dir <folder>`), copy the folders here and pass their paths."
            ) from None
        downsamplings = int(math.log2(vae_spatial_compression(vae)))
        channels = pose_encoder_channels or tuple(16 * 2**i for i in range(downsamplings + 1))
        pose_encoder = PoseEncoder(block_out_channels=channels, out_channels=unet.config.block_out_channels[0])
        target_net_settings.setdefault("region_embed_dim", encoder.config.projection_dim)
        target_unet = TargetNet.from_unet(unet, **target_net_settings)  # a copy: SD's UNet itself becomes SourceNet
        if pose_encoder.dtype != unet.dtype:
            pose_encoder = pose_encoder.to(dtype=unet.dtype)
        return cls(vae, unet, target_unet, pose_encoder, encoder, feature_extractor, scheduler)

    @staticmethod
    def _load_clip_image_encoder(
        path: str | os.PathLike, subfolder: str | None, dtype: torch.dtype | None
    ) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
        """The CLIP vision tower and its preprocessing, for [`~TruePosePipeline.from_stable_diffusion`]."""
        path = os.fspath(path)
        if subfolder is not None:
            candidates = [subfolder]
        elif os.path.isdir(path):
            candidates = ["image_encoder" if os.path.isdir(os.path.join(path, "image_encoder")) else ""]
        else:
            candidates = ["image_encoder", ""]
        for index, folder in enumerate(candidates):
            try:
                encoder = CLIPVisionModelWithProjection.from_pretrained(path, subfolder=folder, dtype=dtype)
                break
            except OSError:
                if index == len(candidates) - 1:
                    raise
        for processor_folder in dict.fromkeys([folder, "feature_extractor"]):
            try:
                return encoder, CLIPImageProcessor.from_pretrained(path, subfolder=processor_folder)
            except OSError:
                continue
        raise OSError(
            f"No CLIP image processor (preprocessor_config.json) in {path!r}: looked in "
            f"{folder + '/' if folder else 'the root'} and feature_extractor/."
        )

    def _call_state(self) -> _CallState:
        """The state of the call running in this thread (or task); elsewhere, that of the latest call started."""
        state = _CALL_STATE.get()
        if state is not None and state.pipeline is self:
            return state
        if "_latest_call" not in self.__dict__:
            self._latest_call = _CallState(self)
        return self._latest_call

    @property
    def scheduler(self) -> KarrasDiffusionSchedulers:
        """The pipeline's scheduler; inside a call (its callbacks included) the call's own copy, which the call sets
        its timesteps on. Assigning a scheduler changes the pipeline's, used from the next call on."""
        state = _CALL_STATE.get()
        if state is not None and state.pipeline is self and state.scheduler is not None:
            return state.scheduler
        try:
            return self.__dict__["scheduler"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no scheduler yet.") from None

    @scheduler.setter
    def scheduler(self, scheduler: KarrasDiffusionSchedulers) -> None:
        self.__dict__["scheduler"] = scheduler

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def _guidance_scale(self) -> float:
        return self._call_state().guidance_scale

    @_guidance_scale.setter
    def _guidance_scale(self, value: float) -> None:
        self._call_state().guidance_scale = value

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Any scale but 1 mixes both branches: ``eps_u + g (eps_c - eps_u)``; 0 gives the unconditional model."""
        return self._guidance_scale != 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def _num_timesteps(self) -> int:
        return self._call_state().num_timesteps

    @_num_timesteps.setter
    def _num_timesteps(self, value: int) -> None:
        self._call_state().num_timesteps = value

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a step callback to skip the remaining denoising steps of that call.

        These properties (``guidance_scale``, ``num_timesteps``, ``interrupt``) read the running call's own values;
        outside a call (after it, or from another thread) those of the latest call started, so setting
        ``pipe._interrupt = True`` from another thread stops the latest call.
        """
        return self._interrupt

    @property
    def _interrupt(self) -> bool:
        return self._call_state().interrupt

    @_interrupt.setter
    def _interrupt(self, value: bool) -> None:
        self._call_state().interrupt = value

    def canonical_inputs(
        self,
        source_image: Any,
        poses: Any,
        source_parsing: Any,
        height: int | None,
        width: int | None,
        callback_on_step_end: Any,
        callback_on_step_end_tensor_inputs: list[str],
        poses_argument: str = "target_pose",
    ) -> tuple[list[PIL.Image.Image], list, list | None, Any, Any, list[str]]:
        """The call's inputs in their canonical forms (`truepose.conditioning`): source images, poses, parsing maps,
        output size (the source's where not given) and the tensors a `PipelineCallback` object asks for."""
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        sources = to_pil_images(source_image, "source_image")
        poses = as_pose_batch(poses, poses_argument)
        source_parsing = None if source_parsing is None else as_parsing_batch(source_parsing, "source_parsing")
        source_width, source_height = sources[0].size
        height = source_height if height is None else height
        width = source_width if width is None else width
        return sources, poses, source_parsing, height, width, callback_on_step_end_tensor_inputs

    def check_inputs(
        self,
        sources: list[PIL.Image.Image],
        poses: list,
        source_parsing: list | None,
        height: int,
        width: int,
        num_inference_steps: int,
        guidance_scale: float,
        num_images_per_prompt: int,
        callback_on_step_end_tensor_inputs: list[str],
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        target_pose_is_photo: bool = False,
        pose_detector: Callable | None = None,
        retarget_pose: bool | None = None,
        callback_on_step_end: Callable | None = None,
    ) -> None:
        """Checks every argument before any work; `sources`, `poses`, `source_parsing` are already split in lists."""
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
        if height % self.vae_scale_factor or width % self.vae_scale_factor or height <= 0 or width <= 0:
            raise ValueError(
                f"`height` and `width` must be positive multiples of {self.vae_scale_factor}, got {height}x{width}."
            )
        for name, value in (
            ("num_inference_steps", num_inference_steps),
            ("num_images_per_prompt", num_images_per_prompt),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
            if value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        for name, value in (("guidance_scale", guidance_scale), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}.")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
        if len({source.size for source in sources}) > 1:
            raise ValueError(f"All `source_image`s must have the same size, got {[s.size for s in sources]}.")
        if len(sources) != len(poses) and 1 not in (len(sources), len(poses)):
            raise ValueError(
                f"`source_image` and `target_pose` batch sizes must match (or one be 1), got {len(sources)} and "
                f"{len(poses)}."
            )
        if source_parsing is not None:
            if len(source_parsing) != len(sources):
                raise ValueError(f"`source_parsing` has {len(source_parsing)} maps for {len(sources)} source images.")
        elif self.parser is None:
            raise ValueError(
                "`source_parsing` is required: this pipeline has no `parser`. Pass a parsing map per source image, "
                "or load a human parser into the pipeline (see docs/inputs.md)."
            )
        if target_pose_is_photo and pose_detector is None:
            raise ValueError(
                "`target_pose_is_photo=True` needs a `pose_detector`, e.g. "
                "`truepose.conditioning.PoseDetector.from_pretrained('lllyasviel/Annotators')`."
            )
        if retarget_pose and not target_pose_is_photo:
            raise ValueError(
                "`retarget_pose=True` needs `target_pose_is_photo=True` (the source person's keypoints come from the "
                "`pose_detector`); keypoints and skeleton images are used as they are."
            )
        if pose_detector is not None and not callable(pose_detector):
            raise TypeError(
                f"`pose_detector` must be callable (image -> keypoints), got {type(pose_detector).__name__}."
            )
        generators = generator if isinstance(generator, list) else [generator]
        if not all(g is None or isinstance(g, torch.Generator) for g in generators) or generator == []:
            raise TypeError(f"`generator` must be a torch.Generator or a list of them, got {generator!r}.")
        num_images = max(len(sources), len(poses)) * num_images_per_prompt
        if isinstance(generator, list) and len(generator) != num_images:
            raise ValueError(f"`generator` is a list of {len(generator)} generators for {num_images} images.")
        if latents is not None:
            f = self.vae_scale_factor
            check_latents_tensor(latents, (num_images, self.target_unet.config.in_channels, height // f, width // f))
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}.")
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError(f"`callback_on_step_end` must be callable, got {type(callback_on_step_end).__name__}.")
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs}: {unknown}."
            )
        if num_images_per_prompt > LARGE_BATCH_WARNING:
            warn_caller(
                f"`num_images_per_prompt` {num_images_per_prompt} makes {num_images} images in one batch (twice as "
                "many UNet rows with guidance): memory grows with it. Above "
                f"{LARGE_BATCH_WARNING}, generate in several calls."
            )
        if max(height, width) > LARGE_SIZE_WARNING:
            f = self.vae_scale_factor
            warn_caller(
                f"`height` x `width` {height}x{width} is larger than {LARGE_SIZE_WARNING} pixels per side: latents of "
                f"{height // f}x{width // f}, {height // f * width // f} tokens in each first-level attention (twice "
                "that with the source's); it may not fit in memory, and the model was trained far smaller."
            )
        source_width, source_height = sources[0].size
        if abs((source_height / source_width) / (height / width) - 1) > parsing_utils.ASPECT_RATIO_TOLERANCE:
            warn_caller(
                f"`source_image` of size (height, width) = ({source_height}, {source_width}) has another aspect ratio "
                f"than the output ({height}, {width}); it is stretched. Crop or pad it to the output's aspect ratio."
            )

    def encode_image(self, images: list[PIL.Image.Image], device: torch.device) -> torch.Tensor:
        """CLIP image embeddings `(len(images), 1, projection_dim)`."""
        pixel_values = self.feature_extractor(images=images, return_tensors="pt").pixel_values
        pixel_values = pixel_values.to(device=device, dtype=self.image_encoder.dtype)
        return self.image_encoder(pixel_values).image_embeds[:, None, :]

    def parse_sources(
        self, sources: list[PIL.Image.Image], source_parsing: Any, label_map: Any
    ) -> tuple[list[np.ndarray], parsing_utils.LabelMap]:
        """Label-id maps `(H, W)` of the sources, from ``source_parsing`` or the pipeline's parser."""
        if source_parsing is None:
            maps = parsing_utils.parse_images(self.parser, self.parser_processor, sources)
            return maps, parsing_utils.label_map_from_id2label(self.parser.config.id2label)
        label_map = parsing_utils.get_label_map(label_map, "parsing_label_map")
        maps = as_parsing_batch(source_parsing, "source_parsing")
        width, height = sources[0].size
        names = ["source_parsing"] if len(maps) == 1 else [f"source_parsing[{i}]" for i in range(len(maps))]
        maps = [
            parsing_utils.as_parsing_map(m, height, width, label_map, argument_name=n) for m, n in zip(maps, names)
        ]
        for parsing, name in zip(maps, names):
            parsing_utils.person_mask(parsing, label_map, argument_name=name)  # no person: HPFA would weight nothing
        return maps, label_map

    def encode_parsing(
        self,
        sources: list[PIL.Image.Image],
        parsing_maps: list[np.ndarray],
        label_map: parsing_utils.LabelMap,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """HPFA person masks, CAA region masks and the regions' CLIP embeddings.

        Returns:
            person masks `(batch, 1, H, W)`, region masks `(batch, R, H, W)` (all-zero rows pad to the largest region
            count, ``R >= 1``) and region embeddings `(batch, R, dim)`, at the parsing maps' size `(H, W)`.
        """
        person, region_masks, crops = [], [], []
        for source, parsing in zip(sources, parsing_maps):
            person.append(parsing_utils.person_mask(parsing, label_map))
            region_masks.append(parsing_utils.region_masks(parsing, label_map)[1])
            crops += parsing_utils.region_crops(source, region_masks[-1])
        counts = [len(masks) for masks in region_masks]
        height, width = parsing_maps[0].shape
        padded_masks = np.zeros((len(sources), max(1, *counts), height, width), dtype=np.float32)
        for i, masks in enumerate(region_masks):
            padded_masks[i, : len(masks)] = masks
        embed_dim = self.image_encoder.config.projection_dim
        region_embeds = torch.zeros(len(sources), padded_masks.shape[1], embed_dim, device=device)
        if crops:
            for i, embeds in enumerate(self.encode_image(crops, device)[:, 0].split(counts)):
                region_embeds[i, : len(embeds)] = embeds
        person_mask = torch.from_numpy(np.stack(person)[:, None].astype(np.float32)).to(device)
        return person_mask, torch.from_numpy(padded_masks).to(device), region_embeds

    def encode_source_latents(
        self,
        sources: list[PIL.Image.Image],
        height: int,
        width: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scaled VAE latents `(batch, 4, height / f, width / f)` of images resized to (height, width).

        The posterior's mode, or a sample drawn with ``generator`` when one is given (training targets); an
        [`AutoencoderTiny`] and [`AutoencoderDC`] give their latents as they are.
        """
        images = [source.resize((width, height), PIL.Image.BICUBIC) for source in sources]
        pixel_values = self.image_processor.preprocess(images, height, width).to(device=device, dtype=self.vae.dtype)
        with vae_lock(self.vae):  # a float16 VAE may be upcast by a decode in another thread
            encoded = self.vae.encode(pixel_values)
        if hasattr(encoded, "latent_dist"):  # AutoencoderKL; AutoencoderTiny and AutoencoderDC are deterministic
            latents = encoded.latent_dist.mode() if generator is None else encoded.latent_dist.sample(generator)
        else:
            latents = encoded.latents if hasattr(encoded, "latents") else encoded.latent
        return latents * self.vae.config.scaling_factor

    def encode_source(
        self,
        sources: list[PIL.Image.Image],
        parsing_maps: list[np.ndarray],
        label_map: parsing_utils.LabelMap,
        height: int,
        width: int,
        device: torch.device,
        source_dropped: torch.Tensor | None = None,
        source_unet: torch.nn.Module | None = None,
    ) -> tuple[SourceReference, torch.Tensor]:
        """Everything computed once per call from the sources: SourceNet tokens, masks, region and image embeddings.

        The one source encoding of inference and training (``truepose.train`` calls it with its condition dropout
        and its, possibly accelerate-wrapped, SourceNet). The frozen encoders (CLIP, VAE) run without gradients;
        SourceNet runs under the caller's grad mode, so training gets SourceNet's gradients through the tokens.

        Args:
            sources: RGB source images; parsing_maps: their label-id maps `(H, W)` in ``label_map``'s labels.
            height, width: the size the sources are encoded at (the output size).
            source_dropped (`torch.Tensor` of shape `(batch,)`, bool, *optional*): rows that must not see the source
                (condition dropout): their CLIP embedding is zero, also for SourceNet. None: no row dropped.
            source_unet (*optional*): the SourceNet to run; the pipeline's by default.
        Returns:
            A [`SourceReference`] for the sources and their CLIP embeddings `(batch, 1, dim)`.
        """
        if source_dropped is None:
            source_dropped = torch.zeros(len(sources), dtype=torch.bool, device=device)
        with torch.no_grad():
            image_embeds = self.encode_image(sources, device).masked_fill(source_dropped[:, None, None], 0.0)
            person_mask, region_masks, region_embeds = self.encode_parsing(sources, parsing_maps, label_map, device)
            source_latents = self.encode_source_latents(sources, height, width, device)
        dtype = self.source_unet.dtype
        bank = capture_reference_tokens(
            source_unet or self.source_unet, source_latents.to(dtype), image_embeds.to(dtype)
        )
        reference = SourceReference(
            bank=bank,
            person_mask=person_mask,
            region_masks=region_masks,
            region_embeds=region_embeds.to(self.target_unet.dtype),
            source_dropped=source_dropped,
        )
        return reference, image_embeds

    def prepare_pose(
        self,
        target_pose: list,
        height: int,
        width: int,
        device: torch.device,
        dtype: torch.dtype,
        sources: list[PIL.Image.Image] | None = None,
        target_pose_is_photo: bool = False,
        pose_detector: Callable | None = None,
        retarget_pose: bool | None = None,
        poses_argument: str = "target_pose",
    ) -> torch.Tensor:
        """Target poses -> skeleton pixels `(batch, 3, height, width)` in [0, 1], the pose encoder's input.

        Like ControlNet's ``prepare_image``. Each pose (keypoints, skeleton image, or with ``target_pose_is_photo``
        a person photo read by ``pose_detector``) is drawn at `(height, width)`; ``sources`` (one per pose) are only
        needed to retarget poses taken from photos onto the source person. Errors name a bad pose
        ``{poses_argument}[i]`` (``{poses_argument}`` alone for a single pose).
        """
        detect = pose_detector if target_pose_is_photo else None
        pose_images = [
            prepare_pose_image(
                pose,
                height,
                width,
                is_photo=target_pose_is_photo,
                detector=detect,
                source_keypoints=(
                    detect(source.resize((width, height), PIL.Image.BICUBIC))
                    if detect and retarget_pose is not False  # the source is only read to retarget onto it
                    else None
                ),
                retarget=retarget_pose,
                argument_name=f"{poses_argument}[{index}]" if len(target_pose) > 1 else poses_argument,
            )
            for index, (pose, source) in enumerate(zip(target_pose, sources or [None] * len(target_pose)))
        ]
        return self.pose_image_processor.preprocess(pose_images, height, width).to(device=device, dtype=dtype)

    def prepare_latents(
        self,
        batch_size: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shape = (
            batch_size,
            self.target_unet.config.in_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"`generator` is a list of {len(generator)} generators for {batch_size} images.")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif latents.shape != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        return latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode to `(batch, 3, H, W)` in [-1, 1]; fp16 VAEs marked ``force_upcast`` decode in fp32 (no NaN)."""
        vae = self.vae
        with vae_lock(vae):  # the upcast changes the shared VAE: no other thread may use it meanwhile
            if vae.dtype == torch.float16 and vae.config.force_upcast:
                with torch.autocast(latents.device.type, enabled=False):
                    vae.float()  # not `.to(dtype)`: diffusers would warn about "modules kept in float32: []"
                    try:
                        images = vae.decode(latents.float() / vae.config.scaling_factor, return_dict=False)[0]
                    finally:
                        vae.half()
            else:
                images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        if not torch.isfinite(images).all():
            hint = " (float16 overflow: load the VAE in float32 or set `force_upcast` in its config)"
            raise ValueError(
                f"The VAE ({type(vae).__name__}, {vae.dtype}) decoded non-finite pixels (NaN or inf)"
                f"{hint if vae.dtype == torch.float16 else ''}."
            )
        return images

    def project_source(self, layer_references: dict[str, LayerReference]) -> dict[str, LayerReference]:
        """Every TargetNet layer's source keys/values, projected once per call ([`TargetNet.project_source`]).

        Under `enable_model_cpu_offload` TargetNet moves to the GPU only when its `forward` runs; projecting is not
        a forward, so its offload hook is asked to move it first (the same move its first step would make).
        """
        offload_hook = getattr(self.target_unet, "_hf_hook", None)
        if offload_hook is not None:
            offload_hook.pre_forward(self.target_unet)
        return self.target_unet.project_source(layer_references)

    def prepare_extra_step_kwargs(
        self, generator: torch.Generator | list[torch.Generator] | None, eta: float
    ) -> dict[str, Any]:
        """``eta`` and ``generator`` for schedulers whose ``step`` takes them (DDIM takes ``eta``)."""
        step_parameters = set(inspect.signature(self.scheduler.step).parameters)
        extra_step_kwargs = {"eta": eta} if "eta" in step_parameters else {}
        if "generator" in step_parameters:
            extra_step_kwargs["generator"] = generator
        return extra_step_kwargs

    def denoise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        image_embeds: torch.Tensor,
        pose_features: torch.Tensor,
        layer_references: dict[str, LayerReference],
        extra_step_kwargs: dict[str, Any],
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The denoising loop: initial noise `(batch, 4, h, w)` -> denoised latents of the same shape.

        ``image_embeds``, ``pose_features`` and ``layer_references`` have ``[unconditional ; conditional]`` rows
        (`2 * batch`) under classifier-free guidance, ``batch`` rows otherwise; ``cross_attention_kwargs`` go to
        TargetNet.
        """
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                noise_pred = self.target_unet(
                    latent_model_input,
                    t,
                    encoder_hidden_states=image_embeds,
                    pose_features=pose_features,
                    layer_references=layer_references,
                    cross_attention_kwargs=cross_attention_kwargs,
                    return_dict=False,
                )[0]
                if self.do_classifier_free_guidance:
                    noise_pred_uncond, noise_pred_cond = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_cond - noise_pred_uncond)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                check_finite_latents(latents, i, len(timesteps), self.guidance_scale, extra_step_kwargs.get("eta"))

                if callback_on_step_end is not None:
                    step_tensors = {"latents": latents}
                    callback_kwargs = {name: step_tensors[name] for name in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    check_finite_latents(latents, i, len(timesteps), callback=callback_on_step_end)
                progress_bar.update()
        return latents

    @torch.no_grad()
    @per_call_state
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        source_image: ImageInput | list[ImageInput],
        target_pose: Any,
        source_parsing: Any = None,
        parsing_label_map: str | dict | parsing_utils.LabelMap = "atr",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 35,
        guidance_scale: float = 2.0,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        target_pose_is_photo: bool = False,
        pose_detector: Callable | None = None,
        retarget_pose: bool | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> TruePosePipelineOutput | tuple:
        r"""Generate the source person in the target pose.

        Args:
            source_image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them): RGB source person(s).
            target_pose: a skeleton image, an `(18, 2)`/`(18, 3)` COCO-18 keypoint array in pixels of the output
                frame (missing joints -1 or confidence 0), a person photo (with ``target_pose_is_photo=True``), or a
                list of those (one per source, or one for all).
            source_parsing (label-id map or list of maps, *optional*): human parsing of each source, same size as
                the source; computed by the pipeline's ``parser`` when omitted.
            parsing_label_map (`str`, `dict` or `LabelMap`): label table of ``source_parsing`` ("atr", "lip",
                "cihp", "deepfashion").
            height, width (`int`, *optional*): output size, multiples of the VAE factor; the source's size by default.
            num_inference_steps (`int`, defaults to 35): denoising steps.
            guidance_scale (`float`, defaults to 2.0): classifier-free guidance over the source; 1 runs the conditional
                branch alone, 0 the unconditional one (the source unseen).
            num_images_per_prompt (`int`, defaults to 1): images per source.
            eta (`float`): DDIM eta.
            generator (`torch.Generator` or list, *optional*): for deterministic generation.
            latents (`torch.Tensor`, *optional*): initial noise `(batch * num_images_per_prompt, 4, h, w)`.
            target_pose_is_photo (`bool`): ``target_pose`` is a photo; its pose is extracted by ``pose_detector``.
            pose_detector (*optional*): a [`~truepose.conditioning.pose.PoseDetector`] for photos.
            retarget_pose (`bool`, *optional*): scale/move the target skeleton to the source person (default: on for
                poses taken from photos).
            output_type (`str`, defaults to "pil"): "pil", "np", "pt" or "latent".
            return_dict (`bool`, defaults to True): return a [`TruePosePipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): called as
                ``callback(pipe, step, timestep, kwargs)`` after every step with the tensors named in
                ``callback_on_step_end_tensor_inputs`` (a callback object's own ``tensor_inputs``); it may return
                new ``latents``, and may set ``pipe._interrupt = True`` to stop early.
            cross_attention_kwargs (`dict`, *optional*): a kwargs dictionary that, if specified, is passed along to
                TargetNet's attention processors (diffusers' `AttentionProcessor`s); e.g. ``{"recorders": {processor
                name: recorder}}`` records the HPFA/CAA layers' attention inputs (see `truepose.analysis`).

        Examples:

        Returns:
            [`TruePosePipelineOutput`] or `tuple`: the generated images.
        """
        # 1. Check inputs
        sources, poses, source_parsing, height, width, callback_on_step_end_tensor_inputs = self.canonical_inputs(
            source_image, target_pose, source_parsing, height, width, callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        self.check_inputs(
            sources,
            poses,
            source_parsing,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            num_images_per_prompt,
            callback_on_step_end_tensor_inputs,
            eta=eta,
            generator=generator,
            latents=latents,
            output_type=output_type,
            target_pose_is_photo=target_pose_is_photo,
            pose_detector=pose_detector,
            retarget_pose=retarget_pose,
            callback_on_step_end=callback_on_step_end,
        )
        if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
            raise TypeError(f"`cross_attention_kwargs` must be a dict, got {type(cross_attention_kwargs).__name__}.")
        self.target_unet.check_recorders((cross_attention_kwargs or {}).get("recorders"))
        self._guidance_scale = guidance_scale
        self._interrupt = False

        # 2. Define call parameters
        parsing_maps, label_map = self.parse_sources(sources, source_parsing, parsing_label_map)
        if len(sources) == 1 and len(poses) > 1:
            sources, parsing_maps = sources * len(poses), parsing_maps * len(poses)
        poses = poses * len(sources) if len(poses) == 1 else poses
        batch_size = len(sources)
        device = self._execution_device
        # Poses are drawn before any model runs, so that a bad pose is refused before any work.
        pose_pixels = self.prepare_pose(
            poses, height, width, device, self.pose_encoder.dtype, sources, target_pose_is_photo, pose_detector,
            retarget_pose,
        )  # fmt: skip

        # 3. Encode the source: CLIP, parsing masks and regions, SourceNet tokens (once per call)
        source_reference, image_embeds = self.encode_source(sources, parsing_maps, label_map, height, width, device)
        rows = torch.arange(batch_size, device=device).repeat_interleave(num_images_per_prompt)
        source_reference, image_embeds = source_reference.index_select(rows), image_embeds[rows]
        if self.do_classifier_free_guidance:
            source_reference = source_reference.with_unconditional()
            image_embeds = torch.cat([torch.zeros_like(image_embeds), image_embeds])
        image_embeds = image_embeds.to(self.target_unet.dtype)
        layer_references = self.target_unet.prepare_reference(
            source_reference, (height // self.vae_scale_factor, width // self.vae_scale_factor)
        )
        layer_references = self.project_source(layer_references)  # source keys/values once per call

        # 4. Encode the target pose (once per call)
        pose_features = self.pose_encoder(pose_pixels)[rows]
        if self.do_classifier_free_guidance:
            pose_features = torch.cat([pose_features] * 2)
        pose_features = pose_features.to(self.target_unet.dtype)

        # 5. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 6. Prepare latent variables
        latents = self.prepare_latents(
            batch_size * num_images_per_prompt, height, width, image_embeds.dtype, device, generator, latents
        )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        # 7. Denoising loop
        latents = self.denoise(
            latents,
            timesteps,
            image_embeds,
            pose_features,
            layer_references,
            extra_step_kwargs,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            cross_attention_kwargs,
        )

        # 8. Decode
        if output_type == "latent":
            images = latents
        else:
            images = self.image_processor.postprocess(self.decode_latents(latents), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return TruePosePipelineOutput(images=images)


def vae_spatial_compression(vae: AutoencoderKL | AutoencoderTiny | AutoencoderDC) -> int:
    """How many pixels one latent spans per side (8 for SD's VAE): `AutoencoderDC` states it, the others halve the
    resolution between consecutive blocks."""
    if isinstance(vae, AutoencoderDC):
        return vae.spatial_compression_ratio
    return 2 ** (len(vae.config.block_out_channels) - 1)


_VAE_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_VAE_LOCKS_GUARD = threading.Lock()


def vae_lock(vae: torch.nn.Module) -> threading.Lock:
    """The lock of ``vae`` (one per VAE object, shared by every pipeline holding it): encoding and decoding hold it,
    because decoding with a float16 VAE marked ``force_upcast`` casts the shared VAE to float32 for its duration."""
    with _VAE_LOCKS_GUARD:
        return _VAE_LOCKS.setdefault(vae, threading.Lock())


def check_latents_tensor(latents: Any, shape: tuple[int, ...] | None = None) -> None:
    """Refuse initial ``latents`` that are not a real floating-point tensor with values (not on the meta device),
    that do not have ``shape`` (when given), or that hold NaN or inf. A tensor on another device is moved, as in
    diffusers (noise drawn on the CPU for reproducibility is common)."""
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"`latents` must be a torch.Tensor, got {type(latents).__name__}.")
    if not latents.is_floating_point():
        raise TypeError(
            f"`latents` must be a real floating-point tensor (e.g. torch.float32, noise from torch.randn), got "
            f"{latents.dtype}."
        )
    if latents.is_meta:
        raise ValueError("`latents` is on the meta device and holds no values; pass noise on the CPU or the GPU.")
    if shape is not None and tuple(latents.shape) != shape:
        raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
    if not torch.isfinite(latents).all():
        raise ValueError("`latents` holds non-finite values (NaN or inf).")


def check_finite_latents(
    latents: Any,
    step: int,
    num_steps: int,
    guidance_scale: float | None = None,
    eta: float | None = None,
    callback: Callable | None = None,
) -> None:
    """Raise a clear error when the denoising loop's latents hold NaN or inf at ``step``: after the scheduler step
    (``guidance_scale`` and ``eta`` are named as likely causes) or as returned by ``callback``.

    One ``torch.isfinite(latents).all()`` per step: on a GPU that is one host synchronisation per step, small next to
    a UNet forward.
    """
    if callback is not None and not isinstance(latents, torch.Tensor):
        raise TypeError(
            f"`callback_on_step_end` returned `latents` of type {type(latents).__name__} at step index {step} (of "
            f"{num_steps} steps); return a torch.Tensor (or leave `latents` out of the returned dict)."
        )
    if torch.isfinite(latents).all():
        return
    if callback is not None:
        raise ValueError(
            f"`callback_on_step_end` returned `latents` holding non-finite values (NaN or inf) at step index {step} "
            f"(of {num_steps} steps)."
        )
    causes = [f"`guidance_scale` {guidance_scale:g}"] if guidance_scale not in (None, 1) else []
    causes += [f"`eta` {eta:g}"] if eta else []
    overflow = f"the model overflowed in {latents.dtype}"
    if latents.dtype == torch.float16:
        overflow += " (float16 overflows above 65504: load the pipeline with dtype=torch.bfloat16 or torch.float32)"
    raise ValueError(
        f"The latents became non-finite (NaN or inf) at step index {step} (of {num_steps} steps), after the scheduler "
        f"step: {' or '.join(causes) + ' too large, or ' if causes else ''}{overflow}."
    )


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
    bars_were_enabled = transformers_logging.is_progress_bar_enabled()
    config_logger.addFilter(keep)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        config_logger.removeFilter(keep)
        if bars_were_enabled:
            transformers_logging.enable_progress_bar()


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
