"""Shared pieces of the TruePose datasets: the item contract, resizing helpers, file readers and collation.

Every dataset of :mod:`truepose.data` returns a :class:`PairItem` per index, built by :func:`pair_item`::

    {
        "source_image": PIL.Image (RGB, H x W),
        "target_image": PIL.Image (RGB, H x W),
        "source_keypoints": np.float32 (18, 3),  # [x, y, confidence] in pixels of (H, W), missing = (-1, -1, 0)
        "target_keypoints": np.float32 (18, 3),
        "source_parsing": np.int64 (H, W) label ids, or None,
        "target_parsing": np.int64 (H, W) label ids, or None,
        "label_map": str,  # name of the label table of the parsing maps, e.g. "atr"
        "name": str,  # unique pair id, "<source stem>___<target stem>"
    }

where ``(H, W)`` is the dataset's ``image_size``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from diffusers.utils import logging
from PIL import Image
from torch.utils.data import Dataset

from .._saving import atomic_write
from ..conditioning import LABEL_MAPS, as_parsing_map, get_label_map, rescale_keypoints
from ..conditioning.image import load_image_file, to_8bit

logger = logging.get_logger(__name__)

#: ATR human-parsing label ids (the label set of the synthetic data and the default of the datasets).
ATR_LABELS: dict[int, str] = LABEL_MAPS["atr"].labels

#: Keys of a dataset item, in contract order.
PAIR_ITEM_KEYS: tuple[str, ...] = (
    "source_image",
    "target_image",
    "source_keypoints",
    "target_keypoints",
    "source_parsing",
    "target_parsing",
    "label_map",
    "name",
)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class PairItem(TypedDict):
    """One (source, target) pair as returned by every TruePose dataset."""

    source_image: Image.Image
    target_image: Image.Image
    source_keypoints: np.ndarray
    target_keypoints: np.ndarray
    source_parsing: np.ndarray | None
    target_parsing: np.ndarray | None
    label_map: str
    name: str


View = tuple[Image.Image, np.ndarray, np.ndarray | None]
"""One side of a pair: the RGB image, its keypoints `(18, 3)` float32 and its parsing map `(H, W)` int64 or None."""


def pair_item(source: View, target: View, label_map: str, name: str) -> PairItem:
    """The dataset item of one pair, from its source and target ``(image, keypoints, parsing)`` views; every dataset
    of :mod:`truepose.data` builds its items here."""
    source_image, source_keypoints, source_parsing = source
    target_image, target_keypoints, target_parsing = target
    return {
        "source_image": source_image,
        "target_image": target_image,
        "source_keypoints": source_keypoints,
        "target_keypoints": target_keypoints,
        "source_parsing": source_parsing,
        "target_parsing": target_parsing,
        "label_map": label_map,
        "name": name,
    }


# --------------------------------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------------------------------


def check_image_size(image_size: Sequence[int] | int, argument: str = "image_size") -> tuple[int, int]:
    """Normalise ``image_size`` to a ``(height, width)`` tuple of positive ints (an int means a square)."""
    if isinstance(image_size, int | np.integer):
        image_size = (int(image_size), int(image_size))
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"`{argument}` must be (height, width) or an int, got {image_size!r}.") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"`{argument}` must be positive, got {(height, width)}.")
    return height, width


def pair_seed(name: str, seed: int = 0) -> int:
    """Stable 63-bit seed of a pair name (same on every machine and Python run, unlike ``hash``): the sha256 of
    ``name``, or of ``"<name>#<seed>"`` for another base ``seed`` (another, equally stable, stream)."""
    key = name if seed == 0 else f"{name}#{seed}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def pair_name(source: str, target: str) -> str:
    """Pair id ``"<source stem>___<target stem>"`` (directories and extensions dropped, ``/`` kept out)."""
    return f"{_stem(source)}___{_stem(target)}"


def _stem(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix("")).replace("\\", "/").replace("/", "__")


def resize_image(image: Image.Image, image_size: Sequence[int]) -> Image.Image:
    """RGB copy of ``image`` resized (bicubic) to ``image_size=(H, W)`` (16-bit and float images scaled to 8 bits
    first, by :func:`truepose.conditioning.image.to_8bit`)."""
    height, width = image_size
    image = to_8bit(image).convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BICUBIC)
    return image


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB (fully loaded, file closed); 16-bit and float images are scaled to 8 bits by
    :func:`truepose.conditioning.image.to_8bit` (:func:`truepose.conditioning.image.load_image_file`)."""
    return load_image_file(path)


