"""Tiny random-weight TruePose pipelines for tests, docs and quick experiments (CPU, seconds)."""

import copy
import os

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from .conditioning.parsing import LABEL_MAPS
from .models import PoseEncoder, TargetNet
from .pipeline import SD15_SCHEDULER_CONFIG, TruePosePipeline

TINY_EMBED_DIM = 32

# A stick person in a 64x64 frame, COCO-18 order [x, y, confidence]; the ears are missing.
TINY_KEYPOINTS = np.array(
    [
        [32, 10, 1], [32, 18, 1], [24, 19, 1], [20, 29, 1], [18, 38, 1], [40, 19, 1], [44, 29, 1], [46, 38, 1],
        [27, 38, 1], [26, 48, 1], [26, 58, 1], [37, 38, 1], [38, 48, 1], [38, 58, 1], [30, 8, 1], [34, 8, 1],
        [-1, -1, 0], [-1, -1, 0],
    ],
    dtype=np.float32,
)  # fmt: skip


def tiny_person(seed: int = 0, size: int = 64) -> tuple[PIL.Image.Image, np.ndarray]:
    """A blocky RGB 'person' and its ATR parsing map (hair, face, upper clothes, pants, arms), `size` x `size`."""
    rng = np.random.default_rng(seed)
    parsing = np.zeros((64, 64), dtype=np.int64)
    parsing[2:8, 26:38] = 2
    parsing[8:18, 27:37] = 11
    parsing[18:38, 22:42] = 4
    parsing[38:60, 24:40] = 6
    parsing[19:40, 16:22] = 15
    parsing[19:40, 42:48] = 14
    parsing = np.asarray(PIL.Image.fromarray(parsing.astype(np.uint8)).resize((size, size), PIL.Image.NEAREST))
    palette = rng.integers(0, 256, size=(18, 3))
    image = palette[parsing] + rng.integers(-20, 20, size=(size, size, 3))
    return PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), parsing.astype(np.int64)


def tiny_unet(sample_size: int = 32) -> UNet2DConditionModel:
    """A (32, 64)-channel SD-style UNet with one attention level and one cross-attention up block."""
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_EMBED_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_parser(seed: int = 0):
    """A tiny random Segformer with the ATR label set, and its processor (64x64 input)."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(seed)
    labels = LABEL_MAPS["atr"].labels
    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=len(labels),
        id2label={i: name for i, name in labels.items()},
        label2id={name: i for i, name in labels.items()},
    )
    processor = SegformerImageProcessor(size={"height": 64, "width": 64})
    return SegformerForSemanticSegmentation(config).eval(), processor


def tiny_components(seed: int = 0, with_parser: bool = False, randomize_new_layers: bool = False, **settings) -> dict:
    """Components of a tiny TruePose: 64x64 images, 2x VAE (32x32 latents), 32-d CLIP embeddings.

    Args:
        randomize_new_layers (`bool`): give the zero-initialised layers (CAA output, pose encoder output) random
            weights, so tests can tell whether they are used and saved.
        settings: [`TargetNet`] settings (``hpfa_sigma``, ``caa_top_k``, ...).
    """
    torch.manual_seed(seed)
    unet = tiny_unet()
    source_unet = copy.deepcopy(unet)
    target_unet = TargetNet.from_unet(unet, region_embed_dim=TINY_EMBED_DIM, **settings)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=TINY_EMBED_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pose_encoder = PoseEncoder(block_out_channels=(8, 16), out_channels=unet.config.block_out_channels[0])
    scheduler = DDIMScheduler(**SD15_SCHEDULER_CONFIG)
    if randomize_new_layers:
        for module in [pose_encoder.conv_out] + [
            p.caa_to_out for p in target_unet.truepose_processors.values() if hasattr(p, "caa_to_out")
        ]:
            torch.nn.init.normal_(module.weight, std=0.2)
    parser, parser_processor = tiny_parser(seed) if with_parser else (None, None)
    return {
        "vae": vae,
        "source_unet": source_unet,
        "target_unet": target_unet,
        "pose_encoder": pose_encoder,
        "image_encoder": image_encoder,
        "feature_extractor": feature_extractor,
        "scheduler": scheduler,
        "parser": parser,
        "parser_processor": parser_processor,
    }


def tiny_pipeline(seed: int = 0, **kwargs) -> TruePosePipeline:
    """A tiny random-weight [`TruePosePipeline`] that generates 64x64 images on CPU in about a second.

    Keyword arguments go to [`tiny_components`].
    """
    pipe = TruePosePipeline(**tiny_components(seed, **kwargs))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_training_args(pretrained_model: str, output_dir: str | os.PathLike, steps: int, *extra: str) -> list[str]:
    """`truepose train` arguments for a few seconds of training of a tiny pipeline saved at ``pretrained_model``:
    6 synthetic 64x64 pairs, batch 2, a checkpoint every 2 steps; ``extra`` arguments are appended."""
    return [
        "--pretrained_model", pretrained_model, "--output_dir", str(output_dir), "--dataset", "synthetic",
        "--num_pairs", "6", "--resolution", "64", "64", "--train_batch_size", "2", "--max_train_steps", str(steps),
        "--checkpointing_steps", "2", "--learning_rate", "1e-3", "--report_to", "none", *extra,
    ]  # fmt: skip


def trained_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The trained components' weights of the pipeline saved in ``folder``, as ``"component.parameter"`` -> tensor."""
    return {
        f"{name}.{key}": value
        for name in ("target_unet", "source_unet", "pose_encoder")
        for key, value in load_file(os.path.join(folder, name, "diffusion_pytorch_model.safetensors")).items()
    }
