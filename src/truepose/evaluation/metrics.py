# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Image-quality metrics with the community protocol of pose-guided person image synthesis.

The protocol follows PIDM / CFLD / PCDMs: generated test images are compared with their ground truth at a fixed size
(256x176 or 512x352; bicubic resize, then uint8, before scoring).

- **SSIM**: `skimage.metrics.structural_similarity(win_size=51, data_range=1, channel_axis=-1)` on [0, 1] floats.
- **SSIM_256**: the gaussian variant on 0-255 (`gaussian_weights=True`, `sigma` 1.5 as in CFLD or 1.2 as in PIDM,
  `use_sample_covariance=False`, `data_range=255`).
- **PSNR**: `skimage.metrics.peak_signal_noise_ratio(data_range=1)` on [0, 1] floats.
- **LPIPS**: `lpips.LPIPS(net="alex")` with inputs in [0, 1] and `normalize=True`.
- **FID** with one of two backbones, whose values are not comparable with each other (`fid_backbone`):
  `"torchvision"`: torchvision Inception-v3 (IMAGENET1K_V1) 2048-d pool features, as CFLD's evaluation;
  `"pytorch-fid"`: the TF-Inception port of the `pytorch-fid` package (`pt_inception-2015-12-05` weights), as PIDM,
  PCDMs and the GFLA-derived scripts. Real set = all training images, fake set = generated test images.

Identity metrics per parsing region of the target (beyond the protocol) are in `truepose.evaluation.regions`.
All weights are read from local files; nothing is downloaded (see `docs/evaluation.md`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils import logging
from PIL import Image
from torch import nn

from ..conditioning.image import to_8bit, uint16_to_uint8
from ..conditioning.parsing import LabelMap, get_label_map
from ..data.common import load_parsing

logger = logging.get_logger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SUPPORTED_SIZES = ((256, 176), (512, 352))
DEFAULT_SIZE = (256, 176)

SSIM_WIN_SIZE = 51
SSIM_256_SIGMA_CFLD = 1.5
SSIM_256_SIGMA_PIDM = 1.2

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_ENV = "TRUEPOSE_LPIPS_BACKBONE"
INCEPTION_FILENAME = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
INCEPTION_ENV = "TRUEPOSE_INCEPTION_WEIGHTS"
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
PYTORCH_FID_ENV = "TRUEPOSE_PYTORCH_FID_WEIGHTS"
CACHE_ENV = "TRUEPOSE_CACHE_DIR"

INCEPTION_SIZE = 299
# FID backbones: torchvision's Inception-v3 (CFLD) and pytorch-fid's TF-Inception port (PIDM, PCDMs, GFLA scripts).
FID_BACKBONES = ("torchvision", "pytorch-fid")
DEFAULT_FID_BACKBONE = "torchvision"
FID_DIMS = 2048
# Feature sizes pytorch-fid offers (`--dims`); only 2048 is comparable with published numbers.
PYTORCH_FID_DIMS = (64, 192, 768, 2048)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Numbers reported by the TruePose paper (DeepFashion, 512x352). `fid_backbone` says which Inception a published FID
# used (one of `FID_BACKBONES`, None where unknown); FID is not part of our summary of the paper.
PAPER_RESULTS: dict[str, dict[str, Any]] = {
    "TruePose (paper)": {
        "size": "512x352",
        "fid": None,
        "fid_backbone": None,
        "lpips": 0.151,
        "ssim": 0.744,
        "psnr": 17.627,
    },
}

METRIC_COLUMNS = (
    ("fid", "FID ↓"),
    ("lpips", "LPIPS ↓"),
    ("ssim", "SSIM ↑"),
    ("ssim_256", "SSIM_256 ↑"),
    ("psnr", "PSNR ↑"),
)


# ----------------------------------------------------------------------------------------------------------------------
# Image folders
# ----------------------------------------------------------------------------------------------------------------------


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
    """Reads one image file as `(H, W, 3)` uint8 at `size = (H, W)` (bicubic resize)."""
    with Image.open(path) as image:
        return resize_to_uint8(image, size, os.fspath(path))


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


class _ImageFileDataset(torch.utils.data.Dataset):
    """Image files read as `(H, W, 3)` uint8 tensors at a fixed size (for DataLoader workers)."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int]):
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(load_image(self.paths[index], self.size).copy())


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, real: _ImageFileDataset, fake: _ImageFileDataset):
        self.real, self.fake = real, fake

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.real[index], self.fake[index]


def _loader(dataset: torch.utils.data.Dataset, batch_size: int, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(N, H, W, 3)` uint8 -> `(N, 3, H, W)` float32 in [0, 1]."""
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected images of shape (N, H, W, 3), got {tuple(images.shape)}.")
    if images.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 images (the protocol scores uint8), got {images.dtype}.")
    return images.permute(0, 3, 1, 2).float().div(255.0)


def _check_pair(real: np.ndarray, fake: np.ndarray) -> None:
    if real.shape != fake.shape:
        raise ValueError(f"`real` and `fake` must have the same shape, got {real.shape} and {fake.shape}.")
    if real.dtype != np.uint8 or fake.dtype != np.uint8:
        raise ValueError(f"`real` and `fake` must be uint8 (H, W, 3) images, got {real.dtype} and {fake.dtype}.")


# ----------------------------------------------------------------------------------------------------------------------
# SSIM / PSNR (scikit-image, the reference implementation)
# ----------------------------------------------------------------------------------------------------------------------


def ssim(real: np.ndarray, fake: np.ndarray) -> float:
    """The protocol's SSIM of two `(H, W, 3)` uint8 images: skimage, `win_size=51, data_range=1` on [0, 1] floats."""
    from skimage.metrics import structural_similarity

    _check_pair(real, fake)
    if min(real.shape[:2]) < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM uses win_size={SSIM_WIN_SIZE}: images must be at least 51x51, got {real.shape[:2]}.")
    return float(
        structural_similarity(
            real.astype(np.float64) / 255.0,
            fake.astype(np.float64) / 255.0,
            win_size=SSIM_WIN_SIZE,
            data_range=1.0,
            channel_axis=-1,
        )
    )


def ssim_256(real: np.ndarray, fake: np.ndarray, sigma: float = SSIM_256_SIGMA_CFLD) -> float:
    """The "SSIM_256" variant of two `(H, W, 3)` uint8 images: gaussian weights (`sigma` 1.5 as in CFLD, 1.2 as in
    PIDM), `use_sample_covariance=False`, `data_range=255` on 0-255 values."""
    from skimage.metrics import structural_similarity

    _check_pair(real, fake)
    return float(
        structural_similarity(
            real.astype(np.float64),
            fake.astype(np.float64),
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=False,
            data_range=255.0,
            channel_axis=-1,
        )
    )


def psnr(real: np.ndarray, fake: np.ndarray) -> float:
    """PSNR of two `(H, W, 3)` uint8 images: skimage with `data_range=1` on [0, 1] floats (inf for equal images)."""
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(real, fake)
    if np.array_equal(real, fake):
        return math.inf
    return float(
        peak_signal_noise_ratio(real.astype(np.float64) / 255.0, fake.astype(np.float64) / 255.0, data_range=1.0)
    )


# ----------------------------------------------------------------------------------------------------------------------
# Local weight files
# ----------------------------------------------------------------------------------------------------------------------


def resolve_weights_file(
    path: str | os.PathLike | None, *, filename: str, url: str, env_var: str, purpose: str, argument: str
) -> Path:
    """Finds a weight file offline: `path` (a file, or a folder holding `filename`), else `$env_var`, else
    the torch hub cache (`<torch hub dir>/checkpoints/<filename>`). Raises `FileNotFoundError` explaining where to put
    the file otherwise."""
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if path is not None:
        source = f"`{argument}`"
    elif os.environ.get(env_var):
        path, source = os.environ[env_var], f"${env_var}"
    else:
        path, source = hub_file, "the torch hub cache"
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / filename
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"{purpose} needs the weight file '{filename}', which was not found at {str(candidate)!r} "
        f"(looked in {source}). Nothing is downloaded at evaluation time: fetch it once from {url} and either put it "
        f"at {str(hub_file)!r} (the torch hub cache), set ${env_var}=/path/to/{filename}, or pass `{argument}`."
    )


