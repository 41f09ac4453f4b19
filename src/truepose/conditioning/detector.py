# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""`PoseDetector`: COCO-18 keypoints of a person in a photo, with controlnet_aux's OpenPose or DWpose, and where
their weight files are looked for (a local folder or a Hub repo)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._errors import describe_error
from .._hub import is_local_path
from .image import to_pil_image
from .keypoints import NUM_KEYPOINTS, as_keypoints, present_joints, rescale_keypoints
from .skeleton import import_controlnet_aux_openpose

OPENPOSE_FILES: tuple[str, ...] = ("body_pose_model.pth",)
OPENPOSE_HUB_REPO = "lllyasviel/Annotators"
DWPOSE_POSE_FILE = "dw-ll_ucoco_384.pth"
DWPOSE_DET_FILE = "yolox_l_8x8_300e_coco.pth"
DWPOSE_HUB_REPO = "wanghaofan/dw-ll_ucoco_384"


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
    if is_local_path(name):
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
            open_pose, _ = import_controlnet_aux_openpose()
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
        return [p for p in people if present_joints(p).any()]

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
            xy = keypoints[present_joints(keypoints), :2]
            return float(np.prod(xy.max(axis=0) - xy.min(axis=0)))

        return max(people, key=area)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, detect_resolution={self.detect_resolution})"
