# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Conditioning inputs of TruePose: images, target pose (keypoints, skeletons, detection) and source human parsing.

This package is the one place where user inputs are normalised; docs/inputs.md lists the accepted forms.

- `image`: images of every form -> RGB PIL images, bit depths (`to_8bit`), image files, the aspect-ratio rule;
- `keypoints`: COCO-18 keypoint arrays, frame checks, rescaling and retargeting;
- `skeleton`: keypoints drawn as an OpenPose skeleton;
- `pose_files`: the readers of every keypoint file format (pose files, OpenPose JSON, dataset annotations);
- `detector`: `PoseDetector`, keypoints from a photo;
- `pose`: `prepare_pose_image`, the pipeline's entry point for `target_pose` (and the names above, re-exported);
- `parsing`: label maps, parsing maps, masks of label groups (person, regions) and region crops.
"""

from .detector import PoseDetector
from .image import (
    ImageInput,
    is_batch_of_images,
    load_image_file,
    same_aspect_ratio,
    to_pil_image,
    to_pil_images,
)
from .keypoints import (
    KEYPOINT_NAMES,
    MISSING,
    NUM_KEYPOINTS,
    OUT_OF_FRAME_TOLERANCE,
    as_keypoints,
    rescale_keypoints,
    retarget_keypoints,
)
from .parsing import (
    DEFAULT_LABEL_MAP,
    DEFAULT_REGION_FILL,
    GROUP_NAMES,
    LABEL_MAPS,
    LabelMap,
    as_parsing_batch,
    as_parsing_map,
    check_person_present,
    get_label_map,
    label_group_masks,
    label_map_from_id2label,
    parse_images,
    person_mask,
    region_crops,
    region_masks,
)
from .pose import as_pose_batch, prepare_pose_image
from .pose_files import (
    BODY25_TO_COCO18,
    is_pose_file,
    parse_deepfashion_keypoints,
    read_deepfashion_annotations,
    read_openpose_json,
    read_pose_file,
)
from .skeleton import draw_skeleton

__all__ = [
    "BODY25_TO_COCO18",
    "DEFAULT_LABEL_MAP",
    "DEFAULT_REGION_FILL",
    "GROUP_NAMES",
    "ImageInput",
    "KEYPOINT_NAMES",
    "LABEL_MAPS",
    "LabelMap",
    "MISSING",
    "NUM_KEYPOINTS",
    "OUT_OF_FRAME_TOLERANCE",
    "PoseDetector",
    "as_keypoints",
    "as_parsing_batch",
    "as_parsing_map",
    "as_pose_batch",
    "check_person_present",
    "draw_skeleton",
    "get_label_map",
    "is_batch_of_images",
    "is_pose_file",
    "label_group_masks",
    "label_map_from_id2label",
    "load_image_file",
    "parse_deepfashion_keypoints",
    "parse_images",
    "person_mask",
    "prepare_pose_image",
    "read_deepfashion_annotations",
    "read_openpose_json",
    "read_pose_file",
    "region_crops",
    "region_masks",
    "rescale_keypoints",
    "retarget_keypoints",
    "same_aspect_ratio",
    "to_pil_image",
    "to_pil_images",
]