def _load_state_dict(path: Path, purpose: str) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{purpose}: {str(path)!r} is not a state dict (got {type(state).__name__}).")
    return state


# `resolve_weights_file` arguments of every weight file a metric needs: "lpips" and one per FID backbone.
WEIGHT_FILES: dict[str, dict[str, str]] = {
    "lpips": {
        "filename": ALEXNET_FILENAME,
        "url": ALEXNET_URL,
        "env_var": ALEXNET_ENV,
        "purpose": "LPIPS (AlexNet backbone)",
        "argument": "lpips_backbone_path / --lpips-backbone",
    },
    "torchvision": {
        "filename": INCEPTION_FILENAME,
        "url": INCEPTION_URL,
        "env_var": INCEPTION_ENV,
        "purpose": "FID (torchvision Inception-v3)",
        "argument": "inception_weights_path / --inception-weights",
    },
    "pytorch-fid": {
        "filename": PYTORCH_FID_FILENAME,
        "url": PYTORCH_FID_URL,
        "env_var": PYTORCH_FID_ENV,
        "purpose": "FID (pytorch-fid TF-Inception)",
        "argument": "inception_weights_path / --inception-weights",
    },
}


def check_fid_backbone(fid_backbone: str, fid_dims: int = FID_DIMS) -> None:
    """Raises a `ValueError` for an unknown backbone or feature size, an `ImportError` when pytorch-fid is needed but
    not installed."""
    if fid_backbone not in FID_BACKBONES:
        raise ValueError(f"`fid_backbone` must be one of {FID_BACKBONES}, got {fid_backbone!r}.")
    if fid_backbone == "torchvision" and fid_dims != FID_DIMS:
        raise ValueError(f"`fid_dims` must be {FID_DIMS} with the torchvision backbone, got {fid_dims}.")
    if fid_backbone == "pytorch-fid":
        if fid_dims not in PYTORCH_FID_DIMS:
            raise ValueError(f"`fid_dims` must be one of {PYTORCH_FID_DIMS} with pytorch-fid, got {fid_dims}.")
        if importlib.util.find_spec("pytorch_fid") is None:
            raise ImportError(
                "`fid_backbone='pytorch-fid'` needs the pytorch-fid package: `pip install pytorch-fid` (or "
                "`pip install truepose[eval]`)."
            )


