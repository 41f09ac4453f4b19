"""TruePosePipeline: pose-guided person image synthesis with HPFA and CAA (arXiv 2502.03426).

This module holds the call path, in the order a call runs it: the sources parsed and encoded (`truepose.source_encoding`:
CLIP, parsing masks and regions, SourceNet tokens), the poses drawn and encoded, the latents prepared, denoised and
decoded. Elsewhere: the arguments' canonical forms and checks (`truepose.call_inputs`), each call's own state
(`truepose.call_state`),
the VAE lock and the checks of latents (`truepose.latents`), checkpoint folders (`truepose.checkpoint`) and the SD-1.5
conversion (`truepose.conversion`).
"""

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderTiny, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_loading_utils import _fetch_class_library_tuple
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput, logging, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from .call_inputs import CallInputsMixin
from .call_state import CallStateMixin, per_call_state
from .checkpoint import load_checkpoint, pipeline_class_name, save_checkpoint
from .conditioning import ImageInput
from .conditioning import parsing as parsing_utils
from .conditioning.pose import prepare_pose_image
from .conversion import stable_diffusion_components
from .latents import check_finite_latents, vae_lock, vae_spatial_compression
from .models import (
    LayerReference,
    PoseEncoder,
    TargetNet,
)
from .source_encoding import SourceEncodingMixin

logger = logging.get_logger(__name__)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from truepose import TruePosePipeline
        >>> from truepose.demo import SHIPPED_MODEL, example_person

        >>> # the small model shipped in the package; a Hub id or checkpoint folder loads the same way
        >>> pipe = TruePosePipeline.from_pretrained(SHIPPED_MODEL, dtype=torch.float32)
        >>> pair = example_person(0)  # a held-out synthetic person the model never saw
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


class TruePosePipeline(CallStateMixin, CallInputsMixin, SourceEncodingMixin, DiffusionPipeline):
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
        return load_checkpoint(super().from_pretrained, pretrained_model_name_or_path, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        """As diffusers, and an optional component (``parser``, ``parser_processor``) set on a pipeline built or
        loaded without it is recorded in its config, so that `save_pretrained` saves it (diffusers records it only
        when the pipeline already had one)."""
        super().__setattr__(name, value)
        if name in self._optional_components and value is not None and self.config.get(name, (None,))[0] is None:
            self.register_to_config(**{name: _fetch_class_library_tuple(value)})

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict:
        """diffusers' reader of ``model_index.json``, where a TruePose class reads a custom-pipeline ``_class_name``
        as its plain class name (`truepose.checkpoint.pipeline_class_name`): its own folders load without
        ``trust_remote_code``, whether saved before or after the pipeline file was added to them."""
        return pipeline_class_name(super()._dict_from_json_file(json_file))

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
        save_checkpoint(
            super().save_pretrained, self._upload_folder, type(self), save_directory, safe_serialization, variant,
            max_shard_size, push_to_hub, **kwargs,
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
        components = stable_diffusion_components(
            stable_diffusion, image_encoder, image_encoder_subfolder, dtype, pose_encoder_channels,
            **target_net_settings,
        )  # fmt: skip
        return cls(**components)

    @property
    # Copied from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.guidance_scale
    def guidance_scale(self):
        return self._guidance_scale

    @property
    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.do_classifier_free_guidance
    def do_classifier_free_guidance(self) -> bool:
        """Any scale but 1 mixes both branches: ``eps_u + g (eps_c - eps_u)``; 0 gives the unconditional model."""
        return self._guidance_scale != 1.0

    @property
    # Copied from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.num_timesteps
    def num_timesteps(self):
        return self._num_timesteps

    @property
    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.interrupt
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a step callback to skip the remaining denoising steps of that call.

        These properties (``guidance_scale``, ``num_timesteps``, ``interrupt``) read the running call's own values;
        outside a call (after it, or from another thread) those of the latest call started, so setting
        ``pipe._interrupt = True`` from another thread stops the latest call.
        """
        return self._interrupt

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

    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.prepare_latents
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

    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.decode_latents
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

    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.prepare_extra_step_kwargs
    def prepare_extra_step_kwargs(
        self, generator: torch.Generator | list[torch.Generator] | None, eta: float
    ) -> dict[str, Any]:
        """``eta`` and ``generator`` for schedulers whose ``step`` takes them (DDIM takes ``eta``)."""
        step_parameters = set(inspect.signature(self.scheduler.step).parameters)
        extra_step_kwargs = {"eta": eta} if "eta" in step_parameters else {}
        if "generator" in step_parameters:
            extra_step_kwargs["generator"] = generator
        return extra_step_kwargs

    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.__call__ (its step 7, the denoising loop)
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
    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.__call__
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
        inputs = self.canonical_inputs(
            source_image, target_pose, source_parsing, height, width, callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        height, width = inputs.height, inputs.width
        self.check_inputs(
            inputs.sources, inputs.poses, inputs.source_parsing, height, width, num_inference_steps, guidance_scale,
            num_images_per_prompt, inputs.callback_on_step_end_tensor_inputs, eta=eta, generator=generator,
            latents=latents, output_type=output_type, target_pose_is_photo=target_pose_is_photo,
            pose_detector=pose_detector, retarget_pose=retarget_pose, callback_on_step_end=callback_on_step_end,
        )  # fmt: skip
        if cross_attention_kwargs is not None and not isinstance(cross_attention_kwargs, dict):
            raise TypeError(f"`cross_attention_kwargs` must be a dict, got {type(cross_attention_kwargs).__name__}.")
        self.target_unet.check_recorders((cross_attention_kwargs or {}).get("recorders"))
        self._guidance_scale = guidance_scale
        self._interrupt = False

        # 2. Define call parameters
        sources, poses = inputs.sources, inputs.poses
        parsing_maps, label_map, person_masks = self._parse_source_batch(
            sources, inputs.source_parsing, parsing_label_map
        )
        copies = len(poses) if len(sources) == 1 else 1  # one source for every pose
        sources, parsing_maps, person_masks = sources * copies, parsing_maps * copies, person_masks * copies
        poses = poses * len(sources) if len(poses) == 1 else poses
        batch_size = len(sources)
        device = self._execution_device
        # Poses are drawn before any model runs, so that a bad pose is refused before any work.
        pose_pixels = self.prepare_pose(
            poses, height, width, device, self.pose_encoder.dtype, sources, target_pose_is_photo, pose_detector,
            retarget_pose,
        )  # fmt: skip

        # 3. Encode the source: CLIP, parsing masks and regions, SourceNet tokens (once per call)
        source_reference, image_embeds = self.encode_source(
            sources, parsing_maps, label_map, height, width, device, person_masks=person_masks
        )
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
            latents, timesteps, image_embeds, pose_features, layer_references, extra_step_kwargs,
            callback_on_step_end, inputs.callback_on_step_end_tensor_inputs, cross_attention_kwargs,
        )  # fmt: skip

        # 8. Decode
        if output_type == "latent":
            images = latents
        else:
            images = self.image_processor.postprocess(self.decode_latents(latents), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return TruePosePipelineOutput(images=images)
