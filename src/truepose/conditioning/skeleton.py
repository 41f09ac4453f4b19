# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Skeleton drawing: COCO-18 keypoints -> the OpenPose skeleton image the pose encoder reads.

Skeletons are drawn with `controlnet_aux.open_pose.util.draw_bodypose` (17 limbs, the standard 18 colours on a black
canvas), i.e. exactly what ControlNet-OpenPose users know. Joints are drawn at the nearest pixel.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import PIL.Image

from .keypoints import as_keypoints, check_in_frame, check_size


def import_controlnet_aux_openpose():
    """Imports controlnet_aux's OpenPose module lazily (the package import costs ~3 s and is noisy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux.open_pose as open_pose
        from controlnet_aux.open_pose import util as open_pose_util
    return open_pose, open_pose_util


def render_skeleton(keypoints: np.ndarray, height: int, width: int) -> PIL.Image.Image:
    """Draws validated `(18, 3)` pixel keypoints with controlnet_aux (no frame check)."""
    _, open_pose_util = import_controlnet_aux_openpose()
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
    height, width = check_size(height, width)
    keypoints = as_keypoints(keypoints)
    check_in_frame(keypoints, height, width, "keypoints")
    return render_skeleton(keypoints, height, width)
