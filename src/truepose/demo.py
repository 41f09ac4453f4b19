"""Offline demo: the small TruePose shipped in the package, on a held-out synthetic person."""

import os
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from .conditioning.pose import draw_skeleton
from .data import SyntheticPoseDataset
from .pipeline import TruePosePipeline

SHIPPED_MODEL = Path(__file__).parent / "assets" / "truepose-synthetic"
DEMO_RESOLUTION = (96, 64)  # (height, width) the shipped model was trained at
HELD_OUT_SEED = 1000  # training used data seed 2 (and 1 for the VAE)
DEMO_BACKGROUNDS = "studio"  # the backgrounds the shipped model was last trained on (docs/data.md)
# The held-out pair `truepose demo` shows: the first of the 8 pairs of docs/install.md's figure, which
# examples/evaluate_demo_model.py picks with `sorted(numpy.random.default_rng(0).choice(200, 8, replace=False))`.
DEMO_PAIR = 3
DEMO_PANEL_LABELS = ["source", "target pose", "result", "ground truth"]
LABEL_HEIGHT = 14  # pixels of the white strip above the panels of `truepose demo`'s image, holding their labels
POSE_GALLERY = Path(__file__).parent / "assets" / "poses" / "gallery.npy"  # (8, 18, 3) target poses, 96x64 frame


def example_person(index: int) -> dict:
    """Held-out synthetic pair ``index`` at the shipped model's resolution and backgrounds ([`SyntheticPoseDataset`]
    item: ``source_image``, ``source_parsing`` (ATR ids), ``source_keypoints``, ``target_keypoints``, ...)."""
    dataset = SyntheticPoseDataset(
        index + 1, image_size=DEMO_RESOLUTION, seed=HELD_OUT_SEED, backgrounds=DEMO_BACKGROUNDS
    )
    return dataset[index]


def load_pose_gallery() -> np.ndarray:
    """The poses shipped with the package: `(8, 18, 3)` COCO-18 keypoints in the 96x64 (height x width) frame.

    They are the target poses of synthetic pairs 0-7 of data seed ``HELD_OUT_SEED + 1``, made with
    ``np.stack([SyntheticPoseDataset(8, (96, 64), 1001).pair_spec(i)[2] for i in range(8)])``.
    """
    return np.load(POSE_GALLERY, allow_pickle=False)


def load_shipped_model() -> TruePosePipeline:
    """The small synthetic-data TruePose shipped inside the package (stored in fp16, loaded as float32 for CPU)."""
    if not (SHIPPED_MODEL / "model_index.json").is_file():
        raise FileNotFoundError(
            f"The shipped demo model is missing from {SHIPPED_MODEL}. Reinstall truepose, or train it with the "
            "commands of docs/install.md, 'The shipped demo model', and copy runs/decoder/studio-shipped/ there."
        )
    pipe = TruePosePipeline.from_pretrained(SHIPPED_MODEL, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_demo(
    output: str | os.PathLike,
    model: str | os.PathLike | None = None,
    seed: int = DEMO_PAIR,
    num_inference_steps: int = 25,
    scale: int = 3,
) -> str:
    """Write one PNG: source | target pose (skeleton) | result | ground truth, each panel labelled, for held-out
    synthetic pair ``seed``.

    Args:
        model: a checkpoint folder or Hub id; the shipped model by default.
        scale (`int`): nearest-neighbour upscaling of the small images, for viewing.
    """
    pipe = load_shipped_model() if model is None else TruePosePipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    item = example_person(seed)
    height, width = DEMO_RESOLUTION
    generated = pipe(
        item["source_image"],
        item["target_keypoints"],
        source_parsing=item["source_parsing"],
        parsing_label_map=item["label_map"],
        num_inference_steps=num_inference_steps,
        generator=torch.Generator().manual_seed(seed),
    ).images[0]
    panels = [item["source_image"], draw_skeleton(item["target_keypoints"], height, width), generated]
    panels.append(item["target_image"])
    labelled_sheet(panels, DEMO_PANEL_LABELS, scale).save(output)
    return os.fspath(output)


def labelled_sheet(panels: list[PIL.Image.Image], labels: list[str], scale: int = 1) -> PIL.Image.Image:
    """The same-size ``panels`` side by side, upscaled ``scale`` times (nearest neighbour), each under a white strip
    of ``LABEL_HEIGHT`` pixels holding its label (PIL's default font): `(n * width * scale, height * scale +
    LABEL_HEIGHT)`."""
    width, height = panels[0].size
    sheet = PIL.Image.new("RGB", (len(panels) * width * scale, height * scale + LABEL_HEIGHT), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        sheet.paste(
            panel.resize((width * scale, height * scale), PIL.Image.NEAREST), (i * width * scale, LABEL_HEIGHT)
        )
        draw.text((i * width * scale + 3, 2), label, fill="black")
    return sheet
