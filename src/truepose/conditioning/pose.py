# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Target-pose conditioning: keypoints, skeleton drawing, pose extraction and retargeting.

Conventions (those of OpenPose, ControlNet and the DeepFashion PGPIS benchmarks):

- Keypoints are in **COCO-18 / OpenPose order** (0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left
  shoulder/elbow/wrist, 8-10 right hip/knee/ankle, 11-13 left hip/knee/ankle, 14/15 right/left eye, 16/17
  right/left ear), as an array of shape `(18, 2)` `[x, y]` or `(18, 3)` `[x, y, confidence]`.
- Coordinates are **pixels** of the image frame they belong to (`x` = column, `y` = row, integer `k` is the
  centre of pixel `k`). A joint is **missing** when its `x` or `y` is negative (DeepFashion writes `-1`) or its
  confidence is `<= 0` (OpenPose JSON writes `0, 0, 0`). Missing joints are never drawn.
- Skeletons are drawn with `controlnet_aux.open_pose.util.draw_bodypose` (17 limbs, the standard 18 colours on a
  black canvas), i.e. exactly what ControlNet-OpenPose users know. Joints are drawn at the nearest pixel.
- A joint may lie at most `OUT_OF_FRAME_TOLERANCE` (2 %) of the image side beyond the frame; further out is a
  `ValueError` (it almost always means keypoints of another resolution were passed).

`prepare_pose_image` is the pipeline's single entry point for `target_pose`.
"""

from __future__ import annotations

import json
import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import logging

from .._errors import describe_error, read_json
from .._warnings import warn_caller
from .image import to_pil_image

logger = logging.get_logger(__name__)

NUM_KEYPOINTS = 18

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)

# BODY_25 index of each COCO-18 joint (BODY_25 adds 8 mid-hip and 19-24 feet).
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# Fraction of the image side a joint may lie beyond the frame (on any side) before `draw_skeleton` refuses it.
OUT_OF_FRAME_TOLERANCE = 0.02

# Coordinate value marking a missing joint (DeepFashion's annotation files write -1).
MISSING = -1.0

# Bones (COCO-18 index pairs) whose summed length measures a person's size for retargeting: neck-nose, the
# two neck-hip torso sides and the two hip-knee-ankle legs. Arms and shoulders are left out: they change most
# with pose and viewpoint.
RETARGET_BONES: tuple[tuple[int, int], ...] = ((1, 0), (1, 8), (1, 11), (8, 9), (9, 10), (11, 12), (12, 13))
# Joints whose centre anchors the person's position for retargeting: neck and hips.
RETARGET_ANCHOR_JOINTS: tuple[int, ...] = (1, 8, 11)

OPENPOSE_FILES: tuple[str, ...] = ("body_pose_model.pth",)
OPENPOSE_HUB_REPO = "lllyasviel/Annotators"
DWPOSE_POSE_FILE = "dw-ll_ucoco_384.pth"
DWPOSE_DET_FILE = "yolox_l_8x8_300e_coco.pth"
DWPOSE_HUB_REPO = "wanghaofan/dw-ll_ucoco_384"


def _import_controlnet_aux_openpose():
    """Imports controlnet_aux's OpenPose module lazily (the package import costs ~3 s and is noisy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux.open_pose as open_pose
        from controlnet_aux.open_pose import util as open_pose_util
    return open_pose, open_pose_util


# ----------------------------------------------------------------------------------------------------------------
# Keypoint arrays
# ----------------------------------------------------------------------------------------------------------------


