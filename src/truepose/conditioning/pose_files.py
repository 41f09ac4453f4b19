# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Pose files: TruePose's one reader of each keypoint file format, with one set of rules.

- one pose file (`read_pose_file`; app, CLI and animation): OpenPose `.json`, `.npy`, `.txt` / `.csv`;
- OpenPose JSON output (`read_openpose_json`), COCO-18 or BODY_25;
- the keypoint annotations of datasets (`read_keypoints_any`): a DeepFashion CSV (`read_deepfashion_annotations`),
  a `{image_name: [[x, y, c] * 18]}` JSON (`read_keypoints_json`) or a folder of per-image `<stem>.json` files
  (`read_keypoints_dir`, as `truepose preprocess` writes them).

The frame rule (CLI, app, animation and datasets alike): keypoints are pixels of the image they were taken in (their
*frame*). When the frame is known (an OpenPose JSON's ``canvas_height``/``canvas_width``, a frame the caller names
with ``--pose-frame``/``pose_frame``, the shipped gallery's 96x64, a dataset's annotation size) and differs from the
photo's size, the pose is fitted to the photo by `rescale_keypoints` (`fit_pose_to_frame`). Without a known frame the
keypoints are taken as pixels of the photo, and a pose that lies entirely in the photo's top-left quarter is refused
(it was made for a smaller image; the message says to name its frame).

The reading rules: the suffix decides the format, in any case (`.NPY` as `.npy`); JSON is read by `read_json` (a broken file
is a `ValueError` naming it); arrays are never unpickled; every pose goes through `as_keypoints` (missing joints
`[-1, -1, 0]`); every error names the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._errors import read_json
from .keypoints import NUM_KEYPOINTS, as_keypoints, check_size, present_joints, rescale_keypoints

# BODY_25 index of each COCO-18 joint (BODY_25 adds 8 mid-hip and 19-24 feet).
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

POSE_FILE_SUFFIXES: tuple[str, ...] = (".json", ".npy", ".txt", ".csv")
POSE_FILE_FORMATS = "OpenPose .json, (18, 2|3) or (T, 18, 2|3) .npy, or .txt/.csv with 18 rows `x y [confidence]`"


def _suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix of `path` (`".npy"` for `"a.NPY"`; `""` for none): the format of a pose file."""
    return os.path.splitext(os.fspath(path))[1].lower()


def is_pose_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a keypoint-file suffix (`POSE_FILE_SUFFIXES`, any case)."""
    return _suffix(path) in POSE_FILE_SUFFIXES


def read_pose_file(path: str | os.PathLike) -> np.ndarray:
    """Reads the poses of one keypoint file; the suffix decides the format, in any case (`.NPY` as `.npy`).

    - `.json`: OpenPose output, one pose per person (`read_openpose_json`);
    - `.npy`: a `(18, 2|3)` or `(T, 18, 2|3)` array (never unpickled);
    - `.txt` / `.csv`: 18 rows `x y [confidence]` (whitespace / comma separated).

    Returns:
        `np.ndarray` float32 `(T, 18, 3)`, `T >= 1` (see `as_keypoints` for missing joints).

    Raises:
        ValueError: another suffix, a file that does not hold such keypoints, or an OpenPose file without a person;
            the message names the file and the accepted formats. OSError: the file cannot be opened.
    """
    name = os.fspath(path)
    suffix = _suffix(name)
    if os.path.isdir(name):
        raise ValueError(f"The pose file {name!r} is a folder; pass one {POSE_FILE_FORMATS} file.")
    if suffix == ".json":
        poses = read_openpose_json(name)
        if not poses:
            raise ValueError(f"The OpenPose file {name!r} has no person (`people` is empty).")
        return np.stack(poses)
    try:
        if suffix == ".npy":
            array = np.load(name, allow_pickle=False)
        elif suffix in (".txt", ".csv"):
            array = np.loadtxt(name, delimiter="," if suffix == ".csv" else None, ndmin=2, dtype=np.float32)
        else:
            raise ValueError(f"suffix {suffix or '(none)'!r} is not a pose file")
        if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
            array.close()
            raise ValueError("it is an .npz archive, not one array")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"dtype {array.dtype} is not a real number type")
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or len(array) == 0:
            raise ValueError(f"shape {array.shape} is not (18, 2|3) or (T, 18, 2|3)")
        return np.stack([as_keypoints(pose, f"{os.path.basename(name)}[{i}]") for i, pose in enumerate(array)])
    except (ValueError, TypeError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"The pose file {name!r} is not readable as {POSE_FILE_FORMATS} ({error}).") from None


