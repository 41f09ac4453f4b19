# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Evaluation with the community protocol (PIDM / CFLD / PCDMs): FID, LPIPS, SSIM, SSIM_256 and PSNR.

`truepose.evaluation.metrics` scores image folders (`truepose metrics`); `truepose.evaluation.evaluate` generates a
data set's test pairs with a pipeline and scores them (`truepose evaluate`; the function is
`truepose.evaluation.evaluate.evaluate`).
"""

from .evaluate import generate_test_images, seed_of
from .metrics import (
    PAPER_RESULTS,
    InceptionFeatureExtractor,
    compute_metrics,
    feature_statistics,
    folder_statistics,
    format_markdown,
    frechet_distance,
    list_image_files,
    load_image,
    load_image_folder,
    load_inception,
    load_lpips,
    lpips_distance,
    pair_image_folders,
    parse_size,
    psnr,
    real_statistics,
    resize_to_uint8,
    ssim,
    ssim_256,
    write_results,
)

__all__ = [
    "PAPER_RESULTS",
    "InceptionFeatureExtractor",
    "compute_metrics",
    "feature_statistics",
    "folder_statistics",
    "format_markdown",
    "frechet_distance",
    "generate_test_images",
    "list_image_files",
    "load_image",
    "load_image_folder",
    "load_inception",
    "load_lpips",
    "lpips_distance",
    "pair_image_folders",
    "parse_size",
    "psnr",
    "real_statistics",
    "seed_of",
    "resize_to_uint8",
    "ssim",
    "ssim_256",
    "write_results",
]
