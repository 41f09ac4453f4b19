# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Identity preservation per parsing region of the target: SSIM, PSNR and LPIPS restricted to the face, the upper
clothes, the lower clothes and the arms/legs.

These metrics are **beyond the community protocol** (no published table reports them): they measure the paper's
claim that identity (face, garment pattern, text) is preserved, which the whole-image protocol metrics do not.

For a region mask `M` of the target's parsing map (`(H, W)` bool), a generated image `G` and its ground truth `T`:

- **PSNR**: skimage `peak_signal_noise_ratio(T[M], G[M], data_range=1)` on the region's pixels ([0, 1] floats).
- **SSIM** and **LPIPS** need a neighbourhood, so they are computed on `T` against `G` pasted into `T` outside the
  region (`where(M, G, T)`): pixels outside the region are identical and contribute no difference, and windows near
  the border see the true context. The SSIM map (skimage, the local gaussian window of SSIM_256: `sigma=1.5`,
  `use_sample_covariance=False`, on 0-255) and the LPIPS map (AlexNet, lpips' `spatial=True`) are then averaged over
  the region's pixels. The protocol's 51-pixel SSIM window is not used here: around a region as small as a face it
  would mostly see the pasted true context and report near-perfect scores whatever the region holds.

A region equal in both images therefore scores SSIM 1, PSNR inf and LPIPS 0, whatever the rest of the image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..conditioning.parsing import LabelMap, get_label_map, label_group_masks
from .images import check_pair, to_float
from .scores import SSIM_256_SIGMA_CFLD

# Identity regions -> the label-map region names they gather (a label map has some of them: "atr" and "lip" name
# "upper_clothes", DeepFashion-MultiModal "top"/"outer"; its "skin" covers arms, legs and torso).
IDENTITY_REGIONS: dict[str, tuple[str, ...]] = {
    "face": ("face",),
    "upper_clothes": ("upper_clothes", "coat", "dress", "jumpsuits", "top", "outer", "rompers"),
    "lower_clothes": ("pants", "skirt", "leggings"),
    "arms_legs": ("arms", "legs", "skin"),
}

REGION_METRICS = ("ssim", "psnr", "lpips")


def identity_region_masks(
    parsing: np.ndarray,
    label_map: str | LabelMap | Mapping = "atr",
    regions: Mapping[str, Sequence[str]] = IDENTITY_REGIONS,
) -> dict[str, np.ndarray]:
    """Masks of the identity regions present in a parsing map.

    Args:
        parsing: `(H, W)` integer label ids.
        label_map: the label map the ids belong to.
        regions: identity region -> names of the label map's regions it gathers.

    Returns:
        `{region: (H, W) bool}` for the non-empty regions, in the order of `regions`.
    """

    label_map = get_label_map(label_map)
    groups = {
        region: [i for name in names for i in label_map.regions.get(name, ())] for region, names in regions.items()
    }
    return label_group_masks(parsing, groups, drop_empty=True)


def _check_mask(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> np.ndarray:
    check_pair(real, fake)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != real.shape[:2]:
        raise ValueError(f"`mask` must have shape {real.shape[:2]} (the images' (H, W)), got {mask.shape}.")
    if not mask.any():
        raise ValueError("`mask` is empty; region metrics need at least one pixel.")
    return mask


def paste_region(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`fake` inside `mask`, `real` elsewhere: `(H, W, 3)` uint8."""
    return np.where(mask[..., None], fake, real)


def region_psnr(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of two `(H, W, 3)` uint8 images on the pixels of `mask` (data range 1; inf when they are equal there)."""
    from skimage.metrics import peak_signal_noise_ratio

    mask = _check_mask(real, fake, mask)
    real_pixels, fake_pixels = real[mask], fake[mask]
    if np.array_equal(real_pixels, fake_pixels):
        return math.inf
    return float(peak_signal_noise_ratio(real_pixels / 255.0, fake_pixels / 255.0, data_range=1.0))


def region_ssim(real: np.ndarray, fake: np.ndarray, mask: np.ndarray, sigma: float = SSIM_256_SIGMA_CFLD) -> float:
    """SSIM of `real` and `fake` pasted into `real` outside `mask`, averaged over the pixels of `mask`: skimage's SSIM
    map (`full=True`, averaged over the channels) with SSIM_256's gaussian window (`sigma`, 0-255 values)."""
    from skimage.metrics import structural_similarity

    mask = _check_mask(real, fake, mask)
    _, ssim_map = structural_similarity(
        real.astype(np.float64),
        paste_region(real, fake, mask).astype(np.float64),
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        data_range=255.0,
        channel_axis=-1,
        full=True,
    )
    return float(ssim_map.mean(axis=-1)[mask].mean())


def region_color_difference(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> float:
    """Colour error of a region: CIE76 ΔE between the mean CIELAB colours of `real` and `fake` over the pixels of
    `mask` (`(H, W, 3)` uint8 sRGB, skimage `rgb2lab`, D65). About 2.3 is a just-noticeable difference; a garment
    redrawn in the wrong colour is tens of units away. Pattern and position inside the region do not count."""
    from skimage.color import deltaE_cie76, rgb2lab

    mask = _check_mask(real, fake, mask)
    real_lab = rgb2lab(real[mask][None] / 255.0)[0].mean(axis=0)
    fake_lab = rgb2lab(fake[mask][None] / 255.0)[0].mean(axis=0)
    return float(deltaE_cie76(real_lab, fake_lab))


def region_edge_ssim(
    real: np.ndarray, fake: np.ndarray, mask: np.ndarray, sigma: float = SSIM_256_SIGMA_CFLD
) -> float:
    """Pattern agreement of a region: SSIM of the two images' edge maps (skimage `sobel` magnitude of the grey
    image, in [0, 1]; SSIM with data range 1), averaged over the pixels of `mask`. Stripes, prints and letters are edges: 1 when they sit where the
    ground truth has them, near 0 for a flat or differently patterned region. Like `region_ssim`, `fake` is pasted
    into `real` outside `mask` first, so the region's own content is what is compared."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel
    from skimage.metrics import structural_similarity

    mask = _check_mask(real, fake, mask)
    real_edges = sobel(rgb2gray(real))
    fake_edges = sobel(rgb2gray(paste_region(real, fake, mask)))
    _, ssim_map = structural_similarity(
        real_edges,
        fake_edges,
        gaussian_weights=True,
        sigma=sigma,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    return float(ssim_map[mask].mean())


@torch.no_grad()
def region_lpips(model: nn.Module, real: np.ndarray, fake: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """LPIPS of `real` and `fake` pasted into `real` outside each mask, averaged over that mask's pixels.

    Args:
        model: `load_lpips(..., spatial=True)` (returns `(N, 1, H, W)` distance maps).
        real, fake: `(H, W, 3)` uint8.
        masks: `(R, H, W)` bool, each non-empty.

    Returns:
        `(R,)` float64.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"`masks` must have shape (R, H, W), got {masks.shape}.")
    for mask in masks:
        _check_mask(real, fake, mask)
    if len(masks) == 0:
        return np.zeros(0)
    if not getattr(model, "spatial", False):
        raise ValueError("`model` must return spatial LPIPS maps: build it with `load_lpips(..., spatial=True)`.")
    device = next(model.parameters()).device
    pasted = np.stack([paste_region(real, fake, mask) for mask in masks])
    reference = np.repeat(real[None], len(masks), axis=0)
    maps = model(to_float(reference).to(device), to_float(pasted).to(device), normalize=True)
    maps = maps[:, 0].double().cpu().numpy()  # (R, H, W)
    return np.array([region_map[mask].mean() for region_map, mask in zip(maps, masks)])


class RegionScores:
    """Accumulates the identity metrics per region over image pairs (means over the pairs where a region is present).

    Args:
        label_map: the label map of the target parsing maps.
        lpips_model: `load_lpips(..., spatial=True)`, or None to skip LPIPS.
        regions: identity region -> label-map region names (default `IDENTITY_REGIONS`).
    """

    def __init__(
        self,
        label_map: str | LabelMap | Mapping = "atr",
        lpips_model: nn.Module | None = None,
        regions: Mapping[str, Sequence[str]] = IDENTITY_REGIONS,
    ):
        self.label_map = get_label_map(label_map)
        self.lpips_model = lpips_model
        self.regions = dict(regions)
        self.values: dict[str, dict[str, list[float]]] = {
            region: {key: [] for key in (*REGION_METRICS, "area")} for region in self.regions
        }

    def update(self, real: np.ndarray, fake: np.ndarray, parsing: np.ndarray) -> dict[str, dict[str, float]]:
        """Scores one pair `(H, W, 3)` uint8 with the target's `(H, W)` parsing map; returns its per-region scores."""
        check_pair(real, fake)
        parsing = np.asarray(parsing)
        if parsing.shape != real.shape[:2]:
            raise ValueError(f"`parsing` must have shape {real.shape[:2]} (the images' (H, W)), got {parsing.shape}.")
        masks = identity_region_masks(parsing, self.label_map, self.regions)
        lpips_values = (
            region_lpips(self.lpips_model, real, fake, np.stack(list(masks.values())))
            if self.lpips_model is not None and masks
            else [None] * len(masks)
        )
        scores = {}
        for (region, mask), lpips_value in zip(masks.items(), lpips_values):
            scores[region] = {
                "ssim": region_ssim(real, fake, mask),
                "psnr": region_psnr(real, fake, mask),
                "lpips": None if lpips_value is None else float(lpips_value),
                "area": float(mask.mean()),
            }
            for key, value in scores[region].items():
                if value is not None:
                    self.values[region][key].append(value)
        return scores

    def compute(self) -> dict[str, dict[str, Any]]:
        """`{region: {"ssim", "psnr", "lpips" (None without a model), "area" (mean fraction of the image),
        "num_images"}}` for every region; metrics are None for a region found in no image."""
        results = {}
        for region, values in self.values.items():
            count = len(values["ssim"])
            results[region] = {
                key: float(np.mean(values[key])) if values[key] else None for key in (*REGION_METRICS, "area")
            }
            results[region]["num_images"] = count
        return results


def score_regions(
    real_images: Sequence[np.ndarray],
    fake_images: Sequence[np.ndarray],
    parsings: Sequence[np.ndarray],
    label_map: str | LabelMap | Mapping = "atr",
    lpips_model: nn.Module | None = None,
    regions: Mapping[str, Sequence[str]] = IDENTITY_REGIONS,
) -> dict[str, dict[str, Any]]:
    """Identity metrics per region of lists of `(H, W, 3)` uint8 ground truths and generated images, with the
    ground truths' `(H, W)` parsing maps. Returns `RegionScores.compute()`."""
    if not len(real_images) == len(fake_images) == len(parsings):
        raise ValueError(
            f"`real_images`, `fake_images` and `parsings` must have the same length, got {len(real_images)}, "
            f"{len(fake_images)} and {len(parsings)}."
        )
    scores = RegionScores(label_map, lpips_model=lpips_model, regions=regions)
    for real, fake, parsing in zip(real_images, fake_images, parsings):
        scores.update(np.asarray(real), np.asarray(fake), parsing)
    return scores.compute()
