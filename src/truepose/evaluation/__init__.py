# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Evaluation with the community protocol (PIDM / CFLD / PCDMs): FID (two backbones), LPIPS, SSIM, SSIM_256 and PSNR,
plus identity metrics per parsing region of the target (beyond the protocol).

`truepose.evaluation.metrics` scores image folders (`compute_metrics`, `truepose metrics`) with the parts:
`images` (folders, the image loader), `weights` (weight files, LPIPS and FID backbones), `fid` (statistics, cache,
distance), `scores` (the scores of one pair) and `report` (tables, files). `truepose.evaluation.regions` holds the
identity metrics per region; `truepose.evaluation.evaluate` generates a data set's test pairs with a pipeline and
scores them (`truepose evaluate`; the function is `truepose.evaluation.evaluate.evaluate`). Each pair's generator
is seeded with `truepose.data.pair_seed(name, seed)` (also importable here as `seed_of`).
"""

from ..data.common import pair_seed as seed_of
from .evaluate import generate_test_images
from .metrics import (
    FID_BACKBONES,
    PAPER_RESULTS,
    InceptionFeatureExtractor,
    PytorchFIDFeatureExtractor,
    check_weight_files,
    compute_metrics,
    feature_statistics,
    folder_statistics,
    format_markdown,
    frechet_distance,
    list_image_files,
    load_fid_backbone,
    load_image,
    load_image_folder,
    load_inception,
    load_lpips,
    load_pytorch_fid_inception,
    lpips_distance,
    min_fid_images,
    pair_image_folders,
    parse_size,
    psnr,
    real_statistics,
    resize_to_uint8,
    ssim,
    ssim_256,
    write_results,
)
from .regions import (
    IDENTITY_REGIONS,
    RegionScores,
    identity_region_masks,
    region_color_difference,
    region_edge_ssim,
    region_lpips,
    region_psnr,
    region_ssim,
    score_regions,
)

__all__ = [
    "FID_BACKBONES",
    "IDENTITY_REGIONS",
    "PAPER_RESULTS",
    "InceptionFeatureExtractor",
    "PytorchFIDFeatureExtractor",
    "RegionScores",
    "check_weight_files",
    "compute_metrics",
    "feature_statistics",
    "folder_statistics",
    "format_markdown",
    "frechet_distance",
    "generate_test_images",
    "identity_region_masks",
    "region_color_difference",
    "region_edge_ssim",
    "list_image_files",
    "load_image",
    "load_image_folder",
    "load_fid_backbone",
    "load_inception",
    "load_lpips",
    "load_pytorch_fid_inception",
    "lpips_distance",
    "min_fid_images",
    "pair_image_folders",
    "parse_size",
    "psnr",
    "real_statistics",
    "region_lpips",
    "region_psnr",
    "region_ssim",
    "resize_to_uint8",
    "score_regions",
    "seed_of",
    "ssim",
    "ssim_256",
    "write_results",
]
