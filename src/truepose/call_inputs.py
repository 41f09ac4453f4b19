"""A pipeline call's arguments: their canonical forms ([`CanonicalInputs`]) and the checks made before any work.

[`CallInputsMixin`] gives [`TruePosePipeline`] (and the animation pipeline) ``canonical_inputs`` and ``check_inputs``:
every argument is checked, with its name in the message, before a model runs.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ._warnings import warn_caller
from .conditioning import as_parsing_batch, as_pose_batch, same_aspect_ratio, to_pil_images
from .latents import check_latents_tensor

# check_inputs warns (before any work) above these: the memory of a call grows with the batch and the pixel count
LARGE_BATCH_WARNING = 64
LARGE_SIZE_WARNING = 4096


@dataclass
class CanonicalInputs:
    """A call's inputs in their canonical forms (see [`TruePosePipeline.canonical_inputs`]).

    Args:
        sources (`list[PIL.Image.Image]`): the RGB source images.
        poses (`list`): one target pose per entry (keypoints `(18, 3)`, skeleton image or photo), as given.
        source_parsing (`list`, *optional*): one parsing map per source, as given; None: the pipeline's parser parses.
        height, width: the output size (the source's where the call gave none), as given: `check_inputs` checks it.
        callback_on_step_end_tensor_inputs (`list[str]`): the tensors the step callback receives.
    """

    sources: list[PIL.Image.Image]
    poses: list
    source_parsing: list | None
    height: Any
    width: Any
    callback_on_step_end_tensor_inputs: list[str]


class CallInputsMixin:
    """``canonical_inputs`` and ``check_inputs`` of a TruePose pipeline (which has ``vae_scale_factor``, ``parser``,
    ``target_unet`` and ``_callback_tensor_inputs``)."""

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
    ) -> CanonicalInputs:
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
        return CanonicalInputs(sources, poses, source_parsing, height, width, callback_on_step_end_tensor_inputs)

    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.check_inputs
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
        self._warn_about_inputs(sources, height, width, num_images_per_prompt, num_images)

    def _warn_about_inputs(
        self, sources: list[PIL.Image.Image], height: int, width: int, num_images_per_prompt: int, num_images: int
    ) -> None:
        """Warnings, before any work, about legal inputs that may not fit in memory or that stretch the source."""
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
        if not same_aspect_ratio((source_height, source_width), (height, width)):
            warn_caller(
                f"`source_image` of size (height, width) = ({source_height}, {source_width}) has another aspect ratio "
                f"than the output ({height}, {width}); it is stretched. Crop or pad it to the output's aspect ratio."
            )
