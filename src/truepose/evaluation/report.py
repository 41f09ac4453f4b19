# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Reports of the scores: values formatted for tables (`format_value`, every FID with its backbone), the Markdown
table beside the paper's numbers, the table of the identity metrics per region, and the JSON + Markdown files."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fid import min_fid_images
from .scores import SSIM_256_SIGMA_CFLD
from .weights import FID_DIMS

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


def format_value(value: Any, digits: int) -> str:
    """A score with `digits` decimals for a table: "n/a" for None (not computed), "inf" for an infinite PSNR."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def format_fid(value: float | None, backbone: str | None, dims: int | None = FID_DIMS) -> str:
    """An FID beside the backbone that computed it, e.g. `6.371 (pytorch-fid)`; FIDs of two backbones differ."""
    if value is None:
        return "n/a"
    label = backbone or "backbone unknown"
    if dims not in (None, FID_DIMS):
        label += f", {dims}-d"
    return f"{format_value(value, 3)} ({label})"


def format_markdown(results: dict[str, Any], name: str = "This run", include_paper: bool = True) -> str:
    """A Markdown table of `results` (from `compute_metrics`) beside the paper's numbers at the same size ("n/a" where
    none; numbers at another size are left out, with a note, since they are not comparable), every FID with its
    backbone, and a note of the inputs that were resized; then the identity metrics per region when
    `results["regions"]` is set."""
    digits = {"lpips": 4, "ssim": 4, "ssim_256": 4, "psnr": 3}
    sigma = results.get("ssim_256_sigma", SSIM_256_SIGMA_CFLD)
    header = ["Method", "Size"] + [
        f"SSIM_256 σ={sigma:g} ↑" if key == "ssim_256" else title for key, title in METRIC_COLUMNS
    ]

    def row(method: str, values: dict[str, Any], dims: int | None) -> list[str]:
        cells = [method, str(values.get("size", "n/a"))]
        for key, _ in METRIC_COLUMNS:
            if key == "fid":
                cells.append(format_fid(values.get("fid"), values.get("fid_backbone"), dims))
            else:
                cells.append(format_value(values.get(key), digits[key]))
        return cells

    rows = [row(name, results, results.get("fid_dims"))]
    size = results.get("size")
    other_size = sorted({paper["size"] for paper in PAPER_RESULTS.values() if paper["size"] != size})
    if include_paper:
        rows += [
            row(paper_name, paper, FID_DIMS) for paper_name, paper in PAPER_RESULTS.items() if paper["size"] == size
        ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    notes = [
        f"{results.get('num_images', '?')} image pairs; SSIM: win 51 on [0,1]; SSIM_256: gaussian σ={sigma:g} on 0-255."
    ]
    for role, sizes in (results.get("resized_from") or {}).items():
        found = ", ".join(f"{count} at {found}" for found, count in sizes.items())
        notes.append(f"Resized (bicubic) to {size} before scoring: {role} images {found}.")
    if include_paper and other_size:
        notes.append(
            f"The paper's numbers at {', '.join(other_size)} are not shown: this run is at {size or 'another size'}, "
            "and scores at different sizes are not comparable."
        )
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


def format_region_markdown(region_results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of `RegionScores.compute()` (`truepose.evaluation.regions`), titled as beyond the protocol."""
    lines = [
        "Identity preservation per region of the target's parsing map (beyond the protocol: no published table "
        "reports these; SSIM and LPIPS with the generated region pasted into the ground truth).",
        "",
        "| Region | Images | Area % | SSIM ↑ | PSNR ↑ | LPIPS ↓ |",
        "|---|---|---|---|---|---|",
    ]
    for region, values in region_results.items():
        area = None if values.get("area") is None else 100 * values["area"]
        lines.append(
            f"| {region} | {values.get('num_images', 0)} | {format_value(area, 1)} | "
            f"{format_value(values.get('ssim'), 4)} | {format_value(values.get('psnr'), 3)} | "
            f"{format_value(values.get('lpips'), 4)} |"
        )
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], json_path: str | os.PathLike, name: str = "This run") -> tuple[Path, Path]:
    """Writes `results` as JSON at `json_path` and the Markdown table beside it (`.md`). Returns both paths."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"results": results, "paper": PAPER_RESULTS}
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    markdown_path = json_path.with_suffix(".md")
    markdown_path.write_text(format_markdown(results, name=name))
    return json_path, markdown_path
