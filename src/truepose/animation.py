"""Animate one photo along a pose sequence: [`TruePoseAnimationPipeline`], pose-sequence files and video writing.

Everything that depends only on the source is computed once for the whole sequence: parsing, CLIP embeddings,
SourceNet's tokens, the per-layer HPFA masks and each layer's projected source keys/values. Frames are then generated
in batches of ``frames_per_batch`` poses, by default from the same initial noise (a steadier appearance).
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput, replace_example_docstring
from diffusers.utils.torch_utils import randn_tensor

from .call_inputs import CanonicalInputs
from .call_state import per_call_state
from .conditioning import ImageInput, as_keypoints, read_openpose_json
from .conditioning.pose_files import fit_pose_to_frame, pose_file_frame, read_pose_file, read_pose_file_for
from .latents import check_latents_tensor
from .models import LayerReference
from .pipeline import TruePosePipeline

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from truepose import TruePoseAnimationPipeline, write_animation
        >>> from truepose.animation import interpolate_keypoints, load_pose_sequence

        >>> pipe = TruePoseAnimationPipeline.from_pretrained("org/truepose-deepfashion")
        >>> poses = interpolate_keypoints(load_pose_sequence("keyframes.npy"), 7)  # 7 frames between keyframes
        >>> frames = pipe(source, poses, source_parsing=parsing, num_inference_steps=35).frames
        >>> write_animation(frames, "out.gif", fps=8)
        ```
"""


