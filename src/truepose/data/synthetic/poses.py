"""Random poses: a small 3D skeleton with random stance, arm gestures, lean and view, projected and fitted in the
frame as COCO-18 keypoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...conditioning import KEYPOINT_NAMES, NUM_KEYPOINTS
from ..common import check_image_size
from .appearance import Appearance

# COCO-18 keypoint indices, taken from conditioning's keypoint order.
NOSE, NECK = KEYPOINT_NAMES.index("nose"), KEYPOINT_NAMES.index("neck")
R_SHOULDER, R_ELBOW, R_WRIST = (KEYPOINT_NAMES.index(f"right_{joint}") for joint in ("shoulder", "elbow", "wrist"))
L_SHOULDER, L_ELBOW, L_WRIST = (KEYPOINT_NAMES.index(f"left_{joint}") for joint in ("shoulder", "elbow", "wrist"))
R_HIP, R_KNEE, R_ANKLE = (KEYPOINT_NAMES.index(f"right_{joint}") for joint in ("hip", "knee", "ankle"))
L_HIP, L_KNEE, L_ANKLE = (KEYPOINT_NAMES.index(f"left_{joint}") for joint in ("hip", "knee", "ankle"))
R_EYE, L_EYE, R_EAR, L_EAR = (
    KEYPOINT_NAMES.index(name) for name in ("right_eye", "left_eye", "right_ear", "left_ear")
)

# Bone lengths in units of the figure height.
_UPPER_ARM, _FOREARM, _SHIN = 0.165, 0.15, 0.215
THIGH_LENGTH = 0.225
TORSO_LENGTH = 0.34  # neck to mid-hip


def _direction(side: float, abduction: float, flexion: float) -> np.ndarray:
    """Unit limb direction: ``abduction`` from straight down towards the body's ``side`` (+1 left, -1 right),
    ``flexion`` towards the front. Body frame: x = person's left, y = down, z = front."""
    return np.array(
        [side * math.sin(abduction) * math.cos(flexion), math.cos(abduction) * math.cos(flexion), math.sin(flexion)]
    )


def _random_arm(rng: np.random.Generator, style: str) -> tuple[float, float, float, float]:
    """(abduction, flexion) of the upper arm and of the forearm, in radians."""
    d = math.radians
    if style == "down":
        a, f = d(rng.uniform(4, 18)), d(rng.uniform(-15, 15))
        return a, f, a + d(rng.uniform(-8, 8)), f + d(rng.uniform(0, 25))
    if style == "akimbo":
        a = d(rng.uniform(25, 40))
        return a, d(rng.uniform(-10, 5)), a - d(rng.uniform(70, 100)), d(rng.uniform(-10, 10))
    if style == "raised":
        a = d(rng.uniform(110, 170))
        return a, d(rng.uniform(-10, 10)), a + d(rng.uniform(-25, 15)), d(rng.uniform(-10, 10))
    if style == "front":  # forearm across the body
        a = d(rng.uniform(5, 25))
        return a, d(rng.uniform(5, 30)), a - d(rng.uniform(50, 110)), d(rng.uniform(30, 70))
    if style == "out":
        a = d(rng.uniform(50, 100))
        return a, d(rng.uniform(-15, 15)), a + d(rng.uniform(-40, 40)), d(rng.uniform(-10, 20))
    if style == "wave":  # elbow out, forearm up
        a = d(rng.uniform(60, 95))
        return a, d(rng.uniform(-10, 10)), d(rng.uniform(150, 185)), d(rng.uniform(-10, 10))
    raise ValueError(f"Unknown arm style {style!r}.")


_ARM_STYLES = ("down", "akimbo", "raised", "front", "out", "wave")
_ARM_PROBS = (0.38, 0.14, 0.12, 0.16, 0.12, 0.08)