def check_weight_files(
    *,
    compute_lpips: bool = True,
    compute_fid: bool = True,
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    lpips_backbone_path: str | os.PathLike | None = None,
    inception_weights_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Finds every weight file the requested metrics need, before any work is done.

    Returns `{"lpips": path, "fid": path}` (only the requested ones). Raises one `FileNotFoundError` that lists every
    missing file with where it was looked for and where to get it.
    """
    wanted: dict[str, tuple[str | os.PathLike | None, dict[str, str]]] = {}
    if compute_lpips:
        wanted["lpips"] = (lpips_backbone_path, WEIGHT_FILES["lpips"])
    if compute_fid:
        check_fid_backbone(fid_backbone)
        wanted["fid"] = (inception_weights_path, WEIGHT_FILES[fid_backbone])
    found, missing = {}, []
    for key, (path, spec) in wanted.items():
        try:
            found[key] = resolve_weights_file(path, **spec)
        except FileNotFoundError as error:
            missing.append(str(error))
    if len(missing) == 1:
        raise FileNotFoundError(missing[0])
    if missing:
        raise FileNotFoundError(f"{len(missing)} weight files are missing:\n- " + "\n- ".join(missing))
    return found


# ----------------------------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------------------------


def load_lpips(
    lpips_backbone_path: str | os.PathLike | None = None, device: str | torch.device = "cpu", spatial: bool = False
) -> nn.Module:
    """`lpips.LPIPS(net="alex")` with its shipped linear layers and the AlexNet backbone read from a local torchvision
    `alexnet-owt-7be5be79.pth` (see `resolve_weights_file` for where it is looked up).

    `spatial=True` makes the model return `(N, 1, H, W)` distance maps instead of `(N, 1, 1, 1)` means (lpips'
    `spatial` option), for the identity metrics per region.
    """
    import lpips

    path = resolve_weights_file(lpips_backbone_path, **WEIGHT_FILES["lpips"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation, raised inside lpips
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, spatial=spatial, verbose=False)
    state = _load_state_dict(path, "LPIPS backbone")
    # lpips splits torchvision's `features` Sequential into slices that keep the original indices.
    backbone = {}
    for key in model.net.state_dict():
        _, index_and_param = key.split(".", 1)  # "slice2.3.weight" -> "3.weight"
        source_key = f"features.{index_and_param}"
        if source_key not in state:
            raise ValueError(
                f"{str(path)!r} is not a torchvision AlexNet state dict: key {source_key!r} is missing "
                f"(expected the file from {ALEXNET_URL})."
            )
        backbone[key] = state[source_key]
    model.net.load_state_dict(backbone)
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def lpips_distance(model: nn.Module, real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-image LPIPS of `(N, H, W, 3)` uint8 batches: inputs in [0, 1] with `normalize=True`. Returns `(N,)`."""
    device = next(model.parameters()).device
    real_t, fake_t = _to_float(real).to(device), _to_float(fake).to(device)
    if real_t.shape != fake_t.shape:
        raise ValueError(
            f"`real` and `fake` must have the same shape, got {tuple(real_t.shape)} and {tuple(fake_t.shape)}."
        )
    return model(real_t, fake_t, normalize=True).reshape(-1).double().cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------------------------------


class InceptionFeatureExtractor(nn.Module):
    """torchvision Inception-v3 (IMAGENET1K_V1) returning the 2048-d average-pool features.

    Input: `(N, 3, H, W)` floats in [0, 1] (or `(N, H, W, 3)` uint8), resized to 299x299 (bilinear, antialiased) and
    ImageNet-normalized as torchvision's IMAGENET1K_V1 transforms do. Output: `(N, 2048)` float32.
    """

    feature_dim = FID_DIMS

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = _to_float(images)
        images = images.to(self.mean.device, torch.float32)
        images = F.interpolate(
            images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        return self.inception((images - self.mean) / self.std)


def load_inception(
    inception_weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> InceptionFeatureExtractor:
    """Builds `torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)`, loads the local
    IMAGENET1K_V1 file `inception_v3_google-0cc3c7bd.pth` and replaces `fc` by the identity (2048-d pool features).

    As torchvision does for these weights, `transform_input=True` (the Google weights expect inputs in [-1, 1]).
    """
    from torchvision.models import inception_v3

    path = resolve_weights_file(inception_weights_path, **WEIGHT_FILES["torchvision"])
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    state = _load_state_dict(path, "Inception-v3")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{str(path)!r} is not a torchvision Inception-v3 state dict (expected the file from {INCEPTION_URL}): {error}"
        ) from error
    model.fc = nn.Identity()
    return InceptionFeatureExtractor(model).eval().requires_grad_(False).to(device)


class PytorchFIDFeatureExtractor(nn.Module):
    """pytorch-fid's `InceptionV3` (the TF-Inception port) returning features as pytorch-fid's `get_activations` does.

    Input: `(N, H, W, 3)` uint8 (or `(N, 3, H, W)` floats in [0, 1], what pytorch-fid's `ToTensor` gives); the model
    itself resizes to 299x299 (bilinear, no antialiasing) and scales to [-1, 1]. Output: `(N, feature_dim)` float32;
    for `feature_dim < 2048` the block's feature map is global-average-pooled, as in pytorch-fid.
    """

    def __init__(self, model: nn.Module, feature_dim: int = FID_DIMS):
        super().__init__()
        self.model = model
        self.feature_dim = feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = _to_float(images)
        device = next(self.model.parameters()).device
        features = self.model(images.to(device, torch.float32))[0]
        if features.shape[2:] != (1, 1):
            features = F.adaptive_avg_pool2d(features, output_size=(1, 1))
        return features.flatten(1)


def load_pytorch_fid_inception(
    weights_path: str | os.PathLike | None = None, dims: int = FID_DIMS, device: str | torch.device = "cpu"
) -> PytorchFIDFeatureExtractor:
    """`pytorch_fid.inception.InceptionV3` (output block of `dims`-d features, 2048 = final pool) with the TF-Inception
    weights `pt_inception-2015-12-05-6726825d.pth` read from a local file (see `resolve_weights_file`)."""
    from pytorch_fid import inception as pytorch_fid_inception

    check_fid_backbone("pytorch-fid", dims)
    path = resolve_weights_file(weights_path, **WEIGHT_FILES["pytorch-fid"])
    state = _load_state_dict(path, "pytorch-fid Inception")
    block = pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    # `InceptionV3` builds its network with `fid_inception_v3`, which fetches the weights with
    # `load_state_dict_from_url` (the package's only download): hand it the local state dict instead.
    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        try:
            model = pytorch_fid_inception.InceptionV3([block])
        except RuntimeError as error:
            raise ValueError(
                f"{str(path)!r} is not pytorch-fid's TF-Inception state dict (expected the file from "
                f"{PYTORCH_FID_URL}): {error}"
            ) from error
    return PytorchFIDFeatureExtractor(model, dims).eval().requires_grad_(False).to(device)


def load_fid_backbone(
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    weights_path: str | os.PathLike | None = None,
    dims: int = FID_DIMS,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The feature extractor of an FID backbone (`"torchvision"` or `"pytorch-fid"`): `(N, H, W, 3)` uint8 ->
    `(N, dims)` features; it has a `feature_dim` attribute."""
    check_fid_backbone(fid_backbone, dims)
    if fid_backbone == "pytorch-fid":
        return load_pytorch_fid_inception(weights_path, dims=dims, device=device)
    return load_inception(weights_path, device=device)


def min_fid_images(dims: int = FID_DIMS) -> int:
    """Fewest images per set for a meaningful FID with `dims`-d features: `dims + 1`.

    The covariance of N feature vectors has rank at most N - 1, so below `dims + 1` images it is singular,
    `sqrtm(sigma1 @ sigma2)` is ill-conditioned, and the distance can come out as anything (e.g. 4.8e23 for 2 images).
    pytorch-fid's README gives the same advice (at least 2048 images for 2048-d features).
    """
    return dims + 1


def check_fid_image_counts(num_real: int, num_fake: int, dims: int = FID_DIMS, force: bool = False) -> bool:
    """Refuses (`ValueError`) an FID on fewer than `min_fid_images(dims)` images per set, unless `force`.

    Returns True when both sets are large enough, False when forced below the minimum (a warning is logged).
    """
    minimum = min_fid_images(dims)
    if num_real >= minimum and num_fake >= minimum:
        return True
    message = (
        f"FID with {dims}-d features needs at least {minimum} images per set (the covariance of N images has rank at "
        f"most N - 1, so it is singular below {minimum} and the distance is meaningless); got {num_real} real and "
        f"{num_fake} generated images."
    )
    if not force:
        raise ValueError(
            message + " Skip FID (`compute_fid=False`, --no-fid), use more images, or force it (`force_fid=True`, "
            "--force-fid) for a number that is not comparable with anything."
        )
    logger.warning(message + " Computing it anyway (forced); the value is not comparable with anything.")
    return False


class RunningStatistics:
    """Streaming mean and covariance of `(N, D)` features in float64 (shifted sums, so no `(N, D)` array is kept)."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: np.ndarray | None = None
        self.sum: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, features: np.ndarray | torch.Tensor) -> None:
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise ValueError(f"Expected features of shape (N, D), got {features.shape}.")
        if len(features) == 0:
            return
        if self.shift is None:
            self.shift = features.mean(axis=0)
            self.sum = np.zeros_like(self.shift)
            self.outer = np.zeros((features.shape[1], features.shape[1]))
        centered = features - self.shift
        self.sum += centered.sum(axis=0)
        self.outer += centered.T @ centered
        self.count += len(features)

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns `(mu (D,), sigma (D, D))`, sigma with the unbiased `N - 1` normalisation like `np.cov`."""
        if self.count < 2:
            raise ValueError(f"FID needs at least 2 images per set, got {self.count}.")
        mean_centered = self.sum / self.count
        sigma = (self.outer - self.count * np.outer(mean_centered, mean_centered)) / (self.count - 1)
        return self.shift + mean_centered, sigma


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """`(N, D)` features -> `(mu (D,), sigma (D, D))` in float64."""
    stats = RunningStatistics()
    stats.update(features)
    return stats.compute()


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), the pytorch-fid formula:
    `|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))` with `scipy.linalg.sqrtm` (real part), adding `eps`
    to the diagonals when the product is singular."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"Statistics do not match: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}."
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # a singular product is detected and handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning(f"FID: sqrtm of the covariance product is singular; adding {eps} to the diagonals.")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if max_imag > 1e-3:
            logger.warning(
                f"FID: sqrtm has an imaginary component of {max_imag:.3g} (too few images for the feature dimension?); "
                "using the real part."
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


@torch.no_grad()
def folder_statistics(
    folder: str | os.PathLike,
    model: nn.Module,
    size: Sequence[int] = DEFAULT_SIZE,
    names: Sequence[str] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Inception statistics of the images of `folder` (bicubic resize to `size`, uint8, then the backbone `model`,
    see `load_fid_backbone`). Returns `(mu (D,), sigma (D, D), num_images)`."""
    size = parse_size(size)
    names = list_image_files(folder) if names is None else list(names)
    dataset = _ImageFileDataset([Path(folder) / name for name in names], size)
    stats = RunningStatistics()
    for batch in _progress(_loader(dataset, batch_size, num_workers), f"Inception features of {folder}"):
        stats.update(model(batch))
    mu, sigma = stats.compute()
    return mu, sigma, stats.count


def default_cache_dir() -> Path:
    """`$TRUEPOSE_CACHE_DIR/fid_stats`, else `~/.cache/truepose/fid_stats`."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "truepose"
    return Path(root).expanduser() / "fid_stats"


def _real_statistics_key(
    folder: Path, size: tuple[int, int], names: Sequence[str], weights: Path, fid_backbone: str, fid_dims: int
) -> dict[str, Any]:
    stat = weights.stat()
    return {
        "folder": str(folder.resolve()),
        "size": list(size),
        "num_images": len(names),
        "names_sha1": hashlib.sha1("\n".join(names).encode()).hexdigest(),
        "fid_backbone": fid_backbone,
        "fid_dims": fid_dims,
        "inception_weights": [weights.name, stat.st_size, int(stat.st_mtime)],
    }


def real_statistics(
    folder: str | os.PathLike,
    size: Sequence[int] = DEFAULT_SIZE,
    inception_weights_path: str | os.PathLike | None = None,
    model: nn.Module | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    fid_dims: int = FID_DIMS,
) -> tuple[np.ndarray, np.ndarray]:
    """Inception statistics of the FID real set (all training images), cached in `cache_dir` as a `.npz` keyed by the
    folder, the evaluation size, its file list, the backbone, its feature size and its weight file."""
    size = parse_size(size)
    check_fid_backbone(fid_backbone, fid_dims)
    folder = Path(folder)
    names = list_image_files(folder)
    weights = resolve_weights_file(inception_weights_path, **WEIGHT_FILES[fid_backbone])
    key = _real_statistics_key(folder, size, names, weights, fid_backbone, fid_dims)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache_file / f"{folder.resolve().name}_{size[0]}x{size[1]}_{digest}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as cached:
            if json.loads(str(cached["key"])) == key:
                logger.info(f"FID: reusing real-set statistics from {cache_file}")
                return cached["mu"], cached["sigma"]
    if model is None:
        model = load_fid_backbone(fid_backbone, weights, dims=fid_dims, device=device)
    mu, sigma, _ = folder_statistics(folder, model, size, names, batch_size=batch_size, num_workers=num_workers)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, mu=mu, sigma=sigma, key=json.dumps(key, sort_keys=True))
    os.replace(tmp, cache_file)
    logger.info(f"FID: cached real-set statistics in {cache_file}")
    return mu, sigma


# ----------------------------------------------------------------------------------------------------------------------
# All metrics
# ----------------------------------------------------------------------------------------------------------------------


def _progress(iterable: Any, desc: str) -> Iterator[Any]:
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, leave=False, disable=not logging.is_progress_bar_enabled()))


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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


def compute_metrics(
    real_dir: str | os.PathLike,
    fake_dir: str | os.PathLike,
    size: str | Sequence[int] = DEFAULT_SIZE,
    fid_real_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    inception_weights_path: str | os.PathLike | None = None,
    lpips_backbone_path: str | os.PathLike | None = None,
    ssim_256_sigma: float = SSIM_256_SIGMA_CFLD,
    compute_fid: bool = True,
    fid_cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    names: Sequence[str] | None = None,
    compute_lpips: bool = True,
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    fid_dims: int = FID_DIMS,
    force_fid: bool = False,
    parsing_dir: str | os.PathLike | None = None,
    label_map: str | LabelMap | Mapping = "atr",
) -> dict[str, Any]:
    """Scores generated images (`fake_dir`) against their ground truth (`real_dir`), paired by file name (only the
    file names without extension in `names` when given).

    Both are bicubic-resized to `size = (H, W)` and converted to uint8 first. FID compares the generated images with
    `fid_real_dir` (the protocol's real set: all training images, statistics cached); when it is None the ground-truth
    folder is used instead and the result says so. `fid_backbone` is `"torchvision"` (CFLD's FID) or `"pytorch-fid"`
    (PIDM's, PCDMs'); an FID on fewer than `min_fid_images(fid_dims)` images per set is refused unless `force_fid`.
    With `parsing_dir` (the ground truths' parsing maps `<stem>.png` in `label_map`), the identity metrics per region
    (`truepose.evaluation.regions`) are added under `regions`.

    Every input and weight file is checked before any image is scored.

    Returns a dict with `lpips` (None when `compute_lpips=False`), `ssim`, `ssim_256` (+ `ssim_256_sigma`), `psnr`
    (means over the pairs), `fid` (or None, + `fid_backbone`, `fid_dims`, `fid_reliable`), `regions` (or None) and
    bookkeeping (`size`, `num_images`, `fid_real_dir`, `fid_real_set`).
    """
    from .regions import RegionScores

    # 1. Check every input and weight file before any work
    size = parse_size(size)
    if size not in SUPPORTED_SIZES:
        logger.warning(f"Evaluating at {size[0]}x{size[1]}; the protocol's sizes are 256x176 and 512x352.")
    device = torch.device(device or _default_device())
    if compute_fid:
        check_fid_backbone(fid_backbone, fid_dims)
    pairs = pair_image_folders(real_dir, fake_dir, names)
    weights = check_weight_files(
        compute_lpips=compute_lpips,
        compute_fid=compute_fid,
        fid_backbone=fid_backbone,
        lpips_backbone_path=lpips_backbone_path,
        inception_weights_path=inception_weights_path,
    )
    fid_reliable = None
    if compute_fid:
        num_real = len(pairs) if fid_real_dir is None else len(list_image_files(fid_real_dir))
        fid_reliable = check_fid_image_counts(num_real, len(pairs), fid_dims, force=force_fid)
    parsing_paths = None if parsing_dir is None else target_parsing_files(parsing_dir, [r for r, _ in pairs])
    if parsing_paths is not None:
        label_map = get_label_map(label_map, "label_map")

    # 2. Load the models
    lpips_model = load_lpips(weights["lpips"], device=device) if compute_lpips else None
    inception = load_fid_backbone(fid_backbone, weights["fid"], dims=fid_dims, device=device) if compute_fid else None
    region_scores = None
    if parsing_paths is not None:
        region_lpips = load_lpips(weights["lpips"], device=device, spatial=True) if compute_lpips else None
        region_scores = RegionScores(label_map, lpips_model=region_lpips)

    # 3. Score the pairs
    real_set = _ImageFileDataset([Path(real_dir) / r for r, _ in pairs], size)
    fake_set = _ImageFileDataset([Path(fake_dir) / f for _, f in pairs], size)
    lpips_values, ssim_values, ssim_256_values, psnr_values = [], [], [], []
    fake_stats = RunningStatistics()
    index = 0
    for real, fake in _progress(_loader(_PairDataset(real_set, fake_set), batch_size, num_workers), "Scoring pairs"):
        if lpips_model is not None:
            lpips_values.append(lpips_distance(lpips_model, real, fake))
        if inception is not None:
            fake_stats.update(inception(fake))
        for real_image, fake_image in zip(real.numpy(), fake.numpy()):
            ssim_values.append(ssim(real_image, fake_image))
            ssim_256_values.append(ssim_256(real_image, fake_image, sigma=ssim_256_sigma))
            psnr_values.append(psnr(real_image, fake_image))
            if region_scores is not None:
                parsing = load_parsing(parsing_paths[index], region_scores.label_map, size)
                region_scores.update(real_image, fake_image, parsing)
            index += 1

    results: dict[str, Any] = {
        "size": f"{size[0]}x{size[1]}",
        "num_images": len(pairs),
        "fid": None,
        "fid_backbone": fid_backbone if compute_fid else None,
        "fid_dims": fid_dims if compute_fid else None,
        "fid_reliable": fid_reliable,
        "lpips": float(np.concatenate(lpips_values).mean()) if lpips_values else None,
        "ssim": float(np.mean(ssim_values)),
        "ssim_256": float(np.mean(ssim_256_values)),
        "ssim_256_sigma": float(ssim_256_sigma),
        "psnr": float(np.mean(psnr_values)),
        "fid_real_dir": None,
        "fid_real_set": None,
        "regions": None if region_scores is None else region_scores.compute(),
        "regions_label_map": None if region_scores is None else region_scores.label_map.name,
    }
    if inception is not None:
        if fid_real_dir is None:
            logger.warning(
                "FID: no `fid_real_dir` given, so the real set is the ground-truth test images; the protocol uses all "
                "training images (pass --fid-real-dir) and numbers are not comparable to papers."
            )
            mu_real, sigma_real, _ = folder_statistics(
                real_dir, inception, size, [r for r, _ in pairs], batch_size=batch_size, num_workers=num_workers
            )
            results["fid_real_dir"], results["fid_real_set"] = str(real_dir), "ground-truth test images"
        else:
            mu_real, sigma_real = real_statistics(
                fid_real_dir,
                size,
                inception_weights_path=weights["fid"],
                model=inception,
                cache_dir=fid_cache_dir,
                batch_size=batch_size,
                num_workers=num_workers,
                fid_backbone=fid_backbone,
                fid_dims=fid_dims,
            )
            results["fid_real_dir"], results["fid_real_set"] = str(fid_real_dir), "training images"
        mu_fake, sigma_fake = fake_stats.compute()
        results["fid"] = frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake)
    return results


def _format_value(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _format_fid(value: float | None, backbone: str | None, dims: int | None = FID_DIMS) -> str:
    """An FID beside the backbone that computed it, e.g. `6.371 (pytorch-fid)`; FIDs of two backbones differ."""
    if value is None:
        return "n/a"
    label = backbone or "backbone unknown"
    if dims not in (None, FID_DIMS):
        label += f", {dims}-d"
    return f"{_format_value(value, 3)} ({label})"


def format_markdown(results: dict[str, Any], name: str = "This run", include_paper: bool = True) -> str:
    """A Markdown table of `results` (from `compute_metrics`) beside the paper's numbers ("n/a" where none), every
    FID with its backbone; then the identity metrics per region when `results["regions"]` is set."""
    from .regions import format_region_markdown

    digits = {"lpips": 4, "ssim": 4, "ssim_256": 4, "psnr": 3}
    sigma = results.get("ssim_256_sigma", SSIM_256_SIGMA_CFLD)
    header = ["Method", "Size"] + [
        f"SSIM_256 σ={sigma:g} ↑" if key == "ssim_256" else title for key, title in METRIC_COLUMNS
    ]

    def row(method: str, values: dict[str, Any], dims: int | None) -> list[str]:
        cells = [method, str(values.get("size", "n/a"))]
        for key, _ in METRIC_COLUMNS:
            if key == "fid":
                cells.append(_format_fid(values.get("fid"), values.get("fid_backbone"), dims))
            else:
                cells.append(_format_value(values.get(key), digits[key]))
        return cells

    rows = [row(name, results, results.get("fid_dims"))]
    if include_paper:
        rows += [row(paper_name, paper, FID_DIMS) for paper_name, paper in PAPER_RESULTS.items()]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    notes = [
        f"{results.get('num_images', '?')} image pairs; SSIM: win 51 on [0,1]; SSIM_256: gaussian σ={sigma:g} on 0-255."
    ]
    if results.get("fid") is not None:
        notes.append(
            "FID backbones: torchvision = torchvision Inception-v3 IMAGENET1K_V1 (CFLD's evaluation), pytorch-fid = "
            "TF-Inception pt_inception-2015-12-05 (PIDM, PCDMs, GFLA scripts); FIDs of different backbones are not "
            "comparable."
        )
    if results.get("fid_real_set"):
        notes.append(f"FID real set: {results['fid_real_set']} ({results.get('fid_real_dir')}).")
    if results.get("fid_reliable") is False:
        notes.append(
            f"FID forced on fewer than {min_fid_images(results.get('fid_dims') or FID_DIMS)} images per set: "
            "not meaningful."
        )
    markdown = "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"
    if results.get("regions"):
        markdown += "\n" + format_region_markdown(results["regions"])
    return markdown


def write_results(results: dict[str, Any], json_path: str | os.PathLike, name: str = "This run") -> tuple[Path, Path]:
    """Writes `results` as JSON at `json_path` and the Markdown table beside it (`.md`). Returns both paths."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"results": results, "paper": PAPER_RESULTS}
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    markdown_path = json_path.with_suffix(".md")
    markdown_path.write_text(format_markdown(results, name=name))
    return json_path, markdown_path


def _positive_int(text: str) -> int:
    from ..cli import positive_int

    return positive_int(text)


def _non_negative_int(text: str) -> int:
    from ..cli import non_negative_int

    return non_negative_int(text)


def _positive_float(text: str) -> float:
    from ..cli import positive_float

    return positive_float(text)


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The scoring options shared by `truepose metrics` and `truepose evaluate` (read back by `scoring_kwargs`)."""
    parser.add_argument("--no-fid", action="store_true", help="Skip FID (no Inception weights needed).")
    parser.add_argument("--no-lpips", action="store_true", help="Skip LPIPS (no AlexNet weights needed).")
    parser.add_argument(
        "--fid-backbone",
        default=DEFAULT_FID_BACKBONE,
        choices=FID_BACKBONES,
        help="Inception of FID: torchvision (CFLD's numbers) or pytorch-fid (PIDM's, PCDMs'); not comparable.",
    )
    parser.add_argument(
        "--fid-dims",
        type=int,
        default=FID_DIMS,
        choices=PYTORCH_FID_DIMS,
        help="FID feature size (pytorch-fid backbone only; papers use 2048).",
    )
    parser.add_argument(
        "--force-fid", action="store_true", help="Compute FID even on fewer images than features + 1 (meaningless)."
    )
    parser.add_argument(
        "--inception-weights",
        default=None,
        help=f"FID weights: {INCEPTION_FILENAME} (torchvision, or ${INCEPTION_ENV}) or {PYTORCH_FID_FILENAME} "
        f"(pytorch-fid, or ${PYTORCH_FID_ENV}); a folder holding it works too.",
    )
    parser.add_argument("--lpips-backbone", default=None, help=f"Path to {ALEXNET_FILENAME} (or ${ALEXNET_ENV}).")
    parser.add_argument(
        "--ssim-256-sigma",
        type=_positive_float,
        default=SSIM_256_SIGMA_CFLD,
        help="Gaussian sigma of SSIM_256: 1.5 (CFLD) or 1.2 (PIDM).",
    )
    parser.add_argument(
        "--fid-cache-dir", default=None, help=f"Cache of real-set statistics (default {default_cache_dir()})."
    )


def scoring_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """`compute_metrics` keyword arguments of the options added by `add_scoring_arguments`."""
    return {
        "compute_fid": not args.no_fid,
        "compute_lpips": not args.no_lpips,
        "fid_backbone": args.fid_backbone,
        "fid_dims": args.fid_dims,
        "force_fid": args.force_fid,
        "inception_weights_path": args.inception_weights,
        "lpips_backbone_path": args.lpips_backbone,
        "ssim_256_sigma": args.ssim_256_sigma,
        "fid_cache_dir": args.fid_cache_dir,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truepose metrics",
        description="Score generated images against ground truth (FID, LPIPS, SSIM, SSIM_256, PSNR, and identity "
        "metrics per parsing region), paired by file name.",
    )
    parser.add_argument("real_dir", help="Folder of ground-truth test images.")
    parser.add_argument("fake_dir", help="Folder of generated images (same file names, any image extension).")
    parser.add_argument("--size", default="256x176", help="Evaluation size HxW: 256x176 or 512x352 (default 256x176).")
    parser.add_argument("--fid-real-dir", default=None, help="FID real set: the training images folder.")
    add_scoring_arguments(parser)
    parser.add_argument(
        "--parsing-dir",
        default=None,
        help="Parsing maps <stem>.png of the ground-truth images: adds the identity metrics per region.",
    )
    parser.add_argument("--label-map", default="atr", help="Label table of the parsing maps (atr, lip, cihp, ...).")
    parser.add_argument("--device", default=None, help="Torch device (default: cuda if available).")
    parser.add_argument("--batch-size", type=_positive_int, default=16)
    parser.add_argument("--num-workers", type=_non_negative_int, default=0, help="DataLoader workers for images.")
    parser.add_argument(
        "--json", default=None, help="Write results to this JSON file (and the Markdown table beside it)."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`truepose metrics REAL_DIR FAKE_DIR [--size 256x176] [--fid-real-dir TRAIN_DIR] [--fid-backbone B]
    [--inception-weights P] [--lpips-backbone P] [--parsing-dir P] [--json OUT]`."""
    from ..cli import check_device, check_output_file

    args = build_parser().parse_args(argv)
    # Every option before any image is read or model loaded
    if args.device is not None:
        check_device(args.device, allow_meta=True)  # meta: scoring code can be dry-run without data
    get_label_map(args.label_map, "--label-map")
    if args.json is not None:
        check_output_file(args.json, "--json")
    results = compute_metrics(
        args.real_dir,
        args.fake_dir,
        size=args.size,
        fid_real_dir=args.fid_real_dir,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        parsing_dir=args.parsing_dir,
        label_map=args.label_map,
        **scoring_kwargs(args),
    )
    if args.json:
        write_results(results, args.json)
    print(format_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
