"""DeepFashion In-shop pairs in the PIDM/CFLD layout.

::

    root/
    ├── train_highres/                       fashionMENDenimid0000008001_1front.jpg, ...
    ├── test_highres/
    ├── fasion-resize-pairs-train.csv        from,to
    ├── fasion-resize-pairs-test.csv
    ├── fasion-resize-annotation-train.csv   name:keypoints_y:keypoints_x (JSON lists of 18 ints, 256x176 frame)
    └── fasion-resize-annotation-test.csv

("fasion" is spelled as in every repository that ships these files.) Parsing maps are optional:
``parsing_dir/<stem>.png`` with label ids as pixel values.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from diffusers.utils import logging

from ..conditioning import read_deepfashion_annotations, rescale_keypoints
from .common import PairFileDataset, read_pairs_csv, save_parsing

logger = logging.get_logger(__name__)

__all__ = ["DEEPFASHION_KEYPOINT_FRAME", "DeepFashionDataset", "make_deepfashion_fixture", "write_annotation_csv"]

#: ``(height, width)`` frame of the keypoints of ``fasion-resize-annotation-*.csv``.
DEEPFASHION_KEYPOINT_FRAME: tuple[int, int] = (256, 176)
SPLITS = ("train", "test")


class DeepFashionDataset(PairFileDataset):
    """DeepFashion In-shop pose-transfer pairs (PIDM/CFLD layout; 101,966 train / 8,570 test pairs).

    Images are resized bicubic to ``image_size`` (256x176 or 512x352 are the usual sizes); the annotation keypoints,
    given in the 256x176 frame, are scaled to it.

    Args:
        root: Folder with ``{train,test}_highres/`` and the ``fasion-resize-*.csv`` files.
        split: ``"train"`` or ``"test"``.
        image_size: Output ``(height, width)``.
        parsing_dir: Optional folder of ``<image stem>.png`` label-id maps; every image must have one.
        label_map: Label table of the parsing maps (e.g. ``"atr"``, ``"lip"``).
        image_dir: Image folder, default ``root/{split}_highres``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        image_size: Sequence[int] | int = (256, 176),
        parsing_dir: str | os.PathLike | None = None,
        label_map: str = "atr",
        image_dir: str | os.PathLike | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"DeepFashion `root` {root} is not a directory.")
        image_dir = Path(image_dir) if image_dir is not None else root / f"{split}_highres"
        pairs_csv = root / f"fasion-resize-pairs-{split}.csv"
        annotation_csv = root / f"fasion-resize-annotation-{split}.csv"
        missing = [str(path) for path in (pairs_csv, annotation_csv) if not path.is_file()]
        if not image_dir.is_dir():
            missing.append(f"{image_dir}/")
        if missing:
            raise FileNotFoundError(
                f"DeepFashion {split} split is incomplete, missing: {', '.join(missing)}. Expected the PIDM/CFLD "
                f"layout: {root}/{{train,test}}_highres/, {root}/fasion-resize-pairs-{{train,test}}.csv (columns "
                f"from,to) and {root}/fasion-resize-annotation-{{train,test}}.csv (name:keypoints_y:keypoints_x); "
                "see docs/data.md."
            )
        problems: list[str] = []
        keypoints = read_deepfashion_annotations(annotation_csv, problems)
        super().__init__(
            pairs=read_pairs_csv(pairs_csv),
            image_dir=image_dir,
            keypoints=keypoints,
            image_size=image_size,
            keypoints_frame=DEEPFASHION_KEYPOINT_FRAME,
            parsing_dir=parsing_dir,
            label_map=label_map,
            annotation_problems=problems,
        )
        self.root = root
        self.split = split
        self.pairs_csv = pairs_csv
        self.annotation_csv = annotation_csv

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, image_size={self.image_size}, "
            f"pairs={len(self)}, parsing_dir={None if self.parsing_dir is None else str(self.parsing_dir)!r})"
        )