def _random_legs(rng: np.random.Generator) -> list[tuple[float, float, float, float]]:
    """[(abduction, flexion, shin abduction, shin flexion)] for the right then the left leg, in radians."""
    d = math.radians
    stance = rng.choice(("stand", "wide", "walk", "cross", "rest"), p=(0.35, 0.15, 0.25, 0.1, 0.15))
    legs = []
    for _ in range(2):
        if stance == "stand":
            a, f = d(rng.uniform(1, 6)), d(rng.uniform(-4, 4))
            legs.append((a, f, a + d(rng.uniform(-3, 3)), f - d(rng.uniform(0, 6))))
        elif stance == "wide":
            a = d(rng.uniform(9, 20))
            legs.append((a, d(rng.uniform(-5, 5)), a - d(rng.uniform(0, 8)), d(rng.uniform(-5, 0))))
        elif stance == "cross":
            a = d(rng.uniform(-7, -2))
            legs.append((a, d(rng.uniform(-5, 5)), a - d(rng.uniform(0, 4)), d(rng.uniform(-5, 0))))
        else:
            legs.append((d(rng.uniform(2, 8)), 0.0, d(rng.uniform(0, 6)), 0.0))
    if stance == "walk":
        front = int(rng.integers(2))
        swing = d(rng.uniform(12, 30))
        a0, _, sa0, _ = legs[front]
        legs[front] = (a0, swing, sa0, swing - d(rng.uniform(0, 15)))
        a1, _, sa1, _ = legs[1 - front]
        back = -d(rng.uniform(8, 22))
        legs[1 - front] = (a1, back, sa1, back - d(rng.uniform(15, 40)))
    elif stance == "rest":  # weight on one leg, the other knee bent
        bent = int(rng.integers(2))
        a, _, sa, _ = legs[bent]
        knee = d(rng.uniform(10, 25))
        legs[bent] = (a + d(rng.uniform(3, 8)), knee, sa - d(rng.uniform(4, 10)), knee - d(rng.uniform(20, 40)))
    return legs


def _rot_y(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x * c + z * s, y, -x * s + z * c], axis=-1)


def _rot_z(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x * c - y * s, x * s + y * c, z], axis=-1)


def _rot_x(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x, y * c - z * s, y * s + z * c], axis=-1)


# Extra room around each keypoint (figure-height units) so that the whole drawn figure stays in the frame; none
# around the face keypoints (the head's own room is added in `_fit_in_frame`).
_JOINT_MARGINS = {
    "neck": 0.04,
    "shoulder": 0.045,
    "elbow": 0.04,
    "wrist": 0.05,
    "hip": 0.05,
    "knee": 0.04,
    "ankle": 0.05,
}
_MARGINS = np.array([_JOINT_MARGINS.get(name.rsplit("_", 1)[-1], 0.0) for name in KEYPOINT_NAMES])


def random_pose(
    rng: np.random.Generator, image_size: Sequence[int] | int, appearance: Appearance | None = None
) -> np.ndarray:
    """Draw a plausible random pose and fit it in the frame.

    The view (front, three-quarter, side-ish or back), stance, arm gestures, lean, position and scale are random.
    Face keypoints turned away from the camera are missing (``(-1, -1, 0)``); every other keypoint is visible and
    inside the image.

    Args:
        rng: a ``np.random.Generator``.
        image_size: ``(height, width)`` of the frame.
        appearance: if given, its ``build`` and ``height`` set the body proportions (same person across poses).

    Returns:
        float32 ``(18, 3)`` COCO-18 keypoints ``[x, y, confidence]`` in pixels.
    """
    height, width = check_image_size(image_size)
    build = appearance.build if appearance is not None else float(rng.uniform(0.88, 1.15))
    stature = appearance.height if appearance is not None else float(rng.uniform(0.92, 1.04))
    yaw, head_yaw = _random_view(rng)
    points, face_normals = _random_skeleton(rng, build, head_yaw)

    # View: rotate about the vertical axis, tilt slightly in the image plane, project orthographically.
    points = _rot_z(_rot_y(points, yaw), float(rng.normal(0, 0.02)))
    facing = _rot_y(face_normals, yaw)[:, 2]
    visible = np.ones(NUM_KEYPOINTS, dtype=bool)
    visible[[NOSE, R_EYE, L_EYE]] = facing[:3] > 0.2
    visible[[R_EAR, L_EAR]] = facing[3:] > -0.3

    xy = points[:, :2]
    scale, offset = _fit_in_frame(rng, xy, height, width, stature)
    keypoints = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)
    keypoints[visible, :2] = xy[visible] * scale + offset
    keypoints[visible, 2] = 1.0
    keypoints[~visible, 2] = 0.0
    return keypoints


def _random_view(rng: np.random.Generator) -> tuple[float, float]:
    """``(yaw, head_yaw)`` in radians: front (half the poses), three-quarter or side-ish, or back."""
    view = rng.random()
    if view < 0.5:
        yaw = float(np.clip(rng.normal(0.0, 0.2), -0.45, 0.45))
    elif view < 0.85:
        yaw = float(rng.choice([-1, 1]) * rng.uniform(0.45, 1.05))
    else:
        yaw = math.pi + float(rng.uniform(-0.4, 0.4))
    head_yaw = float(np.clip(rng.normal(0.0, 0.15), -0.35, 0.35))
    return yaw, head_yaw


