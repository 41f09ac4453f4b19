"""Cache human-parsing maps and keypoints of a folder of images, once.

::

    truepose preprocess IMAGE_DIR OUTPUT_DIR --parser PATH --detector PATH

writes, for every image ``IMAGE_DIR/<rel>/<stem>.<ext>``::

    OUTPUT_DIR/parsing/<rel>/<stem>.png      label ids as pixel values (the parser's label set)
    OUTPUT_DIR/keypoints/<rel>/<stem>.json   [[x, y, c] * 18], COCO-18, pixels of the image
    OUTPUT_DIR/keypoints.json                {"<rel>/<stem>.<ext>": [[x, y, c] * 18], ...} (all images)

Every file is written to a temp file and moved into place, so an interrupted run never leaves a truncated output;
a rerun skips every image whose outputs exist and only does the rest.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diffusers.utils import logging
from PIL import Image

from .._hub import is_local_path
from .._saving import atomic_write
from ..conditioning import as_keypoints
from ..conditioning.pose_files import read_keypoints_dir
from .common import IMAGE_EXTENSIONS, load_image, save_parsing

logger = logging.get_logger(__name__)

__all__ = ["PreprocessSummary", "list_images", "load_detector", "load_parser", "main", "preprocess"]

Parser = Callable[[list[Image.Image]], Sequence[np.ndarray]]
Detector = Callable[[Image.Image], np.ndarray]


@dataclass
class PreprocessSummary:
    """What a :func:`preprocess` run did."""

    images: int = 0
    parsed: int = 0
    detected: int = 0
    skipped: int = 0
    no_person: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def list_images(image_dir: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[str]:
    """Image files under ``image_dir`` (recursive, hidden files skipped), as sorted POSIX paths relative to it."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"`image_dir` {image_dir} is not a directory.")
    exclude = Path(exclude).resolve() if exclude is not None else None
    names = []
    for path in image_dir.rglob("*"):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        relative = path.relative_to(image_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if exclude is not None and exclude in path.resolve().parents:
            continue
        names.append(relative.as_posix())
    return sorted(names)


def check_model_path(name: Any, argument: str) -> None:
    """Refuses at once a model path that is a local path (`truepose._hub.is_local_path`: not of the Hub's
    ``org/name`` form, or under an existing folder) that does not exist, naming `argument`, instead of retrying it as
    a Hub id."""
    if isinstance(name, str | os.PathLike) and not os.path.exists(name) and is_local_path(name):
        raise FileNotFoundError(
            f"`{argument}`: the local path {os.fspath(name)!r} does not exist (a Hub id has the form org/name)."
        )


def load_parser(parser: Any, device: str | None = None) -> Parser:
    """Turn ``parser`` into a callable ``images -> label maps``.

    ``parser`` may be a folder / Hub id of a transformers semantic-segmentation checkpoint (e.g. Segformer, run by
    ``truepose.conditioning.parsing.parse_images``), a ``(model, processor)`` tuple, or already a callable taking a
    list of RGB PIL images and returning one ``(H, W)`` label map per image.
    """
    from truepose.conditioning.parsing import parse_images

    if isinstance(parser, str | os.PathLike):
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        check_model_path(parser, "parser")

        model = AutoModelForSemanticSegmentation.from_pretrained(parser).eval()
        processor = AutoImageProcessor.from_pretrained(parser)
        if device is not None:
            model.to(device)
        return lambda images: parse_images(model, processor, images)
    if isinstance(parser, tuple) and len(parser) == 2:
        model, processor = parser
        return lambda images: parse_images(model, processor, images)
    try:
        import torch

        if isinstance(parser, torch.nn.Module):
            raise TypeError("`parser` is a bare model; pass `(model, processor)` or a checkpoint path instead.")
    except ImportError:  # pragma: no cover
        pass
    if callable(parser):
        return parser
    raise TypeError(f"`parser` must be a path, a (model, processor) tuple or a callable, got {type(parser).__name__}.")


def load_detector(detector: Any, device: str | None = None, kind: str = "openpose") -> Detector:
    """Turn ``detector`` into a callable ``image -> (18, 3) keypoints`` (raising ``ValueError`` if nobody is found).

    ``detector`` may be a folder / Hub id for ``truepose.conditioning.pose.PoseDetector.from_pretrained`` or already
    such a callable (e.g. a ``PoseDetector``).
    """
    if isinstance(detector, str | os.PathLike):
        from truepose.conditioning.pose import PoseDetector

        return PoseDetector.from_pretrained(detector, kind=kind, device=device)
    if callable(detector):
        return detector
    raise TypeError(f"`detector` must be a path or a callable, got {type(detector).__name__}.")


def _parsing_path(output_dir: Path, name: str) -> Path:
    return output_dir / "parsing" / Path(name).with_suffix(".png")


def _keypoints_path(output_dir: Path, name: str) -> Path:
    return output_dir / "keypoints" / Path(name).with_suffix(".json")


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, separators=(",", ":"))), mode="w")