def pose_file_frame(path: str | os.PathLike) -> tuple[int, int] | None:
    """The `(height, width)` frame a pose file stores: an OpenPose JSON's ``canvas_height`` and ``canvas_width`` (the
    keys ControlNet's OpenPose editor writes); None for other files or without them."""
    if _suffix(path) != ".json" or os.path.isdir(path):
        return None
    data = read_json(path, f"OpenPose JSON {os.fspath(path)!r}")
    if not isinstance(data, dict) or "canvas_height" not in data or "canvas_width" not in data:
        return None
    try:
        return check_size(data["canvas_height"], data["canvas_width"])
    except (TypeError, ValueError):
        raise ValueError(
            f"OpenPose JSON {os.fspath(path)!r}: `canvas_height` and `canvas_width` must be positive integers, got "
            f"{data['canvas_height']!r} and {data['canvas_width']!r}."
        ) from None


def fit_pose_to_frame(
    poses: np.ndarray, size: tuple[int, int], frame: tuple[int, int] | None, what: str = "the pose file"
) -> np.ndarray:
    """Poses `(T, 18, 3)` (or one `(18, 3)`) in pixels of ``frame`` -> pixels of the photo `size` `(height, width)`,
    by the frame rule of this module: rescaled (`rescale_keypoints`) when ``frame`` is known and differs; taken as
    they are without a frame, unless every joint lies in the top-left quarter of the photo (refused, naming
    ``what``: the pose was made for a smaller image)."""
    poses = np.asarray(poses, dtype=np.float32)
    if frame is not None:
        if tuple(frame) == tuple(size):
            return poses
        fitted = [rescale_keypoints(pose, frame, size) for pose in poses.reshape(-1, NUM_KEYPOINTS, 3)]
        return np.stack(fitted).reshape(poses.shape)
    flat = poses.reshape(-1, NUM_KEYPOINTS, 3)
    joints = np.concatenate([pose[present_joints(pose), :2] for pose in flat])
    height, width = size
    if len(joints) >= 2 and joints[:, 0].max() < width / 2 and joints[:, 1].max() < height / 2:
        span = f"{int(np.ceil(joints[:, 0].max())) + 1}x{int(np.ceil(joints[:, 1].max())) + 1}"
        raise ValueError(
            f"{what}: every joint lies in the top-left {span} pixels of the {width}x{height} (width x height) photo, "
            "so the keypoints were taken in a smaller image. Name the size of that image (`--pose-frame "
            "HEIGHTxWIDTH`, or `pose_frame=(height, width)`; 96x64 for the shipped pose gallery) and the pose is "
            "fitted to the photo."
        )
    return poses


def read_pose_file_for(
    path: str | os.PathLike, size: tuple[int, int], pose_frame: tuple[int, int] | None = None
) -> np.ndarray:
    """The poses of a pose file (`read_pose_file`) fitted to a photo of `size` `(height, width)`
    (`fit_pose_to_frame`); the frame is ``pose_frame`` or the one the file stores (`pose_file_frame`)."""
    poses = read_pose_file(path)
    stored = pose_file_frame(path)
    if pose_frame is not None and stored is not None and tuple(pose_frame) != stored:
        raise ValueError(
            f"The pose file {os.fspath(path)!r} stores its frame {stored[0]}x{stored[1]} (canvas_height x "
            f"canvas_width), but the frame given is {pose_frame[0]}x{pose_frame[1]}; leave the frame out."
        )
    return fit_pose_to_frame(poses, size, pose_frame or stored, f"the pose file {os.fspath(path)!r}")


