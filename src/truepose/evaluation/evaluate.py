# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""`truepose evaluate`: generate every test pair of a data set with a pipeline, then score it with the protocol.

Generation is resumable (images already written are skipped; files are written to a temporary name and moved into
place), deterministic per pair (one `torch.Generator` seeded from a stable hash of the pair name, so the result does
not depend on batch size, process count or resumption), batched, and split across processes with
`accelerate.PartialState` (`accelerate launch -m truepose.evaluation.evaluate ...`, or `torchrun --nproc_per_node N
-m truepose.evaluation.evaluate ...`).

Output layout of `--output-dir DIR`:

- `DIR/generated/<pair name>.png`: generated images, at the generation size.
- `DIR/ground_truth/<pair name>.png`: the target images at the evaluation size (bicubic resize).
- `DIR/ground_truth_parsing/<pair name>.png`: the targets' parsing maps at the evaluation size (nearest), from the
  data set or the pipeline's parser, for the identity metrics per region.
- `DIR/run_config.json`: generation settings; a resumed run must use the same ones.
- `DIR/metrics.json` and `DIR/metrics.md`: scores beside the paper's numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.utils import logging
from PIL import Image

from .._saving import atomic_write
from ..cli import UsageError, check_output_folder, non_negative_float, positive_int, seed_int
from ..conditioning import as_parsing_map, label_map_from_id2label, parse_images, to_pil_image
from ..data.common import pair_seed, save_parsing
from .fid import check_fid_image_counts
from .images import DEFAULT_SIZE, list_image_files, parse_size, resize_to_uint8
from .metrics import add_scoring_arguments, compute_metrics, scoring_kwargs
from .progress import progress_bar
from .report import format_markdown, write_results
from .scores import SSIM_256_SIGMA_CFLD
from .weights import DEFAULT_FID_BACKBONE, FID_DIMS, check_fid_backbone, check_weight_files

logger = logging.get_logger(__name__)

GENERATED_DIRNAME = "generated"
GROUND_TRUTH_DIRNAME = "ground_truth"
GROUND_TRUTH_PARSING_DIRNAME = "ground_truth_parsing"
RUN_CONFIG_NAME = "run_config.json"
METRICS_NAME = "metrics.json"
# Settings that change the generated images: a resumed run must match them.
_RUN_CONFIG_KEYS = ("model", "generation_size", "num_inference_steps", "guidance_scale", "seed", "parsing_dir")


def image_filename(pair_name: str) -> str:
    """File name of a pair's images: `<pair name>.png` (path separators replaced)."""
    return pair_name.replace("\\", "__").replace("/", "__") + ".png"