def _random_skeleton(rng: np.random.Generator, build: float, head_yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """The 3D skeleton in the body frame (figure-height units, mid-hip at the origin) and the outward normals of the
    five face keypoints (nose, eyes, ears): ``(18, 3)`` and ``(5, 3)``."""
    sw, hw = 0.1 * build, 0.058 * build
    p = np.zeros((NUM_KEYPOINTS, 3))
    # Torso and head (rotated together by a small lean).
    p[NECK] = (0.0, -TORSO_LENGTH, 0.0)
    p[R_SHOULDER] = (-sw, -TORSO_LENGTH + 0.025, -0.01)
    p[L_SHOULDER] = (sw, -TORSO_LENGTH + 0.025, -0.01)
    head = np.array([0.0, -TORSO_LENGTH - 0.095, 0.012])
    face = np.array(
        [
            (0.0, 0.014, 0.062),  # nose
            (-0.022, -0.004, 0.052),  # right eye
            (0.022, -0.004, 0.052),  # left eye
            (-0.055, 0.0, -0.004),  # right ear
            (0.055, 0.0, -0.004),  # left ear
        ]
    )
    normals = np.array([(0, 0, 1.0), (-0.35, 0, 0.94), (0.35, 0, 0.94), (-1.0, 0, -0.1), (1.0, 0, -0.1)])
    face = _rot_z(_rot_y(face, head_yaw), float(rng.normal(0, 0.06)))
    normals = _rot_y(normals, head_yaw)
    p[[NOSE, R_EYE, L_EYE, R_EAR, L_EAR]] = head + face
    lean_side, lean_front = float(rng.normal(0, 0.045)), float(rng.normal(0, 0.03))
    upper = [NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE, R_EAR, L_EAR]
    p[upper] = _rot_x(_rot_z(p[upper], lean_side), lean_front)

    # Arms.
    if rng.random() < 0.4:
        style = str(rng.choice(_ARM_STYLES, p=_ARM_PROBS))
        arm_styles = (style, style)
    else:
        arm_styles = tuple(str(s) for s in rng.choice(_ARM_STYLES, size=2, p=_ARM_PROBS))
    for side, (shoulder, elbow, wrist), style in zip(
        (-1.0, 1.0), ((R_SHOULDER, R_ELBOW, R_WRIST), (L_SHOULDER, L_ELBOW, L_WRIST)), arm_styles
    ):
        a, f, a2, f2 = _random_arm(rng, style)
        p[elbow] = p[shoulder] + _UPPER_ARM * _direction(side, a, f)
        p[wrist] = p[elbow] + _FOREARM * _direction(side, a2, f2)

    # Legs.
    for side, (hip, knee, ankle), (a, f, a2, f2) in zip(
        (-1.0, 1.0), ((R_HIP, R_KNEE, R_ANKLE), (L_HIP, L_KNEE, L_ANKLE)), _random_legs(rng)
    ):
        p[hip] = (side * hw, 0.0, 0.0)
        p[knee] = p[hip] + THIGH_LENGTH * _direction(side, a, f)
        p[ankle] = p[knee] + _SHIN * _direction(side, a2, f2)
    return p, normals


def _fit_in_frame(
    rng: np.random.Generator, xy: np.ndarray, height: int, width: int, stature: float
) -> tuple[float, np.ndarray]:
    """``(scale, offset)`` mapping the projected skeleton ``xy`` (``(18, 2)``, figure-height units) to pixels: a
    random figure height within the frame, then a random position where the whole figure stays inside."""
    lo = (xy - _MARGINS[:, None]).min(axis=0)
    hi = (xy + _MARGINS[:, None]).max(axis=0)
    lo[1] = min(lo[1], xy[NECK, 1] - 0.185)  # top of the head (or hat)
    hi[1] = max(hi[1], xy[[R_ANKLE, L_ANKLE], 1].max() + 0.05)  # soles
    extent = hi - lo
    scale = height * float(rng.uniform(0.8, 0.92)) * stature
    scale = min(scale, 0.98 * width / extent[0], 0.98 * height / extent[1])
    free = np.array([width, height]) - extent * scale
    offset = free * (0.5 + 0.42 * rng.uniform(-1, 1, size=2)) - lo * scale
    return scale, offset