def read_openpose_json(path_or_dict: str | os.PathLike | dict) -> list[np.ndarray]:
    """Reads the people of an OpenPose JSON output (`people[*].pose_keypoints_2d`).

    `pose_keypoints_2d` is a flat `[x, y, c] * N` list: `N = 18` (COCO) is used as is, `N = 25` (BODY_25) is
    mapped to COCO-18 with `BODY25_TO_COCO18` (mid-hip and feet dropped). Joints with confidence 0 are missing.

    Returns:
        list of `(18, 3)` float32 keypoint arrays, one per person (empty when there is none).

    Raises:
        ValueError: the file is not JSON (truncated, binary) or not an OpenPose object; the message names the file.
    """
    if isinstance(path_or_dict, dict):
        data, where = path_or_dict, "OpenPose JSON"
    elif isinstance(path_or_dict, (str, os.PathLike)):
        where = f"OpenPose JSON {os.fspath(path_or_dict)!r}"
        data = read_json(path_or_dict, where)
        if not isinstance(data, dict):
            raise ValueError(
                f'{where} must hold an OpenPose object {{"people": [{{"pose_keypoints_2d": [...]}}]}}, got a '
                f"JSON {type(data).__name__}."
            )
    else:
        raise TypeError(f"`path_or_dict` must be a path or a dict, got {type(path_or_dict).__name__}.")
    people = data.get("people")
    if not isinstance(people, list):
        raise ValueError(f"{where} must have a `people` list.")
    result = []
    for index, person in enumerate(people):
        try:
            flat = np.asarray(person.get("pose_keypoints_2d", []), dtype=np.float32).ravel()
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"{where}: people[{index}] must be an object whose `pose_keypoints_2d` is a flat list of numbers."
            ) from None
        if flat.size % 3 != 0 or flat.size // 3 not in (18, 25):
            raise ValueError(
                f"{where}: people[{index}].pose_keypoints_2d must hold 18 (COCO) or 25 (BODY_25) [x, y, c] triples, "
                f"got {flat.size} values."
            )
        triples = flat.reshape(-1, 3)
        if len(triples) == 25:
            triples = triples[list(BODY25_TO_COCO18)]
        result.append(as_keypoints(triples))
    return result