def as_keypoints(keypoints: Any, argument_name: str = "keypoints") -> np.ndarray:
    """Validates and normalises a COCO-18 keypoint array.

    Args:
        keypoints: array-like (`np.ndarray`, list, `torch.Tensor`) of shape `(18, 2)` `[x, y]` or `(18, 3)`
            `[x, y, confidence]`, in pixels.
        argument_name: name used in error messages.

    Returns:
        `np.ndarray` float32 of shape `(18, 3)`. Present joints keep their coordinates (confidence 1 when none
        was given); missing joints (`x` or `y` equal to -1, non-finite `x`/`y`, or confidence `<= 0`) are
        `[-1, -1, 0]`. Other negative coordinates are kept: they lie left of / above the frame (see
        `OUT_OF_FRAME_TOLERANCE`).
    """
    if isinstance(keypoints, torch.Tensor):
        keypoints = keypoints.detach().cpu().float().numpy()
    elif isinstance(keypoints, PIL.Image.Image) or isinstance(keypoints, (str, bytes)):
        raise TypeError(
            f"`{argument_name}` must be an array of shape (18, 2) or (18, 3), got {type(keypoints).__name__}."
        )
    try:
        array = np.asarray(keypoints, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{argument_name}` must be an array of shape (18, 2) or (18, 3) of numbers, got {type(keypoints).__name__}."
        ) from None
    if array.ndim != 2 or array.shape[0] != NUM_KEYPOINTS or array.shape[1] not in (2, 3):
        raise ValueError(
            f"`{argument_name}` must have shape (18, 2) [x, y] or (18, 3) [x, y, confidence] in COCO-18 order, "
            f"got shape {tuple(array.shape)}."
        )
    out = np.empty((NUM_KEYPOINTS, 3), dtype=np.float32)
    out[:, :2] = array[:, :2]
    out[:, 2] = array[:, 2] if array.shape[1] == 3 else 1.0
    missing = ~np.isfinite(out).all(axis=1) | (out[:, 0] == MISSING) | (out[:, 1] == MISSING) | ~(out[:, 2] > 0)
    out[missing] = (MISSING, MISSING, 0.0)
    return out


def _present(keypoints: np.ndarray) -> np.ndarray:
    return keypoints[:, 2] > 0


def _check_in_frame(keypoints: np.ndarray, height: int, width: int, argument_name: str) -> None:
    present = _present(keypoints)
    if not present.any():
        return
    xy = keypoints[present, :2]
    if present.sum() >= 2 and max(height, width) > 4 and float(xy.max()) <= 1.0:
        raise ValueError(
            f"`{argument_name}` look normalised to [0, 1]; pass pixel coordinates of the ({height}, {width}) frame "
            "(multiply x by the width and y by the height)."
        )
    margin_x, margin_y = OUT_OF_FRAME_TOLERANCE * width, OUT_OF_FRAME_TOLERANCE * height
    x, y = keypoints[:, 0], keypoints[:, 1]
    beyond = (x < -margin_x) | (x > width - 1 + margin_x) | (y < -margin_y) | (y > height - 1 + margin_y)
    outside = np.flatnonzero(present & beyond)
    if len(outside) > 0:
        joints = ", ".join(
            f"{i} {KEYPOINT_NAMES[i]} at ({keypoints[i, 0]:g}, {keypoints[i, 1]:g})" for i in outside.tolist()
        )
        raise ValueError(
            f"`{argument_name}` has joints outside the (height, width) = ({height}, {width}) image: {joints}. "
            "Keypoints must be pixel coordinates of that frame; rescale keypoints annotated at another resolution "
            "(e.g. DeepFashion's 256x176) by width / old_width and height / old_height."
        )


def _check_size(height: Any, width: Any) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"`{name}` must be a positive int, got {type(value).__name__} {value!r}.")
        if value <= 0:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return int(height), int(width)


def _render(keypoints: np.ndarray, height: int, width: int) -> PIL.Image.Image:
    """Draws validated `(18, 3)` pixel keypoints with controlnet_aux (no frame check)."""
    _, open_pose_util = _import_controlnet_aux_openpose()
    from controlnet_aux.open_pose.body import Keypoint

    # controlnet_aux floors `x * W`; the half-pixel offset makes that a rounding of the pixel coordinate.
    body = [
        Keypoint(x=(float(x) + 0.5) / width, y=(float(y) + 0.5) / height) if c > 0 else None
        for x, y, c in keypoints.tolist()
    ]
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas = open_pose_util.draw_bodypose(canvas, body)
    return PIL.Image.fromarray(canvas, mode="RGB")


def draw_skeleton(keypoints: Any, height: int, width: int) -> PIL.Image.Image:
    """Draws an OpenPose (COCO-18) skeleton on a black RGB canvas.

    Args:
        keypoints: `(18, 2)` or `(18, 3)` pixel keypoints of the `(height, width)` frame; missing joints (and
            the limbs touching them) are skipped.
        height: canvas height in pixels.
        width: canvas width in pixels.

    Returns:
        `PIL.Image.Image` RGB of size `(width, height)`, drawn by `controlnet_aux.open_pose.util.draw_bodypose`.

    Raises:
        ValueError: wrong shape, or joints more than 2 % of the image side outside the frame.
    """
    height, width = _check_size(height, width)
    keypoints = as_keypoints(keypoints)
    _check_in_frame(keypoints, height, width, "keypoints")
    return _render(keypoints, height, width)


def retarget_keypoints(target: Any, source: Any) -> np.ndarray:
    """Moves and scales the target pose onto the source person.

    Rule (one isotropic scale, one translation; missing joints stay missing):

    - **size**: the summed length of the bones `RETARGET_BONES` (neck-nose, neck-right hip, neck-left hip,
      hip-knee and knee-ankle of both legs) that are present in *both* poses; the scale is
      `size(source) / size(target)`. With no common bone the scale is 1.
    - **position**: the mean of the neck and hips (`RETARGET_ANCHOR_JOINTS`) present in both poses; with none
      common, the mean of all joints present in both; with no common joint no translation.

    `retargeted = (target - anchor(target)) * scale + anchor(source)`.

    Args:
        target: `(18, 2)`/`(18, 3)` keypoints of the wanted pose.
        source: `(18, 2)`/`(18, 3)` keypoints of the source person, in the same pixel frame.

    Returns:
        `np.ndarray` float32 `(18, 3)`; coordinates may fall outside the frame.
    """
    target = as_keypoints(target, "target")
    source = as_keypoints(source, "source")
    common = _present(target) & _present(source)

    size_t = size_s = 0.0
    for a, b in RETARGET_BONES:
        if common[a] and common[b]:
            size_t += float(np.linalg.norm(target[a, :2] - target[b, :2]))
            size_s += float(np.linalg.norm(source[a, :2] - source[b, :2]))
    if size_t > 0 and size_s > 0:
        scale = size_s / size_t
    else:
        logger.warning("retarget_keypoints: no bone is present in both poses; the target pose is not rescaled.")
        scale = 1.0

    anchor_joints = [j for j in RETARGET_ANCHOR_JOINTS if common[j]]
    if not anchor_joints:
        anchor_joints = np.flatnonzero(common).tolist()
    out = target.copy()
    present = _present(target)
    if anchor_joints:
        anchor_t = target[anchor_joints, :2].mean(axis=0)
        anchor_s = source[anchor_joints, :2].mean(axis=0)
        # Rounded to 1/1000 pixel so that float error never moves a joint across a pixel boundary.
        out[present, :2] = np.round((target[present, :2] - anchor_t) * scale + anchor_s, 3)
    else:
        logger.warning("retarget_keypoints: no joint is present in both poses; the target pose is not moved.")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Images and the pipeline's entry point
# ----------------------------------------------------------------------------------------------------------------


def _is_number_table(value: Any) -> bool:
    """A list/tuple of rows, each a list/tuple/1-D array of real numbers (e.g. 18 `(x, y)` tuples)."""
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(
            isinstance(row, (list, tuple, np.ndarray, torch.Tensor))
            and np.ndim(row) == 1
            and all(isinstance(v, numbers.Real) or np.ndim(v) == 0 and not isinstance(v, (str, bytes)) for v in row)
            for row in value
        )
    )


def _is_keypoints(value: Any) -> bool:
    """Keypoints rather than an image: a number table, or a 2-D array/tensor `(K, 2|3)` (K joints)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim == 2 and value.shape[-1] in (2, 3)
    return _is_number_table(value)


def _is_keypoint_batch(value: Any) -> bool:
    return (
        isinstance(value, (np.ndarray, torch.Tensor))
        and value.ndim == 3
        and value.shape[1] == NUM_KEYPOINTS
        and (value.shape[2] in (2, 3))
    )


def as_pose_batch(target_pose: Any, argument_name: str = "target_pose") -> list:
    """Splits `target_pose` into a list of single poses (the batching table of docs/inputs.md).

    - an array/tensor `(N, 18, 2|3)`: N keypoint sets; an array `(N, H, W, 3)` or tensor `(N, 3, H, W)`: N images;
    - a list/tuple of number rows (e.g. 18 `(x, y)` tuples, or an `(18, 3)` nested list): **one** pose;
    - any other list/tuple: one pose per element (each a single pose: keypoints or one image);
    - anything else (PIL image, `(18, 2|3)` keypoints, `(H, W, 3)` array, `(3, H, W)` tensor): one pose.

    Raises:
        ValueError: an empty list, or a list element that is itself a batch.
    """
    if isinstance(target_pose, (np.ndarray, torch.Tensor)):
        return list(target_pose) if _is_keypoint_batch(target_pose) or target_pose.ndim == 4 else [target_pose]
    if not isinstance(target_pose, (list, tuple)):
        return [target_pose]
    if len(target_pose) == 0:
        raise ValueError(f"`{argument_name}` is an empty list; pass at least one pose.")
    if _is_number_table(target_pose):
        return [target_pose]
    for index, pose in enumerate(target_pose):
        if _is_keypoint_batch(pose) or isinstance(pose, (np.ndarray, torch.Tensor)) and pose.ndim == 4:
            raise ValueError(
                f"`{argument_name}[{index}]` holds a batch of shape {tuple(pose.shape)}; each list element must be one "
                "pose (keypoints (18, 2|3) or one image). Pass the batch itself, not a list of batches."
            )
    return list(target_pose)


def rescale_keypoints(keypoints: Any, from_size: Sequence[int], to_size: Sequence[int]) -> np.ndarray:
    """Maps pixel keypoints from a `(height, width)` frame to another, as an image resize maps its pixels.

    Pixel centres are aligned (integer `k` is the centre of pixel `k`): `x' = (x + 0.5) * to_w / from_w - 0.5`,
    likewise `y`. This is the one rescaling rule of TruePose (datasets, pose detection, annotation files).

    Args:
        keypoints: `(18, 2)`/`(18, 3)` pixel keypoints of the `from_size` frame.
        from_size: `(height, width)` of the keypoints' frame.
        to_size: `(height, width)` of the new frame.

    Returns:
        `np.ndarray` float32 `(18, 3)`; missing joints stay `[-1, -1, 0]`. Coordinates are rounded to 1/1000 pixel.
    """
    out = as_keypoints(keypoints)
    (from_h, from_w), (to_h, to_w) = _check_size(*from_size), _check_size(*to_size)
    present = _present(out)
    out[present, 0] = (out[present, 0] + 0.5) * (to_w / from_w) - 0.5
    out[present, 1] = (out[present, 1] + 0.5) * (to_h / from_h) - 0.5
    out[present, :2] = np.round(out[present, :2], 3)
    return out


def prepare_pose_image(
    target_pose: Any,
    height: int,
    width: int,
    *,
    is_photo: bool = False,
    detector: Callable[[PIL.Image.Image], Any] | None = None,
    source_keypoints: Any | None = None,
    retarget: bool | None = None,
    argument_name: str = "target_pose",
) -> PIL.Image.Image:
    """Turns any accepted form of `target_pose` into the RGB skeleton image the pose encoder reads.

    Args:
        target_pose: one of
            - a skeleton image (`PIL.Image.Image`, `np.ndarray` `(H, W, 3)` uint8 or float in [0, 1],
              `torch.Tensor` `(3, H, W)` in [0, 1]): converted to RGB and resized (bilinear) to `(width, height)`;
            - keypoints `(18, 2)`/`(18, 3)` (array, list or tensor) in pixels of the `(height, width)` frame:
              drawn with `draw_skeleton`;
            - with `is_photo=True`, a photo of a person (same image types): `detector` extracts the keypoints,
              which are mapped to the `(height, width)` frame (as if the photo were resized to it) and drawn.
        height: output height in pixels.
        width: output width in pixels.
        is_photo: whether an image `target_pose` is a photo to extract the pose from (not a skeleton).
        detector: a `PoseDetector` (or any callable image -> `(18, 2|3)` pixel keypoints of that image),
            required when `is_photo=True`.
        source_keypoints: `(18, 2)`/`(18, 3)` keypoints of the source person in the `(height, width)` frame, used
            for retargeting.
        retarget: whether to move/scale the target pose onto the source person (`retarget_keypoints`). Defaults
            to `True` for a photo with `source_keypoints` given, `False` otherwise. Needs keypoints (not a
            skeleton image) and `source_keypoints`.
        argument_name: the name error messages give `target_pose` (e.g. `poses[3]` for one pose of a sequence).

    Returns:
        `PIL.Image.Image` RGB of size `(width, height)`.
    """
    height, width = _check_size(height, width)
    if retarget and source_keypoints is None:
        raise ValueError("`retarget=True` needs `source_keypoints` (the source person's (18, 2|3) keypoints).")
    if source_keypoints is not None:
        source_keypoints = as_keypoints(source_keypoints, "source_keypoints")

    if _is_keypoints(target_pose):
        if is_photo:
            raise ValueError(f"`is_photo=True` expects `{argument_name}` to be an image, got a keypoint array.")
        keypoints = as_keypoints(target_pose, argument_name)
        _check_in_frame(keypoints, height, width, argument_name)
        if not _present(keypoints).any():
            warn_caller(
                f"`{argument_name}` has no visible joint (all missing: -1, NaN or confidence 0); the skeleton is an "
                "empty black image and the pose is left to the model."
            )
        from_photo = False
    elif isinstance(target_pose, (PIL.Image.Image, np.ndarray, torch.Tensor)):
        image = to_pil_image(target_pose, argument_name)
        if not is_photo:
            if retarget:
                raise ValueError(
                    f"`retarget=True` needs `{argument_name}` as keypoints or a photo (with `is_photo=True`); a "
                    "skeleton image cannot be retargeted."
                )
            if image.size != (width, height):
                if abs((image.height / image.width) / (height / width) - 1) > 0.01:
                    warn_caller(
                        f"`{argument_name}` skeleton image of size (height, width) = ({image.height}, {image.width}) "
                        f"has another aspect ratio than the output ({height}, {width}); it is stretched. Draw it at "
                        "the output's aspect ratio (or pass keypoints)."
                    )
                image = image.resize((width, height), resample=PIL.Image.BILINEAR)
            return image
        if detector is None:
            raise ValueError(
                "`is_photo=True` needs a pose `detector`, e.g. "
                "`truepose.conditioning.PoseDetector.from_pretrained('lllyasviel/Annotators')` (or a local folder "
                "holding body_pose_model.pth)."
            )
        detected = as_keypoints(detector(image), "detector output")
        if not _present(detected).any():
            raise ValueError(f"no person found in `{argument_name}` by the pose detector.")
        keypoints = rescale_keypoints(detected, (image.height, image.width), (height, width))
        from_photo = True
    else:
        raise TypeError(
            f"`{argument_name}` must be keypoints ((18, 2) or (18, 3) array, list or tensor), or a skeleton/photo "
            "image (PIL.Image.Image, np.ndarray (H, W, 3), torch.Tensor (3, H, W)), got "
            f"{type(target_pose).__name__}."
        )

    if retarget is None:
        retarget = from_photo and source_keypoints is not None
    if retarget:
        keypoints = retarget_keypoints(keypoints, source_keypoints)
        present = _present(keypoints)
        xy = keypoints[present, :2]
        if len(xy) and ((xy < 0).any() or (xy[:, 0] > width - 1).any() or (xy[:, 1] > height - 1).any()):
            logger.warning("The retargeted target pose extends beyond the image; limbs are cut at the border.")
    return _render(keypoints, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Annotation readers
# ----------------------------------------------------------------------------------------------------------------


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


POSE_FILE_SUFFIXES: tuple[str, ...] = (".json", ".npy", ".txt", ".csv")
POSE_FILE_FORMATS = "OpenPose .json, (18, 2|3) or (T, 18, 2|3) .npy, or .txt/.csv with 18 rows `x y [confidence]`"


def is_pose_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a keypoint-file suffix (`POSE_FILE_SUFFIXES`, any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in POSE_FILE_SUFFIXES


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
    suffix = os.path.splitext(name)[1].lower()
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


# ----------------------------------------------------------------------------------------------------------------
# Pose detection
# ----------------------------------------------------------------------------------------------------------------


def _looks_like_local_path(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
        or os.path.exists(name)
    )


def _resolve_files(
    pretrained_model_name_or_path: str | os.PathLike,
    filenames: Sequence[str],
    cache_dir: str | None,
    local_files_only: bool,
    what: str,
) -> list[str]:
    """Returns local paths of `filenames` from a folder or a Hub repo, or raises a short OSError saying what to do."""
    name = os.fspath(pretrained_model_name_or_path)
    listing = ", ".join(filenames)
    if os.path.isdir(name):
        missing = [f for f in filenames if not os.path.isfile(os.path.join(name, f))]
        if missing:
            raise OSError(
                f"{what}: the folder {name!r} lacks {', '.join(missing)}. Download {listing} (e.g. from "
                f"https://huggingface.co/{OPENPOSE_HUB_REPO if what.startswith('openpose') else DWPOSE_HUB_REPO}) and "
                f"put them in {name!r}."
            )
        return [os.path.join(name, f) for f in filenames]
    if _looks_like_local_path(name):
        raise OSError(f"{what}: the folder {name!r} does not exist. Create it and put {listing} in it.")
    from huggingface_hub import hf_hub_download

    paths = []
    for filename in filenames:
        try:
            paths.append(hf_hub_download(name, filename, cache_dir=cache_dir, local_files_only=local_files_only))
        except Exception as error:  # offline, missing repo or file, auth: all end the same way for the user
            raise OSError(
                f"{what}: could not get {filename!r} from the Hub repo {name!r} ({describe_error(error)}). "
                f"Without network, download {listing} from https://huggingface.co/{name} and pass the folder "
                "holding them, e.g. `PoseDetector.from_pretrained('/path/to/annotators')`."
            ) from None
    return paths


def _mm_stack_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(module) is not None for module in ("mmcv", "mmdet", "mmpose"))


class PoseDetector:
    """Extracts COCO-18 pixel keypoints of a person from a photo with controlnet_aux (OpenPose or DWpose).

    Only the body model is used (TruePose draws 18 body joints), so an OpenPose folder needs only
    `body_pose_model.pth`; hand and face models are not loaded.

    Args:
        detector: a controlnet_aux `OpenposeDetector` or `DWposeDetector`.
        kind: `"openpose"` or `"dwpose"`.
        detect_resolution: the short side the photo is resized to before detection (controlnet_aux's default,
            512; sizes are rounded to multiples of 64). Keypoints are mapped back to the photo's own frame.
    """

    def __init__(self, detector: Any, kind: str = "openpose", detect_resolution: int = 512):
        if kind not in ("openpose", "dwpose"):
            raise ValueError(f"`kind` must be 'openpose' or 'dwpose', got {kind!r}.")
        self.detector = detector
        self.kind = kind
        self.detect_resolution = detect_resolution

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = OPENPOSE_HUB_REPO,
        kind: str = "openpose",
        *,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        device: str | torch.device | None = None,
        detect_resolution: int = 512,
    ) -> PoseDetector:
        """Loads a detector from a local folder or a Hub repo.

        Args:
            pretrained_model_name_or_path: folder or Hub repo id. `kind="openpose"`: holds `body_pose_model.pth`
                (Hub: `lllyasviel/Annotators`). `kind="dwpose"`: holds `dw-ll_ucoco_384.pth` and optionally
                `yolox_l_8x8_300e_coco.pth` (Hub: `wanghaofan/dw-ll_ucoco_384`; needs mmcv, mmdet, mmpose).
            kind: `"openpose"` or `"dwpose"`.
            cache_dir, local_files_only: passed to `huggingface_hub.hf_hub_download`.
            device: device to move the model to.
            detect_resolution: see the class docstring.
        """
        if kind == "openpose":
            (body_path,) = _resolve_files(
                pretrained_model_name_or_path, OPENPOSE_FILES, cache_dir, local_files_only, "openpose"
            )
            open_pose, _ = _import_controlnet_aux_openpose()
            try:
                body = open_pose.Body(body_path)
            except Exception as error:
                raise OSError(
                    f"openpose: {body_path!r} is not a valid OpenPose body model ({describe_error(error)})."
                ) from None
            detector = open_pose.OpenposeDetector(body)
        elif kind == "dwpose":
            if not _mm_stack_available():
                raise ImportError(
                    "kind='dwpose' needs the OpenMMLab stack: `pip install -U openmim && mim install mmengine "
                    "'mmcv>=2.0.1' 'mmdet>=3.1.0' 'mmpose>=1.1.0'`. Use kind='openpose' otherwise."
                )
            (pose_path,) = _resolve_files(
                pretrained_model_name_or_path, (DWPOSE_POSE_FILE,), cache_dir, local_files_only, "dwpose"
            )
            det_path = os.path.join(os.path.dirname(pose_path), DWPOSE_DET_FILE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from controlnet_aux.dwpose import DWposeDetector
            detector = DWposeDetector(
                det_ckpt=det_path if os.path.isfile(det_path) else None,
                pose_ckpt=pose_path,
                device=str(device) if device is not None else "cpu",
            )
        else:
            raise ValueError(f"`kind` must be 'openpose' or 'dwpose', got {kind!r}.")
        pose_detector = cls(detector, kind=kind, detect_resolution=detect_resolution)
        if device is not None:
            pose_detector.to(device)
        return pose_detector

    def to(self, device: str | torch.device) -> PoseDetector:
        if self.kind == "openpose":
            self.detector.body_estimation.to(device)
        else:
            self.detector.to(device)
        return self

    def detect(self, image: Any) -> list[np.ndarray]:
        """Detects all people.

        Args:
            image: photo (`PIL.Image.Image`, `np.ndarray` `(H, W, 3)`, `torch.Tensor` `(3, H, W)` in [0, 1]).

        Returns:
            list of `(18, 3)` float32 keypoint arrays in pixels of `image`'s own frame (possibly empty).
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from controlnet_aux.util import resize_image
        rgb = np.asarray(to_pil_image(image, "image"))
        height, width = rgb.shape[:2]
        resized = resize_image(rgb, self.detect_resolution)  # multiples of 64
        rh, rw = resized.shape[:2]
        people = []
        if self.kind == "openpose":
            for pose in self.detector.detect_poses(resized):  # keypoints normalised by (rw, rh)
                keypoints = np.array(
                    [(k.x * rw, k.y * rh, 1.0) if k is not None else (-1.0, -1.0, 0.0) for k in pose.body.keypoints],
                    dtype=np.float32,
                )
                people.append(keypoints)
        else:
            with torch.no_grad():
                candidate, scores = self.detector.pose_estimation(resized[:, :, ::-1].copy())  # BGR, pixels
            for xy, score in zip(candidate[:, :NUM_KEYPOINTS], scores[:, :NUM_KEYPOINTS]):
                visible = score > 0.3  # controlnet_aux's threshold
                keypoints = np.full((NUM_KEYPOINTS, 3), (-1.0, -1.0, 0.0), dtype=np.float32)
                keypoints[visible, :2] = xy[visible]
                keypoints[visible, 2] = score[visible]
                people.append(keypoints)
        people = [rescale_keypoints(as_keypoints(p), (rh, rw), (height, width)) for p in people]
        return [p for p in people if _present(p).any()]

    def __call__(self, image: Any) -> np.ndarray:
        """Keypoints `(18, 3)` (pixels of `image`) of the largest person (by keypoint bounding-box area).

        Raises:
            ValueError: no person found in the image.
        """
        people = self.detect(image)
        if not people:
            raise ValueError(
                f"no person found in the image by the {self.kind} detector; pass the target pose as keypoints or a "
                "skeleton image instead."
            )

        def area(keypoints: np.ndarray) -> float:
            xy = keypoints[_present(keypoints), :2]
            return float(np.prod(xy.max(axis=0) - xy.min(axis=0)))

        return max(people, key=area)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, detect_resolution={self.detect_resolution})"