@dataclass
class TruePoseAnimationOutput(BaseOutput):
    """Output of [`TruePoseAnimationPipeline`].

    Args:
        frames (`list[PIL.Image.Image]`, `np.ndarray` `(T, H, W, 3)` or `torch.Tensor` `(T, 3, H, W)`): one frame
            per pose, in order.
    """

    frames: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class TruePoseAnimationPipeline(TruePosePipeline):
    r"""One source person along a sequence of target poses (same components as [`TruePosePipeline`]).

    Build it from a loaded pipeline without copying weights: ``TruePoseAnimationPipeline(**pipe.components)``, or
    load a checkpoint with ``TruePoseAnimationPipeline.from_pretrained(path)``.
    """

    @torch.no_grad()
    @per_call_state
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        source_image: ImageInput,
        poses: Any,
        source_parsing: Any = None,
        parsing_label_map: Any = "atr",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 35,
        guidance_scale: float = 2.0,
        frames_per_batch: int = 8,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 - diffusers' signature
    ) -> TruePoseAnimationOutput | tuple:
        r"""Generate the source person in every pose of ``poses``.

        Args:
            source_image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`): one RGB source person.
            poses: a `(T, 18, 2|3)` keypoint array (pixels of the output frame) or a list of ``T`` poses, each a
                keypoint array or a skeleton image, as [`TruePosePipeline`] takes them.
            source_parsing, parsing_label_map, height, width, num_inference_steps, guidance_scale, eta: as in
                [`TruePosePipeline.__call__`].
            frames_per_batch (`int`, defaults to 8): frames denoised together.
            generator (`torch.Generator` or list of ``T``, *optional*): one generator draws one initial noise shared
                by every frame (frame ``i`` then equals a single-image call with the same seed and pose ``i``); a
                list draws one noise per frame.
            latents (`torch.Tensor` `(1 or T, 4, h, w)`, *optional*): initial noise, shared (1) or per frame (T).
            output_type (`str`): "pil", "np" or "pt".
            callback_on_step_end: called after every step of every batch, as in [`TruePosePipeline.__call__`].

        Examples:

        Returns:
            [`TruePoseAnimationOutput`] or `tuple`: the frames.
        """
        # 1. Check inputs
        inputs = self.canonical_inputs(
            source_image, poses, source_parsing, height, width, callback_on_step_end,
            callback_on_step_end_tensor_inputs, poses_argument="poses",
        )  # fmt: skip
        self.check_animation_inputs(
            inputs, num_inference_steps, guidance_scale, frames_per_batch, eta, generator, latents, output_type,
            callback_on_step_end,
        )  # fmt: skip
        sources, poses, height, width = inputs.sources, inputs.poses, inputs.height, inputs.width
        self._guidance_scale = guidance_scale
        self._interrupt = False
        device = self._execution_device
        latent_size = (height // self.vae_scale_factor, width // self.vae_scale_factor)

        # 2. Encode the source once for the whole sequence: parsing, CLIP, SourceNet, masks, source keys/values
        image_embeds, layer_references = self.encode_sequence_source(
            sources, inputs.source_parsing, parsing_label_map, height, width, device
        )

        # 3. Skeletons of all poses (checked before any denoising) and the initial noise
        pose_pixels = self.prepare_pose(poses, height, width, device, self.pose_encoder.dtype, poses_argument="poses")
        noise = self.prepare_sequence_noise(len(poses), latent_size, generator, latents, device, image_embeds.dtype)

        # 4. Denoise the frames batch by batch
        frames = []
        for start in range(0, len(poses), frames_per_batch):
            stop = min(start + frames_per_batch, len(poses))
            batch_latents = self.denoise_frames(
                noise[start:stop],
                pose_pixels[start:stop],
                image_embeds,
                layer_references,
                num_inference_steps,
                self.prepare_extra_step_kwargs(generator if isinstance(generator, torch.Generator) else None, eta),
                callback_on_step_end,
                inputs.callback_on_step_end_tensor_inputs,
            )
            frames.append(self.decode_latents(batch_latents))

        # 5. Post-process
        frames = self.image_processor.postprocess(torch.cat(frames), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return TruePoseAnimationOutput(frames=frames)

    def check_animation_inputs(
        self,
        inputs: CanonicalInputs,
        num_inference_steps: int,
        guidance_scale: float,
        frames_per_batch: int,
        eta: float,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        output_type: str,
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | None,
    ) -> None:
        """Step 1 of [`~TruePoseAnimationPipeline.__call__`]: one source, at least one pose, the arguments
        [`~TruePosePipeline.check_inputs`] checks, and the animation's own (``frames_per_batch``, a ``latents``
        tensor whose shape [`~TruePoseAnimationPipeline.prepare_sequence_noise`] checks, no latent output)."""
        if len(inputs.sources) != 1:
            raise ValueError(f"`source_image` must be one image to animate, got {len(inputs.sources)}.")
        if len(inputs.poses) == 0:
            raise ValueError("`poses` holds no pose; pass at least one.")
        self.check_inputs(
            inputs.sources,
            inputs.poses,
            inputs.source_parsing,
            inputs.height,
            inputs.width,
            num_inference_steps,
            guidance_scale,
            1,
            inputs.callback_on_step_end_tensor_inputs,
            eta=eta,
            generator=generator,
            output_type=output_type,
            callback_on_step_end=callback_on_step_end,
        )
        if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise ValueError(f"`frames_per_batch` must be a positive int, got {frames_per_batch!r}.")
        if latents is not None:
            check_latents_tensor(latents)  # its shape is checked by prepare_sequence_noise
        if output_type == "latent":
            raise ValueError("`output_type` must be 'pil', 'np' or 'pt' for an animation, got 'latent'.")

    def encode_sequence_source(
        self,
        sources: list[PIL.Image.Image],
        source_parsing: Any,
        parsing_label_map: Any,
        height: int,
        width: int,
        device: torch.device,
    ) -> tuple[torch.Tensor, dict[str, LayerReference]]:
        """Step 2: everything that depends only on the one source, for the whole sequence.

        Returns the CLIP image embeddings `(1 or 2, 1, D)` (a zero unconditional row first under classifier-free
        guidance) in TargetNet's dtype, and each TargetNet layer's reference (masks, projected source keys/values)
        with the same rows, which [`~TruePoseAnimationPipeline.denoise_frames`] repeats for each frame.
        """
        parsing_maps, label_map, person_masks = self._parse_source_batch(sources, source_parsing, parsing_label_map)
        source_reference, image_embeds = self.encode_source(
            sources, parsing_maps, label_map, height, width, device, person_masks=person_masks
        )
        if self.do_classifier_free_guidance:
            source_reference = source_reference.with_unconditional()
            image_embeds = torch.cat([torch.zeros_like(image_embeds), image_embeds])
        image_embeds = image_embeds.to(self.target_unet.dtype)
        latent_size = (height // self.vae_scale_factor, width // self.vae_scale_factor)
        layer_references = self.project_source(self.target_unet.prepare_reference(source_reference, latent_size))
        return image_embeds, layer_references

    def prepare_sequence_noise(
        self,
        num_frames: int,
        latent_size: tuple[int, int],
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Step 3: the initial noise of every frame `(num_frames, 4, h, w)` (unscaled): one draw shared by all frames
        (no generator or one), one per frame (a list of generators), or the caller's ``latents`` `(1 or T, 4, h, w)`.
        """
        shape = (1 if generator is None or isinstance(generator, torch.Generator) else num_frames, *latent_size)
        if latents is None:
            latents = randn_tensor((shape[0], self.target_unet.config.in_channels, *latent_size), generator, device)
        elif latents.ndim != 4 or latents.shape[0] not in (1, num_frames) or tuple(latents.shape[2:]) != latent_size:
            raise ValueError(
                f"`latents` must have shape (1 or {num_frames}, 4, {latent_size[0]}, {latent_size[1]}), got "
                f"{tuple(latents.shape)}."
            )
        return latents.to(device=device, dtype=dtype).expand(num_frames, -1, -1, -1)

    def denoise_frames(
        self,
        noise: torch.Tensor,
        pose_pixels: torch.Tensor,
        image_embeds: torch.Tensor,
        layer_references: dict[str, LayerReference],
        num_inference_steps: int,
        extra_step_kwargs: dict[str, Any],
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | None,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> torch.Tensor:
        """Step 4, one batch of frames: the initial ``noise`` `(B, 4, h, w)` of frames with skeletons ``pose_pixels``
        `(B, 3, H, W)` -> their denoised latents, the source's ``image_embeds`` and ``layer_references`` (from
        [`~TruePoseAnimationPipeline.encode_sequence_source`]) repeated for each frame."""
        device = noise.device
        rows = torch.zeros(len(noise), dtype=torch.long, device=device)
        if self.do_classifier_free_guidance:
            rows = torch.cat([rows, rows + 1])  # [unconditional ; conditional] rows of the one source
        pose_features = self.pose_encoder(pose_pixels)
        if self.do_classifier_free_guidance:
            pose_features = torch.cat([pose_features] * 2)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        return self.denoise(
            noise * self.scheduler.init_noise_sigma,
            self.scheduler.timesteps,
            image_embeds[rows],
            pose_features.to(self.target_unet.dtype),
            {name: reference.select_rows(rows) for name, reference in layer_references.items()},
            extra_step_kwargs,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )


def _imageio():
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ImportError('Reading and writing videos needs imageio and PyAV: pip install "truepose[app]"') from None
    return iio


def interpolate_keypoints(keyframes: Any, frames_between: int) -> np.ndarray:
    """Linear interpolation of keypoints between consecutive keyframes, for a smooth motion from a few poses.

    A joint missing in either keyframe is missing in the frames between them.

    Args:
        keyframes: `(K, 18, 2|3)` keypoints in pixels (missing joints -1 or confidence 0).
        frames_between (`int`): frames inserted between each pair of keyframes.
    Returns:
        `np.ndarray` float32 `((K - 1) * (frames_between + 1) + 1, 18, 3)`; the keyframes are among the frames.
    """
    if not isinstance(frames_between, int) or frames_between < 0:
        raise ValueError(f"`frames_between` must be an int >= 0, got {frames_between!r}.")
    keyframes = np.asarray(keyframes, dtype=np.float32)
    if keyframes.ndim != 3 or len(keyframes) < 1:
        raise ValueError(f"`keyframes` must have shape (K, 18, 2|3), got {keyframes.shape}.")
    keyframes = np.stack([as_keypoints(k, f"keyframes[{i}]") for i, k in enumerate(keyframes)])
    frames = [keyframes[0]]
    for start, stop in zip(keyframes[:-1], keyframes[1:]):
        present = (start[:, 2] > 0) & (stop[:, 2] > 0)
        for step in range(1, frames_between + 2):
            t = step / (frames_between + 1)
            frame = np.tile(np.float32([-1, -1, 0]), (18, 1))
            frame[present] = (1 - t) * start[present] + t * stop[present]
            frames.append(stop if step == frames_between + 1 else frame)
    return np.stack(frames).astype(np.float32)


def load_pose_sequence(
    path: str | os.PathLike,
    pose_detector: Callable[[PIL.Image.Image], np.ndarray] | None = None,
    frame_size: tuple[int, int] | None = None,
    pose_frame: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a pose sequence: a `(T, 18, 2|3)` ``.npy`` array, a folder of OpenPose JSON frames (first person of each,
    in file-name order) or a video whose poses ``pose_detector`` extracts.

    Args:
        path: the file or folder.
        pose_detector: a [`~truepose.conditioning.pose.PoseDetector`] (any callable image -> `(18, 3)`), for videos.
        frame_size (`(height, width)`, *optional*): the output frame. Video frames are resized to it before
            detection; keypoint files are fitted to it by the frame rule of `truepose.conditioning.pose_files`
            (an OpenPose JSON's canvas size, else ``pose_frame``, else taken as output pixels).
        pose_frame (`(height, width)`, *optional*): the frame the keypoints of a ``.npy`` were taken in.
    Returns:
        `np.ndarray` float32 `(T, 18, 3)`.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(file for file in path.iterdir() if file.suffix.lower() == ".json" and file.is_file())
        if not files:
            raise ValueError(f"`poses` folder {str(path)!r} has no OpenPose .json frames.")
        frames = []
        for file in files:
            people = read_openpose_json(file)
            if not people:
                raise ValueError(f"OpenPose frame {str(file)!r} has no person.")
            frames.append(as_keypoints(people[0], str(file)))
            if frame_size is not None:
                frame = pose_file_frame(file) or pose_frame
                frames[-1] = fit_pose_to_frame(frames[-1], frame_size, frame, f"OpenPose frame {str(file)!r}")
        return np.stack(frames)
    if not path.is_file():
        raise FileNotFoundError(f"No pose sequence at {str(path)!r}.")
    if path.suffix.lower() == ".npy":
        return read_pose_file(path) if frame_size is None else read_pose_file_for(path, frame_size, pose_frame)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if pose_detector is None:
            raise ValueError(f"Extracting poses from the video {str(path)!r} needs a `pose_detector`.")
        iio = _imageio()
        frames = []
        for frame in iio.imiter(path, plugin="pyav"):
            image = PIL.Image.fromarray(frame).convert("RGB")
            if frame_size is not None:
                image = image.resize((frame_size[1], frame_size[0]), PIL.Image.BICUBIC)
            frames.append(as_keypoints(pose_detector(image), "detected keypoints"))
        if not frames:
            raise ValueError(f"The video {str(path)!r} has no frames.")
        return np.stack(frames)
    raise ValueError(
        f"`poses` must be a .npy array, a folder of OpenPose .json frames or a video ({', '.join(VIDEO_SUFFIXES)}), "
        f"got {str(path)!r}."
    )


def write_animation(
    frames: Sequence[PIL.Image.Image] | np.ndarray, path: str | os.PathLike, fps: float = 8, scale: int = 1
) -> str:
    """Write frames as a GIF (looping), an MP4 (H.264) or, for a path without suffix, a folder of PNG frames.

    Args:
        frames: PIL images or a `(T, H, W, 3)` uint8 array.
        path: ``*.gif``, ``*.mp4`` or a folder.
        fps (`float`): frames per second.
        scale (`int`): nearest-neighbour upscaling, for viewing small frames.
    Returns:
        The path written.
    """
    iio = _imageio()
    if len(frames) == 0:
        raise ValueError("`frames` is empty; pass at least one frame.")
    frames = np.stack(
        [np.asarray(frame.convert("RGB") if isinstance(frame, PIL.Image.Image) else frame) for frame in frames]
    )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"`frames` must be RGB uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}.")
    if not fps > 0:
        raise ValueError(f"`fps` must be positive, got {fps!r}.")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"`scale` must be a positive int, got {scale!r}.")
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    elif suffix == ".mp4":
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            raise ValueError(
                f"MP4 (H.264, yuv420p) needs an even frame size, got {frames.shape[2]}x{frames.shape[1]}."
            )
        iio.imwrite(path, frames, plugin="pyav", codec="libx264", fps=fps, out_pixel_format="yuv420p")
    elif suffix == "":
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            PIL.Image.fromarray(frame).save(path / f"frame_{i:04d}.png")
    else:
        raise ValueError(f"Animation output must end in .gif or .mp4, or be a folder (no suffix), got {str(path)!r}.")
    return os.fspath(path)
