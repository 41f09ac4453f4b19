# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""The images the metrics score: evaluation sizes, image folders paired by file name, the image loader (the
datasets' `load_image_file`, then a bicubic resize to the evaluation size and uint8, the protocol's step), the data
sets and loader that feed the scores in file order, and the checks of the uint8 images every score takes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..conditioning.image import load_image_file, to_8bit, uint16_to_uint8

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUPPORTED_SIZES = ((256, 176), (512, 352))
DEFAULT_SIZE = (256, 176)


def parse_size(size: str | Sequence[int]) -> tuple[int, int]:
    """Parses an evaluation size `"HxW"` (e.g. `"256x176"`) or an `(H, W)` pair into `(H, W)`."""
    if isinstance(size, str):
        parts = size.lower().replace(",", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"`size` must look like 'HxW' (e.g. '256x176'), got {size!r}.")
        height, width = (int(p) for p in parts)
    else:
        if len(size) != 2:
            raise ValueError(f"`size` must be (height, width), got {size!r}.")
        height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"`size` must be positive, got {(height, width)}.")
    return height, width


def input_sizes(paths: Sequence[str | os.PathLike]) -> dict[str, int]:
    """How many of the image files ``paths`` have each size, as ``{"HxW": count}`` (headers only, nothing decoded)."""
    counts: dict[str, int] = {}
    for path in paths:
        with Image.open(path) as image:
            width, height = image.size
        counts[f"{height}x{width}"] = counts.get(f"{height}x{width}", 0) + 1
    return counts


def list_image_files(path: str | os.PathLike) -> list[str]:
    """Sorted file names of the images (by extension) directly inside folder `path`."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"Image folder {str(folder)!r} does not exist or is not a directory.")
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise ValueError(
            f"Image folder {str(folder)!r} contains no images (expected files ending in {IMAGE_EXTENSIONS})."
        )
    return names


def resize_to_uint8(image: Image.Image | np.ndarray, size: Sequence[int], name: str = "image") -> np.ndarray:
    """RGB image -> `(H, W, 3)` uint8 at `size = (H, W)`, bicubic resize when the size differs (the protocol's step).

    Arrays are `(H, W)`, `(H, W, 3)` or `(H, W, 4)`: uint16 (scaled by 255 / 65535), other integers in [0, 255] or
    floats in [0, 1]. Images of more than 8 bits ("I;16", "I", "F") are scaled to 8 bits as the pipeline does
    (`truepose.conditioning.image.to_8bit`); ``name`` (e.g. the file) is named in errors.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(_array_to_uint8(image))
    image = to_8bit(image, name).convert("RGB")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"`image` must be an (H, W), (H, W, 3) or (H, W, 4) array, got shape {array.shape}.")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return uint16_to_uint8(array)
    if np.issubdtype(array.dtype, np.integer):
        low, high = 0, 255
    elif np.issubdtype(array.dtype, np.floating):
        low, high = 0.0, 1.0
    else:
        raise TypeError(f"`image` must be an integer or floating-point array, got dtype {array.dtype}.")
    if array.size and not (np.isfinite(array).all() and array.min() >= low and array.max() <= high):
        raise ValueError(
            f"`image` of dtype {array.dtype} must hold values in [{low}, {high}] (integers 0-255, floats 0-1), got "
            f"values in [{array.min()}, {array.max()}]."
        )
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.uint8)
    return (array.astype(np.float64) * 255.0).round().astype(np.uint8)


def load_image(path: str | os.PathLike, size: Sequence[int]) -> np.ndarray:
    """Reads one image file as `(H, W, 3)` uint8 at `size = (H, W)` (bicubic resize); every scored image is read here.

    The file is read by `truepose.conditioning.image.load_image_file`, the datasets' loader: images of more than 8
    bits are scaled to 8 bits by the pipeline's rules (`to_8bit`, whose errors name the file) and an alpha channel
    is dropped (the colour under transparent pixels is kept).
    """
    return resize_to_uint8(load_image_file(path), size, os.fspath(path))