def save_image_atomic(image: Image.Image | np.ndarray, path: str | os.PathLike) -> None:
    """Writes `image` (PIL, or an `(H, W, 3)` uint8 array) as a PNG with `truepose._saving.atomic_write` (no
    half-written images)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def target_parsing_of(pipeline: Any, item: dict[str, Any], ground_truth: np.ndarray, label_map: str) -> np.ndarray:
    """The target's parsing map at the size of `ground_truth` (`(H, W, 3)` uint8, the target at the evaluation size):
    the data set's map (nearest resize, stretched like the image), else the pipeline's `parser` run on
    `ground_truth`. Returns `(H, W)` int64 ids of `label_map`."""
    parsing = item.get("target_parsing")
    if parsing is None:
        parser = getattr(pipeline, "parser", None)
        if parser is None:
            raise ValueError(
                f"Pair {item['name']!r} has no target parsing map and the pipeline has no `parser` to compute one; "
                "pass a parsing_dir, or skip the identity metrics per region (`compute_regions=False`, --no-regions)."
            )
        parsing = parse_images(parser, pipeline.parser_processor, [Image.fromarray(ground_truth)])[0]
    height, width = ground_truth.shape[:2]
    return as_parsing_map(parsing, height, width, label_map, argument_name="target_parsing", stretch=True)


def _pair_names(dataset: Any) -> list[str] | None:
    """Pair names of a TruePose pair dataset without loading images (`dataset.pairs`), or None when unknown."""
    pairs = getattr(dataset, "pairs", None)
    if pairs is None:
        return None
    from truepose.data import pair_name

    return [pair_name(source, target) for source, target in pairs]


def partial_state() -> Any:
    """`accelerate.PartialState`, on CPU processes (gloo) when launched multi-process on a machine with no accelerator
    or with `ACCELERATE_USE_CPU=true` (plain `PartialState()` would see one process there)."""
    from accelerate import PartialState

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("LOCAL_RANK", "-1")) != -1
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    if launched and not has_accelerator:
        use_cpu = True
    return PartialState(cpu=use_cpu)


def _batches(items: Sequence[Any], batch_size: int) -> list[list[Any]]:
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


@torch.no_grad()
def generate_test_images(
    pipeline: Callable[..., Any],
    dataset: Any,
    output_dir: str | os.PathLike,
    size: str | Sequence[int] = DEFAULT_SIZE,
    generation_size: str | Sequence[int] | None = None,
    num_inference_steps: int = 35,
    guidance_scale: float = 2.0,
    batch_size: int = 4,
    limit: int | None = None,
    seed: int = 0,
    target_parsing_label_map: str | None = None,
) -> list[str]:
    """Generates the pairs of `dataset` that have no image yet in `output_dir/generated/`, and writes the missing
    ground-truth copies (at `size`) to `output_dir/ground_truth/` (and with `target_parsing_label_map`, the targets'
    parsing maps in that label map, see `target_parsing_of`, to `output_dir/ground_truth_parsing/`).

    The pairs (the first `limit` ones when given) are split between the processes of `accelerate.PartialState`;
    each pair uses `torch.Generator().manual_seed(truepose.data.pair_seed(name, seed))`. `pipeline` is called as
    `pipeline(source_image=[PIL], target_pose=[(18, 3)], source_parsing=[(H, W)] | None, parsing_label_map=...,
    height=H, width=W, num_inference_steps=..., guidance_scale=..., generator=[torch.Generator]).images`.

    Returns:
        The pair names of the evaluated set (all processes' pairs, in data-set order).
    """
    size = parse_size(size)
    height, width = parse_size(generation_size) if generation_size is not None else size
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    if limit is not None and limit < 1:
        raise ValueError(f"`limit` must be >= 1 (or None for all pairs), got {limit}.")
    output_dir = Path(output_dir)
    generated_dir, ground_truth_dir = output_dir / GENERATED_DIRNAME, output_dir / GROUND_TRUTH_DIRNAME
    parsing_dir = output_dir / GROUND_TRUTH_PARSING_DIRNAME
    for folder in (generated_dir, ground_truth_dir) + ((parsing_dir,) if target_parsing_label_map is not None else ()):
        folder.mkdir(parents=True, exist_ok=True)

    num_pairs = len(dataset) if limit is None else min(limit, len(dataset))
    names = _pair_names(dataset)
    if names is None:  # not a PairFileDataset: learn the names from the items
        names = [dataset[i]["name"] for i in range(num_pairs)]
    names = names[:num_pairs]
    if len(set(names)) != len(names):
        raise ValueError("The data set has duplicate pair names; generated images are stored by pair name.")

    todo = [
        i
        for i, name in enumerate(names)
        if not (generated_dir / image_filename(name)).exists()
        or not (ground_truth_dir / image_filename(name)).exists()
        or (target_parsing_label_map is not None and not (parsing_dir / image_filename(name)).exists())
    ]
    state = partial_state()
    # Every process must see the same `todo` before any of them writes, or the split would differ between them.
    state.wait_for_everyone()
    if not todo:
        logger.info(f"All {num_pairs} pairs are already in {output_dir}.")
        return names
    logger.info(f"{len(todo)} of {num_pairs} pairs to write ({num_pairs - len(todo)} already done).")

    with state.split_between_processes(todo) as mine:
        batches = progress_bar(
            _batches(mine, batch_size), "Generating test pairs", leave=True, enabled=state.is_local_main_process
        )
        for batch in batches:
            to_generate = []
            for index in batch:
                item = dataset[index]
                if item["name"] != names[index]:
                    raise ValueError(
                        f"Item {index} of the data set is named {item['name']!r}, expected {names[index]!r}."
                    )
                _write_ground_truth(pipeline, item, output_dir, size, target_parsing_label_map)
                if not (generated_dir / image_filename(item["name"])).exists():
                    to_generate.append(item)
            _generate(pipeline, to_generate, generated_dir, height, width, num_inference_steps, guidance_scale, seed)
    state.wait_for_everyone()
    return names


def _write_ground_truth(
    pipeline: Any, item: dict[str, Any], output_dir: Path, size: tuple[int, int], parsing_label_map: str | None
) -> None:
    """The missing ground-truth files of a pair: its target at the evaluation `size` in `ground_truth/` and, with
    `parsing_label_map`, the target's parsing map (`target_parsing_of`) in `ground_truth_parsing/`."""
    gt_path = output_dir / GROUND_TRUTH_DIRNAME / image_filename(item["name"])
    if not gt_path.exists():
        save_image_atomic(resize_to_uint8(to_pil_image(item["target_image"], "target_image"), size), gt_path)
    parsing_path = output_dir / GROUND_TRUTH_PARSING_DIRNAME / image_filename(item["name"])
    if parsing_label_map is not None and not parsing_path.exists():
        with Image.open(gt_path) as image:
            ground_truth = np.asarray(image.convert("RGB"))
        save_parsing(target_parsing_of(pipeline, item, ground_truth, parsing_label_map), parsing_path)


def _generate(
    pipeline: Callable[..., Any],
    items: list[dict[str, Any]],
    generated_dir: Path,
    height: int,
    width: int,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
) -> None:
    """Generates `items` into `generated_dir`, one pipeline call per run of items sharing a label map and parsing
    availability, each pair with its own generator (`pair_seed(name, seed)`)."""
    key = lambda item: (str(item.get("label_map", "atr")), item.get("source_parsing") is None)  # noqa: E731
    for (label_map, no_parsing), group in itertools.groupby(items, key=key):
        group = list(group)
        images = pipeline(
            source_image=[to_pil_image(item["source_image"], "source_image") for item in group],
            target_pose=[np.asarray(item["target_keypoints"]) for item in group],
            source_parsing=None if no_parsing else [np.asarray(item["source_parsing"]) for item in group],
            parsing_label_map=label_map,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=[torch.Generator().manual_seed(pair_seed(item["name"], seed)) for item in group],
        ).images
        if len(images) != len(group):
            raise ValueError(f"The pipeline returned {len(images)} images for a batch of {len(group)}.")
        for item, image in zip(group, images):
            save_image_atomic(to_pil_image(image, "generated image"), generated_dir / image_filename(item["name"]))


def load_pipeline(model: str | os.PathLike, dtype: torch.dtype | None = None, device: Any = None) -> Any:
    """`TruePosePipeline.from_pretrained(model, dtype=...)` moved to `device`, progress bar off."""
    from truepose import TruePosePipeline

    pipeline = TruePosePipeline.from_pretrained(model, dtype=dtype)
    if device is not None:
        pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _deepfashion_test_set(
    data_root: Path, image_size: tuple[int, int], parsing_dir: Path | None, label_map: str
) -> torch.utils.data.Dataset:
    """`DeepFashionDataset(data_root, split="test", ...)`, images at the generation size."""
    from truepose.data import DeepFashionDataset

    return DeepFashionDataset(
        data_root, split="test", image_size=image_size, parsing_dir=parsing_dir, label_map=label_map
    )


def _regions_label_map(pipeline: Any, dataset: Any, label_map: str) -> str | None:
    """Label map of the target parsing maps the identity metrics will use: the data set's when its items have one,
    else the pipeline parser's; None (with a warning) when there is neither."""
    item = dataset[0]
    if item.get("target_parsing") is not None:
        return str(item.get("label_map", label_map))
    parser = getattr(pipeline, "parser", None)
    if parser is not None:
        return label_map_from_id2label(parser.config.id2label).name
    logger.warning(
        "Identity metrics per region skipped: the data set has no target parsing maps (no parsing_dir) and the "
        "pipeline has no parser."
    )
    return None


def _check_run_config(output_dir: Path, config: dict[str, Any]) -> None:
    """Writes `run_config.json`, or checks that an existing one (a run being resumed) has the same settings."""
    path = output_dir / RUN_CONFIG_NAME
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = {k: (previous.get(k), config.get(k)) for k in _RUN_CONFIG_KEYS if previous.get(k) != config.get(k)}
        if previous.get("model") is None or config.get("model") is None:  # an in-memory pipeline has no name
            changed.pop("model", None)
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"`output_dir` {str(output_dir)!r} holds images generated with other settings ({details}); resuming "
                "would mix them. Use another --output-dir, or delete that one."
            )
        return
    atomic_write(path, lambda f: f.write(json.dumps(config, indent=2) + "\n"), mode="w")


