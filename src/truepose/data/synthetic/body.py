"""The body frame of a figure to draw: where it is on the supersampled canvas, estimated from its keypoints
(figure height, torso axes, view, a missing neck or hip) and how wide its limbs are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .poses import L_EAR, L_EYE, L_HIP, L_SHOULDER, NECK, NOSE, R_EAR, R_EYE, R_HIP, R_SHOULDER, TORSO_LENGTH


def _supersampling(height: int, width: int) -> int:
    side = max(height, width)
    return 4 if side <= 96 else 2 if side <= 384 else 1


def _point(keypoints: np.ndarray, index: int) -> np.ndarray | None:
    return keypoints[index, :2].astype(np.float64) if keypoints[index, 2] > 0 else None


@dataclass(frozen=True)
class LimbWidths:
    """Widths of the limbs and the neck, in supersampled pixels."""

    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shin: float
    neck: float


@dataclass(frozen=True, eq=False)
class Body:
    """The figure on the supersampled canvas: the points the drawing hangs on (a missing neck or hip estimated), the
    body axes, the view and the limb widths. Points are ``(2,)`` float64 arrays in supersampled pixels."""

    keypoints: np.ndarray  # (18, 3), supersampled pixels
    ss: int  # supersampling factor
    size: float  # figure height
    build: float  # the appearance's body width factor
    down: np.ndarray  # unit torso axis, neck to hips
    right: np.ndarray  # image-right for an upright figure
    neck: np.ndarray
    r_shoulder: np.ndarray | None
    l_shoulder: np.ndarray | None
    r_hip: np.ndarray
    l_hip: np.ndarray
    mid_hip: np.ndarray
    face_points: list[np.ndarray | None]  # nose, right eye, left eye, right ear, left ear
    back_view: bool
    head_center: np.ndarray
    facing: float  # where the nose points across the body axis: -1 (image-left) to 1 (image-right)
    far_side: str | None  # "left"/"right": the side drawn behind the torso in three-quarter views
    widths: LimbWidths

    def point(self, index: int) -> np.ndarray | None:
        """Keypoint ``index`` as given (``None`` when missing)."""
        return _point(self.keypoints, index)

    @property
    def side_sign(self) -> float:
        """The person's left is image-right unless they show their back; one sign for every outline keeps them
        convex."""
        return -1.0 if self.back_view else 1.0

    @property
    def head_radii(self) -> tuple[float, float]:
        """``(rx, ry)`` of the head ellipse before it grows to contain the face keypoints."""
        return 0.057 * self.size, 0.07 * self.size

    def torso_corners(
        self, a: np.ndarray, c: np.ndarray, pad: float, min_half: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Corners of the torso outline across the body axis at points ``a`` (person's right) and ``c`` (left)."""
        centre = (a + c) / 2
        half = max(abs(float((c - a) @ self.right)) / 2 + pad, min_half)
        return centre - self.right * half * self.side_sign, centre + self.right * half * self.side_sign


def body_frame(keypoints: np.ndarray, height: int, width: int, build: float) -> Body:
    """The `Body` of ``keypoints`` (``(18, 3)``, output pixels) on the canvas supersampled for ``(height, width)``."""
    ss = _supersampling(height, width)
    kp = keypoints.copy()
    present = kp[:, 2] > 0
    kp[present, :2] = (kp[present, :2] + 0.5) * ss - 0.5  # pixel centres of the supersampled canvas

    def pt(i: int) -> np.ndarray | None:
        return _point(kp, i)

    # Figure height L, torso axis.
    neck, r_sh, l_sh, r_hip, l_hip = pt(NECK), pt(R_SHOULDER), pt(L_SHOULDER), pt(R_HIP), pt(L_HIP)
    if neck is None and r_sh is not None and l_sh is not None:
        neck = (r_sh + l_sh) / 2
    mid_hip = (
        (r_hip + l_hip) / 2 if r_hip is not None and l_hip is not None else (r_hip if r_hip is not None else l_hip)
    )
    if neck is not None and mid_hip is not None and np.hypot(*(mid_hip - neck)) > 1:
        size = np.hypot(*(mid_hip - neck)) / TORSO_LENGTH
    elif r_sh is not None and l_sh is not None:
        size = max(np.hypot(*(r_sh - l_sh)) / 0.2, 0.3 * height * ss)
    else:
        size = 0.85 * height * ss
    down = np.array([0.0, 1.0]) if neck is None or mid_hip is None else (mid_hip - neck) / np.hypot(*(mid_hip - neck))
    right = np.array([down[1], -down[0]])  # image-right for an upright figure

    # Missing neck and hips.
    face_points = [pt(i) for i in (NOSE, R_EYE, L_EYE, R_EAR, L_EAR)]
    if neck is None:
        visible_face = [p for p in face_points if p is not None]
        if not visible_face:
            raise ValueError("`keypoints` must contain the neck, both shoulders or a face keypoint to draw a person.")
        neck = np.mean(visible_face, axis=0) + down * 0.1 * size
    if mid_hip is None:
        mid_hip = neck + down * TORSO_LENGTH * size
    if r_hip is None:
        r_hip = mid_hip - right * 0.058 * size * (1 if (r_sh is None or l_sh is None or r_sh[0] <= l_sh[0]) else -1)
    if l_hip is None:
        l_hip = 2 * mid_hip - r_hip

    # View.
    back_view = face_points[0] is None and face_points[1] is None and face_points[2] is None
    if r_sh is not None and l_sh is not None and face_points[0] is None:
        back_view = back_view or (r_sh - l_sh) @ right > 0.02 * size
    head_center = neck - down * 0.1 * size
    nose = face_points[0]
    facing = 0.0 if nose is None else float(np.clip((nose - head_center) @ right / (0.06 * size), -1, 1))
    # The far side (drawn behind the torso) in three-quarter views: the person's left when they turn to image-right.
    far_side = "left" if facing > 0.35 else "right" if facing < -0.35 else None
    return Body(
        keypoints=kp,
        ss=ss,
        size=size,
        build=build,
        down=down,
        right=right,
        neck=neck,
        r_shoulder=r_sh,
        l_shoulder=l_sh,
        r_hip=r_hip,
        l_hip=l_hip,
        mid_hip=mid_hip,
        face_points=face_points,
        back_view=back_view,
        head_center=head_center,
        facing=facing,
        far_side=far_side,
        widths=_limb_widths(size, ss, build),
    )


def _limb_widths(size: float, ss: int, build: float) -> LimbWidths:
    """Limb widths of a figure of height ``size`` (supersampled pixels), each at least ~2 output pixels."""
    b = build
    w_upper_arm, w_forearm, w_hand = 0.058 * size * b, 0.047 * size * b, 0.052 * size
    w_thigh, w_shin, w_neck = 0.078 * size * b, 0.058 * size * b, 0.05 * size
    min_width = 1.8 * ss  # keep limbs at least ~2 output pixels wide on tiny images
    return LimbWidths(
        upper_arm=max(w_upper_arm, min_width),
        forearm=max(w_forearm, min_width),
        hand=max(w_hand, min_width),
        thigh=max(w_thigh, min_width),
        shin=max(w_shin, min_width),
        neck=max(w_neck, min_width),
    )
