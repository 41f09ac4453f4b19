# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Target-pose conditioning: `prepare_pose_image`, the pipeline's single entry point for `target_pose`, and
`as_pose_batch`, which splits a batch of poses.

The pieces live in their own modules and are re-exported here (`truepose.conditioning.pose.X` keeps working):

- `keypoints`: COCO-18 keypoint arrays (conventions, `as_keypoints`, frame checks, `rescale_keypoints`,
  `retarget_keypoints`);
- `skeleton`: drawing keypoints as an OpenPose skeleton (`draw_skeleton`);
- `pose_files`: the keypoint file readers (`read_pose_file`, `read_openpose_json`, `read_deepfashion_annotations`);
- `detector`: `PoseDetector`, keypoints from a photo.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import logging

from .._warnings import warn_caller
from .detector import (
    DWPOSE_DET_FILE,
    DWPOSE_HUB_REPO,
    DWPOSE_POSE_FILE,
    OPENPOSE_FILES,
    OPENPOSE_HUB_REPO,
    PoseDetector,
)
from .image import same_aspect_ratio, to_pil_image
from .keypoints import (
    KEYPOINT_NAMES,
    MISSING,
    NUM_KEYPOINTS,
    OUT_OF_FRAME_TOLERANCE,
    RETARGET_ANCHOR_JOINTS,
    RETARGET_BONES,
    as_keypoints,
    check_in_frame,
    check_size,
    present_joints,
    rescale_keypoints,
    retarget_keypoints,
)
from .pose_files import (
    BODY25_TO_COCO18,
    POSE_FILE_FORMATS,
    POSE_FILE_SUFFIXES,
    is_pose_file,
    parse_deepfashion_keypoints,
    read_deepfashion_annotations,
    read_openpose_json,
    read_pose_file,
)
from .skeleton import draw_skeleton, render_skeleton

__all__ = [
    "BODY25_TO_COCO18",
    "DWPOSE_DET_FILE",
    "DWPOSE_HUB_REPO",
    "DWPOSE_POSE_FILE",
    "KEYPOINT_NAMES",
    "MISSING",
    "NUM_KEYPOINTS",
    "OPENPOSE_FILES",
    "OPENPOSE_HUB_REPO",
    "OUT_OF_FRAME_TOLERANCE",
    "POSE_FILE_FORMATS",
    "POSE_FILE_SUFFIXES",
    "RETARGET_ANCHOR_JOINTS",
    "RETARGET_BONES",
    "PoseDetector",
    "as_keypoints",
    "as_pose_batch",
    "draw_skeleton",
    "is_pose_file",
    "parse_deepfashion_keypoints",
    "prepare_pose_image",
    "read_deepfashion_annotations",
    "read_openpose_json",
    "read_pose_file",
    "rescale_keypoints",
    "retarget_keypoints",
]

logger = logging.get_logger(__name__)


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
    height, width = check_size(height, width)
    if retarget and source_keypoints is None:
        raise ValueError("`retarget=True` needs `source_keypoints` (the source person's (18, 2|3) keypoints).")
    if source_keypoints is not None:
        source_keypoints = as_keypoints(source_keypoints, "source_keypoints")

    if _is_keypoints(target_pose):
        if is_photo:
            raise ValueError(f"`is_photo=True` expects `{argument_name}` to be an image, got a keypoint array.")
        keypoints = _given_keypoints(target_pose, height, width, argument_name)
        from_photo = False
    elif isinstance(target_pose, (PIL.Image.Image, np.ndarray, torch.Tensor)):
        image = to_pil_image(target_pose, argument_name)
        if not is_photo:
            if retarget:
                raise ValueError(
                    f"`retarget=True` needs `{argument_name}` as keypoints or a photo (with `is_photo=True`); a "
                    "skeleton image cannot be retargeted."
                )
            return _fit_skeleton_image(image, height, width, argument_name)
        keypoints = _detected_keypoints(image, detector, height, width, argument_name)
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
        keypoints = _retargeted(keypoints, source_keypoints, height, width)
    return render_skeleton(keypoints, height, width)


def _given_keypoints(target_pose: Any, height: int, width: int, argument_name: str) -> np.ndarray:
    """Keypoints given as `target_pose`, validated and checked against the `(height, width)` frame."""
    keypoints = as_keypoints(target_pose, argument_name)
    check_in_frame(keypoints, height, width, argument_name)
    if not present_joints(keypoints).any():
        warn_caller(
            f"`{argument_name}` has no visible joint (all missing: -1, NaN or confidence 0); the skeleton is an "
            "empty black image and the pose is left to the model."
        )
    return keypoints


def _fit_skeleton_image(image: PIL.Image.Image, height: int, width: int, argument_name: str) -> PIL.Image.Image:
    """A skeleton image resized (bilinear) to `(width, height)`; another aspect ratio is stretched with a warning."""
    if image.size != (width, height):
        if not same_aspect_ratio((image.height, image.width), (height, width)):
            warn_caller(
                f"`{argument_name}` skeleton image of size (height, width) = ({image.height}, {image.width}) "
                f"has another aspect ratio than the output ({height}, {width}); it is stretched. Draw it at "
                "the output's aspect ratio (or pass keypoints)."
            )
        image = image.resize((width, height), resample=PIL.Image.BILINEAR)
    return image


def _detected_keypoints(
    image: PIL.Image.Image, detector: Callable | None, height: int, width: int, argument_name: str
) -> np.ndarray:
    """The keypoints `detector` finds in the photo `image`, mapped to the `(height, width)` frame."""
    if detector is None:
        raise ValueError(
            "`is_photo=True` needs a pose `detector`, e.g. "
            "`truepose.conditioning.PoseDetector.from_pretrained('lllyasviel/Annotators')` (or a local folder "
            "holding body_pose_model.pth)."
        )
    detected = as_keypoints(detector(image), "detector output")
    if not present_joints(detected).any():
        raise ValueError(f"no person found in `{argument_name}` by the pose detector.")
    return rescale_keypoints(detected, (image.height, image.width), (height, width))


def _retargeted(keypoints: np.ndarray, source_keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """`retarget_keypoints` onto the source person; a pose then beyond the `(height, width)` image is logged."""
    keypoints = retarget_keypoints(keypoints, source_keypoints)
    xy = keypoints[present_joints(keypoints), :2]
    if len(xy) and ((xy < 0).any() or (xy[:, 0] > width - 1).any() or (xy[:, 1] > height - 1).any()):
        logger.warning("The retargeted target pose extends beyond the image; limbs are cut at the border.")
    return keypoints
