"""What a training run writes besides its checkpoints: validation grids and the model card of the saved pipeline."""

import argparse
import os

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from ..conditioning.pose import draw_skeleton
from ..pipeline import TruePosePipeline
from .checkpoints import RunSegment


def save_validation(
    accelerator: Accelerator,
    pipe: TruePosePipeline,
    dataset: Dataset,
    indices: list[int],
    seed: int,
    output_dir: str,
    step: int,
) -> None:
    """The validation grid of ``step`` ([`render_validation`]) into ``output_dir/validation/step-{step}.png``, and to
    tensorboard when it tracks the run."""
    grid = render_validation(pipe, dataset, indices, seed)
    os.makedirs(os.path.join(output_dir, "validation"), exist_ok=True)
    grid.save(os.path.join(output_dir, "validation", f"step-{step}.png"))
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("validation", np.asarray(grid), step, dataformats="HWC")


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


def write_model_card(
    output_dir: str, args: argparse.Namespace, pipe: TruePosePipeline, step: int, segments: list[RunSegment]
) -> None:
    """``README.md`` with Hub metadata (base model, pipeline tag, tags) and the run's data, steps, launches and
    settings; no path of this machine (a local starting point or output folder is named by its folder name)."""
    from huggingface_hub import ModelCard, ModelCardData

    config = pipe.target_unet.config
    base_model = base_model_id(args.pretrained_model)
    data = f"`{args.dataset}`" + (
        f" ({args.num_pairs} pairs, seed {args.data_seed}, {args.synthetic_backgrounds} backgrounds)"
        if args.dataset == "synthetic"
        else f" from a folder `{os.path.basename(os.path.normpath(args.data_root))}`"
    )
    metadata = ModelCardData(
        license="apache-2.0",
        library_name="diffusers",
        base_model=base_model,
        pipeline_tag="image-to-image",
        tags=["truepose", "pose-transfer", "person-image-synthesis", "diffusers"],
    )
    if os.path.isdir(args.pretrained_model):
        started_from = f"a local pipeline `{os.path.basename(os.path.normpath(args.pretrained_model))}`" + (
            f" (based on `{base_model}`)" if base_model else ""
        )
    else:
        started_from = f"`{args.pretrained_model}`"
    recorded = sum(segment.last_step - segment.first_step for segment in segments)
    launches = [segment.describe() for segment in segments]
    if recorded < step:
        launches.insert(0, f"steps 0-{step - recorded}: not recorded (a checkpoint of an earlier truepose version)")
    settings = [
        f"lr {args.learning_rate}",
        f"condition dropout {args.condition_dropout}",
        f"objective {pipe.scheduler.config.prediction_type}",
    ]
    settings += ["SourceNet frozen"] * args.freeze_source_unet + [f"LoRA rank {args.lora_rank}, merged"] * bool(
        args.lora_rank
    )
    model_id = args.hub_model_id or f"path/to/{os.path.basename(os.path.normpath(output_dir))}"
    content = f"""---
{metadata.to_yaml()}
---

# TruePose ({args.dataset})

Trained with `truepose train`.

- Started from: {started_from}
- Data: {data}, {args.resolution[0]}x{args.resolution[1]}
- Steps: {step} ({", ".join(settings)}); launches:
{chr(10).join(f"  - {launch}" for launch in launches)}
- HPFA: sigma {config.hpfa_sigma}, delta {config.hpfa_delta}; CAA: top-k {config.caa_top_k} on {list(config.caa_blocks)}

```python
from truepose import TruePosePipeline

pipe = TruePosePipeline.from_pretrained("{model_id}")
```
"""
    ModelCard(content).save(os.path.join(output_dir, "README.md"))


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