def _bit_depth_problem(image: Image.Image, name: str) -> str | None:
    """Why :func:`load_image` would refuse ``image`` (a float image outside [0, 1], ...), or None."""
    try:
        to_8bit(image, name)
    except ValueError as error:
        return str(error)
    return None


def load_parsing(path: str | os.PathLike, label_map: str, image_size: Sequence[int] | None = None) -> np.ndarray:
    """Read a label-id PNG with :func:`truepose.conditioning.as_parsing_map` (stretched to ``image_size=(H, W)``)."""
    with Image.open(path) as image:
        image.load()
        height, width = image_size or (image.height, image.width)
        return as_parsing_map(image, height, width, label_map, argument_name=os.fspath(path), stretch=True)


def save_parsing(parsing: np.ndarray, path: str | os.PathLike) -> None:
    """Write an ``(H, W)`` label map as an 8-bit PNG of label ids (atomically)."""
    parsing = np.asarray(parsing)
    if parsing.ndim != 2:
        raise ValueError(f"`parsing` must be (H, W), got shape {parsing.shape}.")
    if parsing.size and (parsing.min() < 0 or parsing.max() > 255):
        raise ValueError(f"`parsing` label ids must lie in [0, 255], got [{parsing.min()}, {parsing.max()}].")
    atomic_write(path, lambda f: Image.fromarray(parsing.astype(np.uint8), mode="L").save(f, format="PNG"))


# --------------------------------------------------------------------------------------------------------------------
# Pair files (the keypoint annotation readers are in truepose.conditioning.pose_files)
# --------------------------------------------------------------------------------------------------------------------


def read_pairs_csv(csv_path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a pairs CSV with (at least) columns ``from,to``; returns ``[(source_name, target_name), ...]``."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"Pairs CSV not found: {csv_path} (expected a CSV with columns `from,to`).")
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in (reader.fieldnames or [])]
        if "from" not in fields or "to" not in fields:
            raise ValueError(f"Pairs CSV {csv_path} must have columns `from,to`; found header {fields}.")
        reader.fieldnames = fields
        pairs = []
        for line, row in enumerate(reader, start=2):
            source, target = (row.get("from") or "").strip(), (row.get("to") or "").strip()
            if not source or not target:
                raise ValueError(f"Pairs CSV {csv_path}, line {line}: empty `from` or `to` ({row}).")
            pairs.append((source, target))
    return pairs


# --------------------------------------------------------------------------------------------------------------------
# Collation
# --------------------------------------------------------------------------------------------------------------------