def evaluate(
    pipeline: Callable[..., Any] | str | os.PathLike,
    data_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    size: str | Sequence[int] = DEFAULT_SIZE,
    generation_size: str | Sequence[int] | None = None,
    num_inference_steps: int = 35,
    guidance_scale: float = 2.0,
    batch_size: int = 4,
    limit: int | None = None,
    seed: int = 0,
    parsing_dir: str | os.PathLike | None = None,
    label_map: str = "atr",
    fid_real_dir: str | os.PathLike | None = None,
    compute_fid: bool = True,
    inception_weights_path: str | os.PathLike | None = None,
    lpips_backbone_path: str | os.PathLike | None = None,
    ssim_256_sigma: float = SSIM_256_SIGMA_CFLD,
    compute_lpips: bool = True,
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    fid_dims: int = FID_DIMS,
    force_fid: bool = False,
    compute_regions: bool = True,
    fid_cache_dir: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    metrics_batch_size: int = 16,
    dataset: Any = None,
) -> dict[str, Any] | None:
    """Generates the DeepFashion test pairs of `data_root` (resumable) and scores them against the ground truth.

    Args:
        pipeline: a pipeline (any callable with the `TruePosePipeline` call signature) or a path / Hub id for
            `TruePosePipeline.from_pretrained`.
        data_root: DeepFashion root in the PIDM/CFLD layout (`test_highres/`, `fasion-resize-*-test.csv`).
        size: evaluation size `(H, W)` or `"HxW"`: 256x176 or 512x352.
        generation_size: size the pipeline generates at (default `size`); images are resized to `size` to be scored.
        parsing_dir: source parsing maps (`<stem>.png`); default `data_root/parsing` when it exists, else the
            pipeline's parser computes them.
        fid_real_dir: FID real set; default `data_root/train_highres` (all training images) when it exists.
        compute_fid: False skips FID (no Inception weights needed).
        compute_lpips: False skips LPIPS (no AlexNet weights needed).
        fid_backbone, fid_dims, force_fid: see `compute_metrics`.
        compute_regions: add the identity metrics per region of the target's parsing map (from the data set, else
            the pipeline's parser; skipped with a warning when neither has one).
        dataset: a ready data set to use instead of `DeepFashionDataset(data_root, split="test", ...)`.

    Every weight file and the FID image count are checked before anything is generated.

    Returns:
        The metrics dict of `compute_metrics` (with `run_config`) on the main process, None on the others.
    """
    # 1. Settings and every weight file the scores need, before anything is generated
    state = partial_state()
    size = parse_size(size)
    generation_size = parse_size(generation_size) if generation_size is not None else size
    if limit is not None and limit < 1:
        raise ValueError(f"`limit` must be >= 1 (or None for all pairs), got {limit}.")
    output_dir, data_root = Path(output_dir), Path(data_root)
    if parsing_dir is None and (data_root / "parsing").is_dir():
        parsing_dir = data_root / "parsing"
    if fid_real_dir is None and compute_fid and (data_root / "train_highres").is_dir():
        fid_real_dir = data_root / "train_highres"
    scoring = {  # every option of compute_metrics but the folders and the pairs
        "size": size,
        "fid_real_dir": fid_real_dir,
        "device": state.device,
        "batch_size": metrics_batch_size,
        "compute_fid": compute_fid,
        "compute_lpips": compute_lpips,
        "fid_backbone": fid_backbone,
        "fid_dims": fid_dims,
        "force_fid": force_fid,
        "inception_weights_path": inception_weights_path,
        "lpips_backbone_path": lpips_backbone_path,
        "ssim_256_sigma": ssim_256_sigma,
        "fid_cache_dir": fid_cache_dir,
    }
    _check_weight_files(scoring)

    # 2. The run's settings: written, or the same as those of the run being resumed
    model_name = str(pipeline) if isinstance(pipeline, str | os.PathLike) else None
    config = {
        "model": model_name,
        "data_root": str(data_root),
        "size": list(size),
        "generation_size": list(generation_size),
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
        "parsing_dir": None if parsing_dir is None else str(parsing_dir),
    }
    if state.is_main_process:
        _check_run_config(output_dir, config)
    state.wait_for_everyone()

    # 3. The test pairs (and the FID image count), the pipeline
    if dataset is None:
        dataset = _deepfashion_test_set(data_root, generation_size, parsing_dir, label_map)
    num_pairs = len(dataset) if limit is None else min(limit, len(dataset))
    if compute_fid:
        num_real = num_pairs if fid_real_dir is None else len(list_image_files(fid_real_dir))
        check_fid_image_counts(num_real, num_pairs, fid_dims, force=force_fid)
    if isinstance(pipeline, str | os.PathLike):
        if dtype is None:
            dtype = torch.float16 if state.device.type == "cuda" else torch.float32
        pipeline = load_pipeline(pipeline, dtype=dtype, device=state.device)
    regions_label_map = _regions_label_map(pipeline, dataset, label_map) if compute_regions and num_pairs else None

    # 4. Generate the missing images, then 5. score them on the main process
    names = generate_test_images(
        pipeline,
        dataset,
        output_dir,
        size=size,
        generation_size=generation_size,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        batch_size=batch_size,
        limit=limit,
        seed=seed,
        target_parsing_label_map=regions_label_map,
    )
    if not state.is_main_process:
        return None
    results = _score_run(output_dir, names, regions_label_map, label_map, scoring)
    results["run_config"] = config
    name = f"{model_name or type(pipeline).__name__} ({num_inference_steps} steps)"
    write_results(results, output_dir / METRICS_NAME, name=name)
    return results


