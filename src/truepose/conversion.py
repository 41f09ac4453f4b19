"""An untrained TruePose from Stable Diffusion 1.5 and a CLIP image encoder: the components of
[`TruePosePipeline.from_stable_diffusion`]."""

import math
import os
import warnings

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from ._errors import describe_error
from .latents import vae_spatial_compression
from .models import PoseEncoder, TargetNet


def stable_diffusion_components(
    stable_diffusion: str | os.PathLike,
    image_encoder: str | os.PathLike | None = None,
    image_encoder_subfolder: str | None = None,
    dtype: torch.dtype | None = None,
    pose_encoder_channels: tuple[int, ...] | None = None,
    **target_net_settings,
) -> dict:
    """The pipeline's components (``vae``, ``source_unet``, ``target_unet``, ...) built from SD-1.5 and CLIP; the
    arguments are [`TruePosePipeline.from_stable_diffusion`]'s."""
    image_encoder = stable_diffusion if image_encoder is None else image_encoder
    try:
        with warnings.catch_warnings():
            # diffusers passes huggingface_hub's deprecated `local_dir_use_symlinks` when it downloads a config
            warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument is deprecated", UserWarning)
            vae = AutoencoderKL.from_pretrained(stable_diffusion, subfolder="vae", dtype=dtype)
            unet = UNet2DConditionModel.from_pretrained(stable_diffusion, subfolder="unet", dtype=dtype)
            scheduler = DDIMScheduler.from_pretrained(stable_diffusion, subfolder="scheduler")
            encoder, feature_extractor = load_clip_image_encoder(image_encoder, image_encoder_subfolder, dtype)
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
    return {
        "vae": vae,
        "source_unet": unet,
        "target_unet": target_unet,
        "pose_encoder": pose_encoder,
        "image_encoder": encoder,
        "feature_extractor": feature_extractor,
        "scheduler": scheduler,
    }


def load_clip_image_encoder(
    path: str | os.PathLike, subfolder: str | None, dtype: torch.dtype | None
) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """The CLIP vision tower and its preprocessing, for [`TruePosePipeline.from_stable_diffusion`]."""
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