def preprocess(
    image_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    parser: Any = None,
    detector: Any = None,
    *,
    batch_size: int = 8,
    overwrite: bool = False,
    device: str | None = None,
    detector_kind: str = "openpose",
    merge_keypoints: bool = True,
) -> PreprocessSummary:
    """Compute and cache parsing maps and/or keypoints for every image of ``image_dir`` (resumable).

    Args:
        image_dir: Folder of images (searched recursively).
        output_dir: Where ``parsing/``, ``keypoints/`` and ``keypoints.json`` are written.
        parser: Human parser (see :func:`load_parser`), or ``None`` to skip parsing.
        detector: Pose detector (see :func:`load_detector`), or ``None`` to skip keypoints.
        batch_size: Images per parser call.
        overwrite: Recompute outputs that exist already.
        device: Device for models loaded from a path.
        detector_kind: ``"openpose"`` or ``"dwpose"`` for a detector loaded from a path.
        merge_keypoints: Also write ``output_dir/keypoints.json`` with the keypoints of every image.

    Returns:
        A :class:`PreprocessSummary`. Images where the detector finds nobody get all-missing keypoints (listed in
        ``no_person``); unreadable images are listed in ``failed`` and retried by the next run.
    """
    from ..cli import check_device, check_output_folder

    if parser is None and detector is None:
        raise ValueError("Nothing to do: pass a `parser`, a `detector` or both.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}.")
    if detector is not None and detector_kind not in ("openpose", "dwpose"):
        raise ValueError(f"`detector_kind` must be 'openpose' or 'dwpose', got {detector_kind!r}.")
    if device is not None:
        check_device(device, "`device`")
    check_model_path(parser, "parser")
    check_model_path(detector, "detector")
    check_output_folder(output_dir, "`output_dir`")
    image_dir, output_dir = Path(image_dir), Path(output_dir)
    names = list_images(image_dir, exclude=output_dir)
    summary = PreprocessSummary(images=len(names))

    todo_parse = [n for n in names if parser is not None and (overwrite or not _parsing_path(output_dir, n).is_file())]
    todo_detect = [
        n for n in names if detector is not None and (overwrite or not _keypoints_path(output_dir, n).is_file())
    ]
    todo = sorted(set(todo_parse) | set(todo_detect))
    summary.skipped = len(names) - len(todo)
    if summary.skipped:
        logger.info(f"{summary.skipped} of {len(names)} images already done in {output_dir}; skipping them.")
    parse = load_parser(parser, device) if todo_parse else None
    detect = load_detector(detector, device, detector_kind) if todo_detect else None
    need_parse, need_detect = set(todo_parse), set(todo_detect)

    for start in range(0, len(todo), batch_size):
        images = _read_images(image_dir, todo[start : start + batch_size], summary)
        _write_parsing_maps(parse, {n: images[n] for n in images if n in need_parse}, image_dir, output_dir, summary)
        _write_keypoints(detect, {n: images[n] for n in images if n in need_detect}, image_dir, output_dir, summary)
        done = min(start + batch_size, len(todo))
        if done == len(todo) or (start // batch_size) % 10 == 0:
            logger.info(f"Preprocessed {done}/{len(todo)} images.")

    if detector is not None and merge_keypoints:
        _write_merged_keypoints(output_dir, names)
    return summary


def _read_images(image_dir: Path, names: Sequence[str], summary: PreprocessSummary) -> dict[str, Image.Image]:
    """The images ``names`` of ``image_dir`` that can be read (RGB, in order); the others are logged and listed in
    ``summary.failed``."""
    images: dict[str, Image.Image] = {}
    for name in names:
        try:
            images[name] = load_image(image_dir / name)
        except Exception as error:
            logger.warning(f"Skipping unreadable image {image_dir / name}: {type(error).__name__}: {error}")
            summary.failed.append(str(image_dir / name))
    return images


def _write_parsing_maps(
    parse: Parser | None,
    images: dict[str, Image.Image],
    image_dir: Path,
    output_dir: Path,
    summary: PreprocessSummary,
) -> None:
    """Parses ``images`` (name -> image) in one ``parse`` call and writes each map to ``parsing/<name>.png``,
    counted in ``summary.parsed``; a map of another size than its image is refused."""
    if not images:
        return
    maps = parse(list(images.values()))
    if len(maps) != len(images):
        raise ValueError(f"`parser` returned {len(maps)} maps for {len(images)} images.")
    for (name, image), parsing in zip(images.items(), maps):
        parsing = np.asarray(parsing)
        if parsing.shape != (image.height, image.width):
            raise ValueError(
                f"`parser` returned a map of shape {parsing.shape} for {image_dir / name}, expected "
                f"{(image.height, image.width)}."
            )
        save_parsing(parsing, _parsing_path(output_dir, name))
        summary.parsed += 1


def _write_keypoints(
    detect: Detector | None,
    images: dict[str, Image.Image],
    image_dir: Path,
    output_dir: Path,
    summary: PreprocessSummary,
) -> None:
    """Detects the keypoints of each of ``images`` (name -> image) and writes them to ``keypoints/<name>.json``,
    counted in ``summary.detected``; an image with nobody gets all-missing keypoints (listed in
    ``summary.no_person``)."""
    for name, image in images.items():
        try:
            keypoints = detect(image)
        except ValueError as error:  # PoseDetector's "no person found"
            logger.warning(f"No person found in {image_dir / name} ({error}); writing all-missing keypoints.")
            keypoints = np.zeros((18, 3))
            summary.no_person.append(str(image_dir / name))
        keypoints = as_keypoints(keypoints, f"detector output for {image_dir / name}")
        _write_json(_keypoints_path(output_dir, name), np.round(keypoints, 2).tolist())
        summary.detected += 1


def _write_merged_keypoints(output_dir: Path, names: Sequence[str]) -> None:
    """``keypoints.json``: the keypoints of every image of ``names`` that has a ``keypoints/<name>.json`` (read back,
    so images done by earlier runs are included); problems of those files are logged."""
    keypoints, problems = read_keypoints_dir(output_dir / "keypoints")
    for problem in problems:
        logger.warning(problem)
    merged = {}
    for name in names:
        key = Path(name).with_suffix("").as_posix()
        if key in keypoints:
            merged[name] = np.round(keypoints[key], 2).tolist()
    _write_json(output_dir / "keypoints.json", merged)


def main(argv: list[str] | None = None) -> int:
    """``truepose preprocess IMAGE_DIR OUTPUT_DIR [--parser PATH] [--detector PATH]``; returns the exit code."""
    from ..cli import check_device, positive_int

    argument_parser = argparse.ArgumentParser(
        prog="truepose preprocess",
        description="Cache human-parsing maps (PNG label ids) and COCO-18 keypoints (JSON) for a folder of images. "
        "Resumable: images already done are skipped.",
    )
    argument_parser.add_argument("image_dir", help="folder of images (searched recursively)")
    argument_parser.add_argument("output_dir", help="writes parsing/, keypoints/ and keypoints.json here")
    argument_parser.add_argument("--parser", help="folder or Hub id of a Segformer-style human-parsing checkpoint")
    argument_parser.add_argument("--detector", help="folder or Hub id of pose-detector weights (controlnet_aux)")
    argument_parser.add_argument("--detector-kind", default="openpose", choices=("openpose", "dwpose"))
    argument_parser.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu")
    argument_parser.add_argument("--batch-size", type=positive_int, default=8, help="images per parser call")
    argument_parser.add_argument("--overwrite", action="store_true", help="recompute existing outputs")
    args = argument_parser.parse_args(argv)
    if args.parser is None and args.detector is None:
        argument_parser.error("nothing to do: give --parser, --detector or both")
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError as error:
            argument_parser.error(str(error))
    logging.set_verbosity_info()
    try:
        summary = preprocess(
            args.image_dir,
            args.output_dir,
            parser=args.parser,
            detector=args.detector,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            device=args.device,
            detector_kind=args.detector_kind,
        )
    except (FileNotFoundError, ValueError, OSError, TypeError) as error:
        logger.error(f"truepose preprocess: {error}")
        return 1
    logger.info(
        f"{summary.images} images: {summary.parsed} parsed, {summary.detected} with keypoints, {summary.skipped} "
        f"already done, {len(summary.no_person)} without a person, {len(summary.failed)} unreadable."
    )
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