def write_annotation_csv(path: str | os.PathLike, keypoints: dict[str, np.ndarray]) -> None:
    """Write keypoints (pixels of the 256x176 frame) as a DeepFashion annotation CSV (rounded ints, -1 missing)."""
    lines = ["name:keypoints_y:keypoints_x"]
    for name, array in keypoints.items():
        present = array[:, 2] > 0
        ys = [int(round(float(y))) if ok else -1 for y, ok in zip(array[:, 1], present)]
        xs = [int(round(float(x))) if ok else -1 for x, ok in zip(array[:, 0], present)]
        lines.append(f"{name}: {json.dumps(ys)}: {json.dumps(xs)}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


_CATEGORIES = ("MENDenim", "WOMENDresses", "WOMENBlouses_Shirts", "MENTees_Tanks", "WOMENSkirts", "MENJackets_Vests")
_VIEWS = ("1front", "2side", "3back", "4full", "7additional")


def _view_name(keypoints: np.ndarray, taken: Sequence[str]) -> str:
    """DeepFashion-style view suffix of a pose (front / side / back), unique among the person's ``taken`` names."""
    if keypoints[0, 2] <= 0:
        view = "3back"
    elif keypoints[14, 2] <= 0 or keypoints[15, 2] <= 0:
        view = "2side"
    else:
        view = "1front"
    for candidate in (view, *_VIEWS):
        if not any(name.endswith(f"_{candidate}.jpg") for name in taken):
            return candidate
    raise AssertionError("unreachable: more views than names")


def make_deepfashion_fixture(
    root: str | os.PathLike,
    num_images: int = 4,
    image_size: Sequence[int] | int = (256, 176),
    seed: int = 0,
    with_parsing: bool = True,
) -> Path:
    """Write a tiny fake DeepFashion data set in the real PIDM/CFLD format, drawn by the synthetic renderer.

    For each split, ``num_images`` images of ``ceil(num_images / 2)`` synthetic people (two views each, flattened
    names like ``fashionWOMENDressesid0000000001_1front.jpg``, the view suffix matching the pose), pairs between the views of each person in both
    directions, the annotation CSV in the 256x176 frame, and (``with_parsing``) ATR maps in ``root/parsing/``.

    Args:
        root: Folder to write (created).
        num_images: Images per split (>= 2).
        image_size: ``(height, width)`` of the JPEG files (e.g. ``(512, 352)`` for "high-res" files).
        seed: Seed of the synthetic people.
        with_parsing: Also write ``root/parsing/<stem>.png``.

    Returns:
        ``Path(root)``, usable as ``DeepFashionDataset(root, parsing_dir=root / "parsing")``.
    """
    from .common import check_image_size
    from .synthetic import random_appearance, random_pose, render_person

    if num_images < 2:
        raise ValueError(f"`num_images` must be at least 2 (a pair needs two views), got {num_images}.")
    height, width = check_image_size(image_size)
    root = Path(root)
    for split_index, split in enumerate(SPLITS):
        image_dir = root / f"{split}_highres"
        image_dir.mkdir(parents=True, exist_ok=True)
        if with_parsing:
            (root / "parsing").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, split_index])
        annotations: dict[str, np.ndarray] = {}
        pairs: list[tuple[str, str]] = []
        person = 0
        written = 0
        while written < num_images:
            person += 1
            appearance = random_appearance(rng)
            category = _CATEGORIES[int(rng.integers(len(_CATEGORIES)))]
            names = []
            for _ in range(min(2, num_images - written)):
                keypoints = random_pose(rng, (height, width), appearance)
                view = _view_name(keypoints, taken=names)
                name = f"fashion{category}id{split_index:04d}{person:06d}_{view}.jpg"
                image, parsing = render_person(appearance, keypoints, (height, width))
                image.save(image_dir / name, quality=95)
                if with_parsing:
                    save_parsing(parsing, root / "parsing" / f"{Path(name).stem}.png")
                annotations[name] = rescale_keypoints(keypoints, (height, width), DEEPFASHION_KEYPOINT_FRAME)
                names.append(name)
                written += 1
            if len(names) == 2:
                pairs += [(names[0], names[1]), (names[1], names[0])]
        with open(root / f"fasion-resize-pairs-{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["from", "to"])
            writer.writerows(pairs)
        write_annotation_csv(root / f"fasion-resize-annotation-{split}.csv", annotations)
    return root