def _check_weight_files(scoring: dict[str, Any]) -> None:
    """Step 1 of `evaluate`: the FID backbone and every weight file the `compute_metrics` options `scoring` need
    (`check_weight_files`), before anything is generated."""
    if scoring["compute_fid"]:
        check_fid_backbone(scoring["fid_backbone"], scoring["fid_dims"])
    check_weight_files(
        compute_lpips=scoring["compute_lpips"],
        compute_fid=scoring["compute_fid"],
        fid_backbone=scoring["fid_backbone"],
        lpips_backbone_path=scoring["lpips_backbone_path"],
        inception_weights_path=scoring["inception_weights_path"],
    )


def _score_run(
    output_dir: Path,
    names: Sequence[str],
    regions_label_map: str | None,
    label_map: str,
    scoring: dict[str, Any],
) -> dict[str, Any]:
    """Step 5 of `evaluate`: `compute_metrics` of the generated images of the pairs `names` against their ground
    truth in `output_dir`, with the identity metrics per region of `ground_truth_parsing/` when `regions_label_map`
    (their label map) is not None; `scoring` holds the other options of `compute_metrics`."""
    return compute_metrics(
        output_dir / GROUND_TRUTH_DIRNAME,
        output_dir / GENERATED_DIRNAME,
        names=[Path(image_filename(name)).stem for name in names],
        parsing_dir=None if regions_label_map is None else output_dir / GROUND_TRUTH_PARSING_DIRNAME,
        label_map=regions_label_map or label_map,
        **scoring,
    )


