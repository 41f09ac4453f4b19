# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""FID: streaming feature statistics, the Fréchet distance (the pytorch-fid formula), the image counts a meaningful
FID needs, and the real set's statistics, cached on disk by everything they depend on."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils import logging
from torch import nn

from .._saving import atomic_write
from .images import DEFAULT_SIZE, ImageFileDataset, image_loader, list_image_files, parse_size
from .progress import progress_bar
from .weights import (
    DEFAULT_FID_BACKBONE,
    FID_DIMS,
    WEIGHT_FILES,
    check_fid_backbone,
    load_fid_backbone,
    resolve_weights_file,
)

logger = logging.get_logger(__name__)

CACHE_ENV = "TRUEPOSE_CACHE_DIR"


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
    dataset = ImageFileDataset([Path(folder) / name for name in names], size)
    stats = RunningStatistics()
    for batch in progress_bar(image_loader(dataset, batch_size, num_workers), f"Inception features of {folder}"):
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
    atomic_write(cache_file, lambda f: np.savez(f, mu=mu, sigma=sigma, key=json.dumps(key, sort_keys=True)))
    logger.info(f"FID: cached real-set statistics in {cache_file}")
    return mu, sigma
