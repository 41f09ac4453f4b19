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

This module is `compute_metrics` (two folders -> every score) and the `truepose metrics` command; the parts live in
`images` (folders, loading), `weights` (weight files, LPIPS and FID backbones), `fid` (statistics, cache, distance),
`scores` (the scores of one pair) and `report` (tables, files). Their public names are importable from here too.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils import logging
from torch import nn

from ..cli import check_device, check_output_file, non_negative_int, positive_float, positive_int
from ..conditioning.parsing import LabelMap, get_label_map
from ..data.common import load_parsing
from .fid import (
    CACHE_ENV,
    RunningStatistics,
    check_fid_image_counts,
    default_cache_dir,
    feature_statistics,
    folder_statistics,
    frechet_distance,
    min_fid_images,
    real_statistics,
)
from .images import (
    DEFAULT_SIZE,
    IMAGE_EXTENSIONS,
    SUPPORTED_SIZES,
    ImageFileDataset,
    ImagePairDataset,
    image_loader,
    input_sizes,
    list_image_files,
    load_image,
    load_image_folder,
    pair_image_folders,
    parse_size,
    resize_to_uint8,
    target_parsing_files,
)
from .progress import progress_bar
from .regions import RegionScores
from .report import METRIC_COLUMNS, PAPER_RESULTS, format_markdown, write_results
from .scores import SSIM_256_SIGMA_CFLD, SSIM_256_SIGMA_PIDM, SSIM_WIN_SIZE, lpips_distance, psnr, ssim, ssim_256
from .weights import (
    ALEXNET_ENV,
    ALEXNET_FILENAME,
    ALEXNET_URL,
    DEFAULT_FID_BACKBONE,
    FID_BACKBONES,
    FID_DIMS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_ENV,
    INCEPTION_FILENAME,
    INCEPTION_SIZE,
    INCEPTION_URL,
    PYTORCH_FID_DIMS,
    PYTORCH_FID_ENV,
    PYTORCH_FID_FILENAME,
    PYTORCH_FID_URL,
    WEIGHT_FILES,
    InceptionFeatureExtractor,
    PytorchFIDFeatureExtractor,
    check_fid_backbone,
    check_weight_files,
    load_fid_backbone,
    load_inception,
    load_lpips,
    load_pytorch_fid_inception,
    resolve_weights_file,
)

__all__ = [
    "ALEXNET_ENV",
    "ALEXNET_FILENAME",
    "ALEXNET_URL",
    "CACHE_ENV",
    "DEFAULT_FID_BACKBONE",
    "DEFAULT_SIZE",
    "FID_BACKBONES",
    "FID_DIMS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "INCEPTION_ENV",
    "INCEPTION_FILENAME",
    "INCEPTION_SIZE",
    "INCEPTION_URL",
    "METRIC_COLUMNS",
    "PAPER_RESULTS",
    "PYTORCH_FID_DIMS",
    "PYTORCH_FID_ENV",
    "PYTORCH_FID_FILENAME",
    "PYTORCH_FID_URL",
    "SSIM_256_SIGMA_CFLD",
    "SSIM_256_SIGMA_PIDM",
    "SSIM_WIN_SIZE",
    "SUPPORTED_SIZES",
    "WEIGHT_FILES",
    "InceptionFeatureExtractor",
    "PytorchFIDFeatureExtractor",
    "RunningStatistics",
    "add_scoring_arguments",
    "build_parser",
    "check_fid_backbone",
    "check_fid_image_counts",
    "check_weight_files",
    "compute_metrics",
    "default_cache_dir",
    "feature_statistics",
    "folder_statistics",
    "format_markdown",
    "frechet_distance",
    "list_image_files",
    "load_fid_backbone",
    "load_image",
    "load_image_folder",
    "load_inception",
    "load_lpips",
    "load_pytorch_fid_inception",
    "lpips_distance",
    "main",
    "min_fid_images",
    "pair_image_folders",
    "parse_size",
    "psnr",
    "real_statistics",
    "resize_to_uint8",
    "resolve_weights_file",
    "scoring_kwargs",
    "ssim",
    "ssim_256",
    "target_parsing_files",
    "write_results",
]

