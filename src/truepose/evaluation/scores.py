# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""The protocol's scores of one pair of `(H, W, 3)` uint8 images: SSIM, SSIM_256 and PSNR (scikit-image, the reference
implementation) and LPIPS (batches, with a model from `truepose.evaluation.weights.load_lpips`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .images import check_pair, to_float

SSIM_WIN_SIZE = 51
SSIM_256_SIGMA_CFLD = 1.5
SSIM_256_SIGMA_PIDM = 1.2


def ssim(real: np.ndarray, fake: np.ndarray) -> float:
    """The protocol's SSIM of two `(H, W, 3)` uint8 images: skimage, `win_size=51, data_range=1` on [0, 1] floats."""
    from skimage.metrics import structural_similarity

    check_pair(real, fake)
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

    check_pair(real, fake)
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

    check_pair(real, fake)
    if np.array_equal(real, fake):
        return math.inf
    return float(
        peak_signal_noise_ratio(real.astype(np.float64) / 255.0, fake.astype(np.float64) / 255.0, data_range=1.0)
    )


@torch.no_grad()
def lpips_distance(model: nn.Module, real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-image LPIPS of `(N, H, W, 3)` uint8 batches: inputs in [0, 1] with `normalize=True`. Returns `(N,)`."""
    device = next(model.parameters()).device
    real_t, fake_t = to_float(real).to(device), to_float(fake).to(device)
    if real_t.shape != fake_t.shape:
        raise ValueError(
            f"`real` and `fake` must have the same shape, got {tuple(real_t.shape)} and {tuple(fake_t.shape)}."
        )
    return model(real_t, fake_t, normalize=True).reshape(-1).double().cpu().numpy()