def collate_pairs(items: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Collate dataset items into a dict of lists (PIL images, arrays and ``None`` kept as they are).

    The trainer converts to tensors itself; this only groups fields, e.g. ``batch["source_image"]`` is a list of
    ``B`` PIL images and ``batch["name"]`` a list of ``B`` strings.
    """
    if len(items) == 0:
        raise ValueError("`items` must contain at least one dataset item.")
    keys = list(items[0].keys())
    for index, item in enumerate(items):
        if set(item.keys()) != set(keys):
            raise ValueError(f"`items[{index}]` has keys {sorted(item)}, expected {sorted(keys)}.")
    return {key: [item[key] for item in items] for key in keys}


def check_pair_item(item: dict[str, Any], image_size: Sequence[int] | None = None) -> None:
    """Raise ``ValueError`` if ``item`` breaks the dataset item contract (useful in tests of custom datasets)."""
    missing = [key for key in PAIR_ITEM_KEYS if key not in item]
    if missing:
        raise ValueError(f"Dataset item is missing keys {missing}.")
    size = None
    for side in ("source", "target"):
        image = item[f"{side}_image"]
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            raise ValueError(f"`{side}_image` must be an RGB PIL image, got {type(image).__name__}.")
        if size is None:
            size = (image.height, image.width)
        if (image.height, image.width) != size or (image_size is not None and size != tuple(image_size)):
            raise ValueError(f"`{side}_image` has size {(image.height, image.width)}, expected {image_size or size}.")
        keypoints = item[f"{side}_keypoints"]
        if not isinstance(keypoints, np.ndarray) or keypoints.dtype != np.float32 or keypoints.shape != (18, 3):
            raise ValueError(f"`{side}_keypoints` must be a float32 (18, 3) array.")
        parsing = item[f"{side}_parsing"]
        if parsing is not None and (
            not isinstance(parsing, np.ndarray) or parsing.dtype != np.int64 or parsing.shape != size
        ):
            raise ValueError(f"`{side}_parsing` must be None or an int64 array of shape {size}.")
    if not isinstance(item["label_map"], str) or not isinstance(item["name"], str):
        raise ValueError("`label_map` and `name` must be strings.")


# --------------------------------------------------------------------------------------------------------------------
# Base class of the file-backed pair datasets
# --------------------------------------------------------------------------------------------------------------------


class PairFileDataset(Dataset):
    """Pairs of image files with keypoints and optional parsing maps (base of the DeepFashion and folder datasets).

    Args:
        pairs: ``[(source_name, target_name), ...]``, names relative to ``image_dir``.
        image_dir: Folder holding the images.
        keypoints: Image name (or its stem) -> float32 ``(18, 3)`` keypoints in pixels of ``keypoints_frame``.
        image_size: Output ``(height, width)``; images are resized bicubic, keypoints scaled, parsing nearest.
        keypoints_frame: ``(height, width)`` frame of the keypoints, or ``None`` for each image file's own size.
        parsing_dir: Optional folder of ``<stem>.png`` label-id maps.
        label_map: Name of the label table of the parsing maps.
        annotation_problems: Problems found while reading the keypoint file (reported by :meth:`validate`).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        image_dir: str | os.PathLike,
        keypoints: dict[str, np.ndarray],
        image_size: Sequence[int] | int,
        keypoints_frame: Sequence[int] | None = None,
        parsing_dir: str | os.PathLike | None = None,
        label_map: str = "atr",
        annotation_problems: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if not isinstance(label_map, str) or not label_map:
            raise ValueError(f"`label_map` must be a non-empty label-table name such as 'atr', got {label_map!r}.")
        self.pairs = [(str(source), str(target)) for source, target in pairs]
        self.image_dir = Path(image_dir)
        self.keypoints = keypoints
        self.image_size = check_image_size(image_size)
        self.keypoints_frame = (
            None if keypoints_frame is None else check_image_size(keypoints_frame, "keypoints_frame")
        )
        self.parsing_dir = None if parsing_dir is None else Path(parsing_dir)
        if self.parsing_dir is not None and not self.parsing_dir.is_dir():
            raise FileNotFoundError(f"`parsing_dir` {self.parsing_dir} is not a directory of <stem>.png label maps.")
        self.label_map = get_label_map(label_map.lower()).name
        self.annotation_problems = list(annotation_problems)
        if self.annotation_problems:
            logger.warning(
                f"{len(self.annotation_problems)} problem(s) in the keypoint annotations, e.g. "
                f"{self.annotation_problems[0]}; call `validate()` for the full list."
            )

    def __len__(self) -> int:
        return len(self.pairs)

    # Paths --------------------------------------------------------------------------------------------------------

    def image_path(self, name: str) -> Path:
        """Path of image ``name``."""
        return self.image_dir / name

    def parsing_path(self, name: str) -> Path | None:
        """Path of the parsing map of image ``name`` (``parsing_dir/<stem>.png``), or ``None`` without parsing."""
        if self.parsing_dir is None:
            return None
        return self.parsing_dir / Path(name).with_suffix(".png")

    def lookup_keypoints(self, name: str) -> np.ndarray | None:
        """Keypoints of image ``name`` (looked up by name, then relative stem, then file name), or ``None``."""
        path = Path(name)
        for key in (name, path.with_suffix("").as_posix(), path.name, path.stem):
            if key in self.keypoints:
                return self.keypoints[key]
        return None

    # Loading ------------------------------------------------------------------------------------------------------

    def load_view(self, name: str) -> View:
        """Load image, keypoints and parsing of one image, resized to ``image_size``."""
        path = self.image_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"Image not found: {path}.")
        image = load_image(path)
        keypoints = self.lookup_keypoints(name)
        if keypoints is None:
            raise KeyError(f"No keypoints for image {name!r} ({path}); call `validate()` to list every problem.")
        frame = self.keypoints_frame or (image.height, image.width)
        keypoints = rescale_keypoints(keypoints, frame, self.image_size)
        parsing = None
        parsing_path = self.parsing_path(name)
        if parsing_path is not None:
            if not parsing_path.is_file():
                raise FileNotFoundError(f"Parsing map not found: {parsing_path} (for image {path}).")
            parsing = load_parsing(parsing_path, self.label_map, self.image_size)
        return resize_image(image, self.image_size), keypoints, parsing

    def __getitem__(self, index: int) -> PairItem:
        if not -len(self) <= index < len(self):
            raise IndexError(f"Index {index} out of range for a dataset of {len(self)} pairs.")
        source, target = self.pairs[index]
        return pair_item(self.load_view(source), self.load_view(target), self.label_map, pair_name(source, target))

    # Checking -----------------------------------------------------------------------------------------------------

    def image_names(self) -> list[str]:
        """Every image referenced by a pair, in first-use order."""
        return list(dict.fromkeys(name for pair in self.pairs for name in pair))

    def validate(self, decode: bool = True) -> list[str]:
        """List every problem of the dataset, one message per problem, each naming the file concerned.

        Checks the keypoint file's rows, then for every image used by a pair: the image exists and can be read
        (fully decoded when ``decode``), it has a keypoint row with at least one visible point, and its parsing map
        exists and is a readable label map (when ``parsing_dir`` is set). An empty list means the dataset is clean.
        """
        problems = list(self.annotation_problems)
        if not self.pairs:
            problems.append("No pairs: the pairs file lists no (from, to) rows.")
        for name in self.image_names():
            path = self.image_path(name)
            if not path.is_file():
                problems.append(f"{path}: missing image (used by a pair).")
            else:
                try:
                    with Image.open(path) as image:
                        image.load() if decode else image.verify()
                        depth_problem = _bit_depth_problem(image, os.fspath(path)) if decode else None
                    if depth_problem:
                        problems.append(depth_problem)
                except Exception as error:
                    problems.append(f"{path}: unreadable image ({type(error).__name__}: {error}).")
            keypoints = self.lookup_keypoints(name)
            if keypoints is None:
                problems.append(f"{path}: missing keypoint row for {name!r}.")
            elif not (keypoints[:, 2] > 0).any():
                problems.append(f"{path}: keypoint row for {name!r} has no visible keypoint.")
            parsing_path = self.parsing_path(name)
            if parsing_path is not None:
                if not parsing_path.is_file():
                    problems.append(f"{parsing_path}: missing parsing map (for image {path}).")
                else:
                    try:
                        load_parsing(parsing_path, self.label_map)
                    except ValueError as error:  # not a label-id map, or ids the label map does not define
                        problems.append(str(error))
                    except Exception as error:
                        problems.append(f"{parsing_path}: unreadable parsing map ({type(error).__name__}: {error}).")
        return problems
