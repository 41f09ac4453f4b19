# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""COCO-18 keypoint arrays: their conventions, validation, frame checks, rescaling and retargeting.

Conventions (those of OpenPose, ControlNet and the DeepFashion PGPIS benchmarks):

- Keypoints are in **COCO-18 / OpenPose order** (0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left
  shoulder/elbow/wrist, 8-10 right hip/knee/ankle, 11-13 left hip/knee/ankle, 14/15 right/left eye, 16/17
  right/left ear), as an array of shape `(18, 2)` `[x, y]` or `(18, 3)` `[x, y, confidence]`.
- Coordinates are **pixels** of the image frame they belong to (`x` = column, `y` = row, integer `k` is the
  centre of pixel `k`). A joint is **missing** when its `x` or `y` is negative (DeepFashion writes `-1`) or its
  confidence is `<= 0` (OpenPose JSON writes `0, 0, 0`). Missing joints are never drawn.
- A joint may lie at most `OUT_OF_FRAME_TOLERANCE` (2 %) of the image side beyond the frame; further out is a
  `ValueError` (it almost always means keypoints of another resolution were passed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import logging

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


def present_joints(keypoints: np.ndarray) -> np.ndarray:
    """Bool `(18,)`: which joints of validated `(18, 3)` keypoints are present (confidence > 0)."""
    return keypoints[:, 2] > 0


def check_in_frame(keypoints: np.ndarray, height: int, width: int, argument_name: str) -> None:
    """Refuses validated `(18, 3)` keypoints that look normalised to [0, 1] or have a present joint more than
    `OUT_OF_FRAME_TOLERANCE` of the image side outside the `(height, width)` frame (`ValueError` naming
    `argument_name`)."""
    present = present_joints(keypoints)
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


def check_size(height: Any, width: Any) -> tuple[int, int]:
    """`(height, width)` as positive ints; `TypeError`/`ValueError` naming `height` or `width` otherwise."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"`{name}` must be a positive int, got {type(value).__name__} {value!r}.")
        if value <= 0:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return int(height), int(width)


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
    (from_h, from_w), (to_h, to_w) = check_size(*from_size), check_size(*to_size)
    present = present_joints(out)
    out[present, 0] = (out[present, 0] + 0.5) * (to_w / from_w) - 0.5
    out[present, 1] = (out[present, 1] + 0.5) * (to_h / from_h) - 0.5
    out[present, :2] = np.round(out[present, :2], 3)
    return out


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
    common = present_joints(target) & present_joints(source)

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
    present = present_joints(target)
    if anchor_joints:
        anchor_t = target[anchor_joints, :2].mean(axis=0)
        anchor_s = source[anchor_joints, :2].mean(axis=0)
        # Rounded to 1/1000 pixel so that float error never moves a joint across a pixel boundary.
        out[present, :2] = np.round((target[present, :2] - anchor_t) * scale + anchor_s, 3)
    else:
        logger.warning("retarget_keypoints: no joint is present in both poses; the target pose is not moved.")
    return out