def parse_deepfashion_keypoints(keypoints_y: str, keypoints_x: str) -> np.ndarray:
    """Parses one row of a DeepFashion (PIDM/CFLD) annotation CSV.

    Args:
        keypoints_y: JSON list of 18 ints (rows), `-1` for missing joints.
        keypoints_x: JSON list of 18 ints (columns), `-1` for missing joints.

    Returns:
        `np.ndarray` float32 `(18, 3)` `[x, y, confidence]`, in the annotation's frame (256x176 for the usual files).
    """
    try:
        ys = json.loads(keypoints_y) if isinstance(keypoints_y, str) else keypoints_y
        xs = json.loads(keypoints_x) if isinstance(keypoints_x, str) else keypoints_x
    except json.JSONDecodeError as error:
        raise ValueError(f"DeepFashion keypoints must be JSON lists of 18 ints: {error}") from None
    try:
        ys, xs = np.asarray(ys, dtype=np.float32), np.asarray(xs, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("`keypoints_y` and `keypoints_x` must hold numbers only.") from None
    if ys.shape != (NUM_KEYPOINTS,) or xs.shape != (NUM_KEYPOINTS,):
        raise ValueError(
            f"`keypoints_y` and `keypoints_x` must be lists of 18 values, got shapes {ys.shape} and {xs.shape}."
        )
    return as_keypoints(np.stack([xs, ys], axis=1))


def read_deepfashion_annotations(
    csv_path: str | os.PathLike, problems: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Reads a DeepFashion annotation file (`fasion-resize-annotation-{train,test}.csv`).

    The file has `sep=':'` and rows `name:keypoints_y:keypoints_x` (JSON lists of 18 ints, `-1` missing), after an
    optional header `name:keypoints_y:keypoints_x`. This is TruePose's one reader of these files.

    Args:
        csv_path: the annotation file.
        problems: where to collect one message (file, line, reason) per malformed row instead of raising on the
            first one; such rows are skipped.

    Returns:
        dict image name -> `(18, 3)` float32 keypoints (`[x, y, confidence]`, missing `[-1, -1, 0]`) in the file's
        frame (256x176 for the usual files; see `rescale_keypoints`).

    Raises:
        FileNotFoundError: no such file. ValueError: a malformed row (when `problems` is None).
    """
    path = os.fspath(csv_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Keypoint annotation file not found: {path} (expected `name:keypoints_y:keypoints_x` rows)."
        )
    annotations: dict[str, np.ndarray] = {}
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            line = line.strip()
            if not line or line_number == 1 and line.replace(" ", "").lower() == "name:keypoints_y:keypoints_x":
                continue
            try:
                fields = line.split(":")
                if len(fields) != 3:
                    raise ValueError(
                        f"expected 3 ':'-separated fields (name:keypoints_y:keypoints_x), got {len(fields)}"
                    )
                name, keypoints_y, keypoints_x = (field.strip() for field in fields)
                annotations[name] = parse_deepfashion_keypoints(keypoints_y, keypoints_x)
            except ValueError as error:
                message = f"{path}:{line_number}: malformed keypoint row: {error}: {line[:120]!r}"
                if problems is None:
                    raise ValueError(message) from None
                problems.append(message)
    return annotations


def read_keypoints_json(json_path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read ``{image_name: [[x, y, c] * 18]}`` (or ``[[x, y]] * 18``); returns ``(keypoints, problems)``."""
    json_path = Path(json_path)
    try:
        data = read_json(json_path, f"Keypoints file {json_path}")
    except FileNotFoundError:
        raise FileNotFoundError(f"Keypoints file not found: {json_path}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"Keypoints file {json_path} must hold a JSON object {{image_name: [[x, y, c] * 18]}}.")
    keypoints: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for name, value in data.items():
        try:
            keypoints[name] = as_keypoints(value, f"keypoints of {name!r}")
        except (TypeError, ValueError) as error:
            problems.append(f"{json_path}: malformed keypoints for {name!r}: {error}")
    return keypoints, problems


def read_keypoints_dir(directory: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read a folder of per-image ``<stem>.json`` files (``[[x, y, c] * 18]``, as written by ``preprocess``; any-case
    ``.json``, hidden files skipped); returns ``(keypoints, problems)`` keyed by the relative path without suffix."""
    directory = Path(directory)
    keypoints: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for path in sorted(directory.rglob("*")):
        if path.name.startswith(".") or _suffix(path) != ".json" or not path.is_file():
            continue
        key = path.relative_to(directory).with_suffix("").as_posix()
        try:
            keypoints[key] = as_keypoints(read_json(path, "the file"), f"keypoints in {path}")
        except (ValueError, TypeError) as error:
            problems.append(f"{path}: malformed keypoints: {error}")
    return keypoints, problems


def read_keypoints_any(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read the keypoint annotations of a dataset: a ``.json`` file (`read_keypoints_json`), a DeepFashion-style
    ``.csv`` (`read_deepfashion_annotations`) or a folder of ``<stem>.json`` files (`read_keypoints_dir`).

    Returns ``(keypoints, problems)``: image name -> float32 ``(18, 3)`` and one message per malformed entry.
    """
    path = Path(path)
    if path.is_dir():
        return read_keypoints_dir(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Keypoints not found: {path} (expected a JSON file {{image_name: [[x, y, c] * 18]}}, a DeepFashion-style "
            "CSV name:keypoints_y:keypoints_x, or a folder of <stem>.json files)."
        )
    if _suffix(path) == ".csv":
        problems: list[str] = []
        return read_deepfashion_annotations(path, problems), problems
    if _suffix(path) == ".json":
        return read_keypoints_json(path)
    raise ValueError(f"Keypoints file {path} must end in .json or .csv, or be a folder.")