def check_arguments(args: argparse.Namespace) -> None:
    """What `evaluate` would find only after loading the model or generating: every path and name, before work."""
    from ..conditioning import get_label_map
    from ..data.preprocess import check_model_path

    parse_size(args.size)
    if args.generation_size is not None:
        parse_size(args.generation_size)
    get_label_map(args.label_map, "--label-map")
    check_model_path(args.model, "--model")
    for path, option in ((args.data_root, "--data-root"), (args.parsing_dir, "--parsing-dir")):
        if path is not None and not os.path.isdir(path):
            raise UsageError(f"{option} {path!r} is not a folder.")
    if args.fid_real_dir is not None and not args.no_fid and not os.path.isdir(args.fid_real_dir):
        raise UsageError(f"--fid-real-dir {args.fid_real_dir!r} is not a folder.")
    check_output_folder(args.output_dir, "--output-dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truepose evaluate",
        description="Generate all DeepFashion test pairs with a TruePose pipeline (resumable), then score them.",
    )
    parser.add_argument("--model", required=True, help="Pipeline folder or Hub id (TruePosePipeline.from_pretrained).")
    parser.add_argument("--data-root", required=True, help="DeepFashion root (PIDM/CFLD layout).")
    parser.add_argument("--output-dir", required=True, help="Where generated/, ground_truth/ and metrics go.")
    parser.add_argument("--size", default="256x176", help="Evaluation size HxW: 256x176 or 512x352.")
    parser.add_argument("--generation-size", default=None, help="Size HxW to generate at (default: --size).")
    parser.add_argument("--steps", type=positive_int, default=35, help="Denoising steps (default 35).")
    parser.add_argument("--guidance-scale", type=non_negative_float, default=2.0)
    parser.add_argument("--batch-size", type=positive_int, default=4, help="Pairs per pipeline call (per process).")
    parser.add_argument("--limit", type=positive_int, default=None, help="Only the first N test pairs.")
    parser.add_argument("--seed", type=seed_int, default=0, help="Base seed; each pair's seed is a hash of its name.")
    parser.add_argument(
        "--parsing-dir", default=None, help="Source parsing maps (default DATA_ROOT/parsing if present)."
    )
    parser.add_argument("--label-map", default="atr", help="Label table of the parsing maps (atr, lip, cihp, ...).")
    parser.add_argument(
        "--fid-real-dir", default=None, help="FID real set (default DATA_ROOT/train_highres: all training images)."
    )
    add_scoring_arguments(parser)
    parser.add_argument(
        "--no-regions", action="store_true", help="Skip the identity metrics per region of the target's parsing map."
    )
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="Default: float16 on GPU."
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """`truepose evaluate --model PATH --data-root ROOT --output-dir DIR [--size 256x176] [--steps 35]
    [--guidance-scale 2.0] [--batch-size 4] [--limit N] [--fid-real-dir DIR]`."""
    args = build_parser().parse_args(argv)
    check_arguments(args)
    results = evaluate(
        args.model,
        args.data_root,
        args.output_dir,
        size=args.size,
        generation_size=args.generation_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        batch_size=args.batch_size,
        limit=args.limit,
        seed=args.seed,
        parsing_dir=args.parsing_dir,
        label_map=args.label_map,
        fid_real_dir=args.fid_real_dir,
        compute_regions=not args.no_regions,
        **scoring_kwargs(args),
        dtype=getattr(torch, args.dtype) if args.dtype else None,
    )
    if results is not None:
        print(format_markdown(results, name=f"{args.model} ({args.steps} steps)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