def load_image_folder(
    path: str | os.PathLike, size: Sequence[int] = DEFAULT_SIZE, names: Sequence[str] | None = None
) -> np.ndarray:
    """Loads the images of a folder, sorted by file name (or the given `names`), as `(N, H, W, 3)` uint8."""
    size = parse_size(size)
    names = list_image_files(path) if names is None else list(names)
    if not names:
        return np.zeros((0, *size, 3), dtype=np.uint8)
    return np.stack([load_image(Path(path) / name, size) for name in names])


def pair_image_folders(
    real_dir: str | os.PathLike, fake_dir: str | os.PathLike, names: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """Pairs the images of two folders by file name (extension ignored, so `a.jpg` pairs with `a.png`).

    With `names` (file names without extension), only those are paired and other files are ignored.
    Returns `[(real_name, fake_name), ...]` sorted by name. Raises a `ValueError` listing the names missing on either
    side.
    """

    def by_stem(folder: str | os.PathLike) -> dict[str, str]:
        stems: dict[str, str] = {}
        for name in list_image_files(folder):
            stem = Path(name).stem
            if stem in stems:
                raise ValueError(
                    f"Folder {str(folder)!r} holds two images named {stem!r}: {stems[stem]!r} and {name!r}."
                )
            stems[stem] = name
        return stems

    real, fake = by_stem(real_dir), by_stem(fake_dir)
    wanted = set(real) | set(fake) if names is None else set(names)
    missing_fake = sorted(wanted - set(fake))
    missing_real = sorted(wanted - set(real))
    if missing_fake or missing_real:

        def show(names: list[str]) -> str:
            return ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")

        lines = [f"Cannot pair {str(real_dir)!r} (real) with {str(fake_dir)!r} (fake) by file name:"]
        if missing_fake:
            lines.append(f"  missing in fake_dir: {show(missing_fake)}")
        if missing_real:
            lines.append(f"  missing in real_dir: {show(missing_real)}")
        raise ValueError("\n".join(lines))
    return [(real[stem], fake[stem]) for stem in sorted(wanted)]


def target_parsing_files(parsing_dir: str | os.PathLike, real_names: Sequence[str]) -> list[Path]:
    """The parsing maps `parsing_dir/<stem>.png` of the ground-truth images `real_names`; one `FileNotFoundError`
    lists every missing map."""
    folder = Path(parsing_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"`parsing_dir` {str(folder)!r} is not a directory of <stem>.png label maps.")
    paths = [folder / f"{Path(name).stem}.png" for name in real_names]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise FileNotFoundError(f"`parsing_dir` {str(folder)!r} has no parsing map for: {shown}.")
    return paths


class ImageFileDataset(torch.utils.data.Dataset):
    """Image files read as `(H, W, 3)` uint8 tensors at a fixed size (for DataLoader workers)."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int]):
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(load_image(self.paths[index], self.size).copy())


class ImagePairDataset(torch.utils.data.Dataset):
    """`(real, fake)` items of two `ImageFileDataset`s of the same length, index by index."""

    def __init__(self, real: ImageFileDataset, fake: ImageFileDataset):
        self.real, self.fake = real, fake

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.real[index], self.fake[index]


def image_loader(dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int) -> torch.utils.data.DataLoader:
    """Batches of `dataset` in its order (parsing maps are matched to the pairs by position), with `num_workers`."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(N, H, W, 3)` uint8 -> `(N, 3, H, W)` float32 in [0, 1]."""
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images of shape (N, H, W, 3), got {tuple(images.shape)}.")
    if images.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 images (the protocol scores uint8), got {images.dtype}.")
    return images.permute(0, 3, 1, 2).float().div(255.0)


def check_pair(real: np.ndarray, fake: np.ndarray) -> None:
    """Raises a `ValueError` unless `real` and `fake` are uint8 images of the same shape."""
    if real.shape != fake.shape:
        raise ValueError(f"`real` and `fake` must have the same shape, got {real.shape} and {fake.shape}.")
    if real.dtype != np.uint8 or fake.dtype != np.uint8:
        raise ValueError(f"`real` and `fake` must be uint8 (H, W, 3) images, got {real.dtype} and {fake.dtype}.")