logger = logging.get_logger(__name__)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    bookkeeping (`size`, `num_images`, `fid_real_dir`, `fid_real_set`, and `resized_from`: for the ground truth and
    the generated images whose size differs from `size`, how many had each size, `{"generated": {"96x64": 8}}`).
    """
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
    real_names = [r for r, _ in pairs]
    resized_from = {
        role: {found: count for found, count in input_sizes(paths).items() if found != f"{size[0]}x{size[1]}"}
        for role, paths in (
            ("ground truth", [Path(real_dir) / r for r in real_names]),
            ("generated", [Path(fake_dir) / f for _, f in pairs]),
        )
    }
    parsing_paths = None if parsing_dir is None else target_parsing_files(parsing_dir, real_names)
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
    pair_images = ImagePairDataset(
        ImageFileDataset([Path(real_dir) / r for r in real_names], size),
        ImageFileDataset([Path(fake_dir) / f for _, f in pairs], size),
    )
    batches = image_loader(pair_images, batch_size, num_workers)
    scores, fake_stats = _score_pairs(
        batches, size, ssim_256_sigma, lpips_model, inception, region_scores, parsing_paths
    )
    results: dict[str, Any] = {
        "size": f"{size[0]}x{size[1]}",
        "num_images": len(pairs),
        "fid": None,
        "fid_backbone": fid_backbone if compute_fid else None,
        "fid_dims": fid_dims if compute_fid else None,
        "fid_reliable": fid_reliable,
        "lpips": float(np.concatenate(scores["lpips"]).mean()) if scores["lpips"] else None,
        "ssim": float(np.mean(scores["ssim"])),
        "ssim_256": float(np.mean(scores["ssim_256"])),
        "ssim_256_sigma": float(ssim_256_sigma),
        "psnr": float(np.mean(scores["psnr"])),
        "fid_real_dir": None,
        "fid_real_set": None,
        "regions": None if region_scores is None else region_scores.compute(),
        "regions_label_map": None if region_scores is None else region_scores.label_map.name,
        "resized_from": {role: sizes for role, sizes in resized_from.items() if sizes},
    }

    # 4. FID of the generated images against the real set
    if inception is not None:
        real_set = _real_set_statistics(
            inception,
            real_dir,
            real_names,
            fid_real_dir,
            size,
            weights_path=weights["fid"],
            cache_dir=fid_cache_dir,
            fid_backbone=fid_backbone,
            fid_dims=fid_dims,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        results["fid_real_dir"], results["fid_real_set"] = real_set["folder"], real_set["name"]
        results["fid"] = frechet_distance(real_set["mu"], real_set["sigma"], *fake_stats.compute())
    return results


def _score_pairs(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    size: tuple[int, int],
    ssim_256_sigma: float,
    lpips_model: nn.Module | None,
    inception: nn.Module | None,
    region_scores: RegionScores | None,
    parsing_paths: Sequence[Path] | None,
) -> tuple[dict[str, list[Any]], RunningStatistics]:
    """Stage 3 of `compute_metrics`: the scores of every pair of the `(B, H, W, 3)` uint8 `batches`, in file order.

    Returns `{"ssim": [float per pair], "ssim_256": [...], "psnr": [...], "lpips": [(B,) per batch, with
    `lpips_model`]}` and the generated images' features statistics (with `inception`); `region_scores` accumulates the
    identity metrics per region, each pair with its parsing map `parsing_paths[i]`.
    """
    scores: dict[str, list[Any]] = {"lpips": [], "ssim": [], "ssim_256": [], "psnr": []}
    fake_stats = RunningStatistics()
    index = 0
    for real, fake in progress_bar(batches, "Scoring pairs"):
        if lpips_model is not None:
            scores["lpips"].append(lpips_distance(lpips_model, real, fake))
        if inception is not None:
            fake_stats.update(inception(fake))
        for real_image, fake_image in zip(real.numpy(), fake.numpy()):
            scores["ssim"].append(ssim(real_image, fake_image))
            scores["ssim_256"].append(ssim_256(real_image, fake_image, sigma=ssim_256_sigma))
            scores["psnr"].append(psnr(real_image, fake_image))
            if region_scores is not None:
                parsing = load_parsing(parsing_paths[index], region_scores.label_map, size)
                region_scores.update(real_image, fake_image, parsing)
            index += 1
    return scores, fake_stats


def _real_set_statistics(
    inception: nn.Module,
    real_dir: str | os.PathLike,
    real_names: Sequence[str],
    fid_real_dir: str | os.PathLike | None,
    size: tuple[int, int],
    *,
    weights_path: Path,
    cache_dir: str | os.PathLike | None,
    fid_backbone: str,
    fid_dims: int,
    batch_size: int,
    num_workers: int,
) -> dict[str, Any]:
    """Stage 4 of `compute_metrics`: the FID statistics of the real set, the training images of `fid_real_dir`
    (cached, see `real_statistics`) or else, with a warning, the ground truths `real_names` of `real_dir`.

    Returns `{"mu": (D,), "sigma": (D, D), "folder": str, "name": "training images" | "ground-truth test images"}`.
    """
    if fid_real_dir is None:
        logger.warning(
            "FID: no `fid_real_dir` given, so the real set is the ground-truth test images; the protocol uses all "
            "training images (pass --fid-real-dir) and numbers are not comparable to papers."
        )
        mu, sigma, _ = folder_statistics(
            real_dir, inception, size, real_names, batch_size=batch_size, num_workers=num_workers
        )
        return {"mu": mu, "sigma": sigma, "folder": str(real_dir), "name": "ground-truth test images"}
    mu, sigma = real_statistics(
        fid_real_dir,
        size,
        inception_weights_path=weights_path,
        model=inception,
        cache_dir=cache_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        fid_backbone=fid_backbone,
        fid_dims=fid_dims,
    )
    return {"mu": mu, "sigma": sigma, "folder": str(fid_real_dir), "name": "training images"}


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
        type=positive_float,
        default=SSIM_256_SIGMA_CFLD,
        help=f"Gaussian sigma of SSIM_256: {SSIM_256_SIGMA_CFLD} (CFLD) or {SSIM_256_SIGMA_PIDM} (PIDM).",
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
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--num-workers", type=non_negative_int, default=0, help="DataLoader workers for images.")
    parser.add_argument(
        "--json", default=None, help="Write results to this JSON file (and the Markdown table beside it)."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`truepose metrics REAL_DIR FAKE_DIR [--size 256x176] [--fid-real-dir TRAIN_DIR] [--fid-backbone B]
    [--inception-weights P] [--lpips-backbone P] [--parsing-dir P] [--json OUT]`."""
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
