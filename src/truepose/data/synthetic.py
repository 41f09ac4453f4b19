"""A procedural pose-transfer data set that needs no download.

Each pair shows one cartoon person (same face, hair, garments, colours and background) in two poses, with exact
COCO-18 keypoints and ATR parsing maps rendered at the same time. Figures are drawn with ``PIL.ImageDraw`` at 2-4x
the output size into a map of "part ids"; garment patterns (stripes, checks, dots, a logo or short text) are
evaluated in the torso's own frame so they move with the body, and the result is box-downsampled.

Example::

    from truepose.data import SyntheticPoseDataset

    dataset = SyntheticPoseDataset(num_pairs=1000, image_size=(128, 128), seed=0)
    item = dataset[0]  # same keys as every TruePose dataset, label_map "atr"
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from ..conditioning import NUM_KEYPOINTS, as_keypoints
from .common import PairItem, check_image_size

__all__ = [
    "Appearance",
    "SyntheticPoseDataset",
    "random_appearance",
    "random_pose",
    "render_person",
    "render_pair",
]

# COCO-18 indices
NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE, R_EYE, L_EYE, R_EAR, L_EAR = range(8, 18)

# ATR label ids
BACKGROUND, HAT, HAIR, UPPER, SKIRT, PANTS, DRESS = 0, 1, 2, 4, 5, 6, 7
LEFT_SHOE, RIGHT_SHOE, FACE, LEFT_LEG, RIGHT_LEG, LEFT_ARM, RIGHT_ARM = 9, 10, 11, 12, 13, 14, 15

# Materials (how a part is coloured)
_M_BG, _M_SKIN, _M_HAIR, _M_UPPER, _M_LOWER, _M_SHOE, _M_HAT, _M_EYE, _M_MOUTH = range(9)

UPPER_KINDS = ("tshirt", "longsleeve", "tank")
LOWER_KINDS = ("pants", "shorts", "skirt", "dress")
UPPER_PATTERNS = ("plain", "stripes", "checks", "dots", "colorblock")
LOWER_PATTERNS = ("plain", "stripes", "checks")
PRINT_KINDS = ("none", "logo", "text")
LOGO_SHAPES = ("star", "heart", "ring", "triangle", "diamond", "plus")
PRINT_TEXTS = ("NY", "LA", "GO", "23", "OK", "HI", "XO", "99", "ZEN", "RUN", "ART", "JOY", "SKY", "TOP", "ABC", "7")
HAIR_STYLES = ("short", "long", "bun", "buzz")
BACKGROUNDS = ("flat", "vgradient", "hgradient", "noise", "studio")

_SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 98), (160, 103, 70), (110, 72, 50))
_HAIR_COLOURS = ((28, 24, 24), (62, 40, 28), (105, 70, 42), (212, 176, 108), (150, 64, 32), (168, 168, 168))

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Appearance:
    """Everything about a synthetic person that stays fixed across poses (identity, clothes, background).

    Lengths of garment patterns are in torso lengths (neck to mid-hip), so they scale with the figure.
    """

    skin: Color
    hair: Color
    hair_style: str
    hat: Color | None
    upper_kind: str
    upper_colors: tuple[Color, Color]
    upper_pattern: str
    pattern_period: float
    pattern_angle: float
    print_kind: str
    print_value: str
    print_color: Color
    lower_kind: str
    lower_colors: tuple[Color, Color]
    lower_pattern: str
    skirt_length: float
    shoe: Color
    background: str
    background_colors: tuple[Color, Color]
    background_seed: int
    build: float = 1.0
    height: float = 1.0


# --------------------------------------------------------------------------------------------------------------------
# Random appearance
# --------------------------------------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _jitter(rng: np.random.Generator, color: Sequence[int], amount: int = 10) -> Color:
    return tuple(min(max(int(c) + int(rng.integers(-amount, amount + 1)), 0), 255) for c in color)


def _garment_color(rng: np.random.Generator) -> Color:
    kind = rng.random()
    if kind < 0.15:  # near white / black / grey
        v = rng.choice([0.12, 0.35, 0.6, 0.93]) + rng.uniform(-0.05, 0.05)
        return _hsv(rng.random(), rng.uniform(0.0, 0.08), v)
    return _hsv(rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.35, 0.95))


def _contrast_color(rng: np.random.Generator, base: Color) -> Color:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in base))
    kind = rng.random()
    if kind < 0.35:
        return _hsv(0, 0, 0.96 if v < 0.6 else 0.1)
    if kind < 0.7:
        return _hsv(h + rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.9), 1.0 - 0.6 * v + rng.uniform(-0.1, 0.1))
    return _hsv(h + rng.uniform(-0.08, 0.08), s, v + (0.4 if v < 0.55 else -0.4))


def random_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a random person: skin, hair, garments with patterns and colours, background, body build.

    Args:
        rng: a ``np.random.Generator``; the result depends only on its state.
    """
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 8)
    hair = (
        _hsv(rng.random(), 0.7, 0.7)
        if rng.random() < 0.06
        else _jitter(rng, _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 8)
    )
    hair_style = str(rng.choice(HAIR_STYLES, p=[0.4, 0.35, 0.15, 0.1]))
    hat = _garment_color(rng) if rng.random() < 0.1 else None

    lower_kind = str(rng.choice(LOWER_KINDS, p=[0.42, 0.18, 0.22, 0.18]))
    upper_kind = str(rng.choice(UPPER_KINDS, p=[0.45, 0.35, 0.2]))
    if lower_kind == "dress" and upper_kind == "longsleeve":
        upper_kind = "tshirt"
    base = _garment_color(rng)
    upper_colors = (base, _contrast_color(rng, base))
    upper_pattern = str(rng.choice(UPPER_PATTERNS, p=[0.2, 0.3, 0.2, 0.18, 0.12]))
    pattern_period = float(rng.uniform(0.17, 0.34))
    pattern_angle = float(rng.choice([0.0, 0.0, math.pi / 2, math.pi / 4, -math.pi / 4]))
    print_kind = str(rng.choice(PRINT_KINDS, p=[0.4, 0.3, 0.3]))
    if upper_pattern in ("checks", "dots") and print_kind != "none" and rng.random() < 0.5:
        print_kind = "none"
    print_value = str(rng.choice(LOGO_SHAPES)) if print_kind == "logo" else str(rng.choice(PRINT_TEXTS))
    print_color = _contrast_color(rng, base)

    if lower_kind in ("pants", "shorts") and rng.random() < 0.5:
        lower_base = _jitter(rng, ((52, 72, 120), (30, 30, 34), (186, 166, 128), (120, 120, 126))[rng.integers(4)])
    else:
        lower_base = _garment_color(rng)
    lower_colors = (lower_base, _contrast_color(rng, lower_base))
    lower_pattern = str(rng.choice(LOWER_PATTERNS, p=[0.6, 0.2, 0.2]))
    if lower_kind == "dress":  # a dress shares the top's look
        lower_colors, lower_pattern = upper_colors, upper_pattern if upper_pattern != "colorblock" else "plain"
    skirt_length = float(rng.uniform(0.55, 1.05))
    shoe = _jitter(rng, ((25, 25, 25), (235, 235, 235), (110, 70, 40), _garment_color(rng))[rng.integers(4)])

    background = str(rng.choice(BACKGROUNDS, p=[0.35, 0.2, 0.1, 0.15, 0.2]))
    if rng.random() < 0.5:  # studio-like light backgrounds, as in DeepFashion
        bg0 = _hsv(rng.random(), rng.uniform(0.0, 0.12), rng.uniform(0.82, 0.98))
    else:
        bg0 = _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.95))
    bg1 = _hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.95))
    return Appearance(
        skin=skin,
        hair=hair,
        hair_style=hair_style,
        hat=hat,
        upper_kind=upper_kind,
        upper_colors=upper_colors,
        upper_pattern=upper_pattern,
        pattern_period=pattern_period,
        pattern_angle=pattern_angle,
        print_kind=print_kind,
        print_value=print_value,
        print_color=print_color,
        lower_kind=lower_kind,
        lower_colors=lower_colors,
        lower_pattern=lower_pattern,
        skirt_length=skirt_length,
        shoe=shoe,
        background=background,
        background_colors=(bg0, bg1),
        background_seed=int(rng.integers(2**31)),
        build=float(rng.uniform(0.88, 1.15)),
        height=float(rng.uniform(0.92, 1.04)),
    )


# --------------------------------------------------------------------------------------------------------------------
# Random pose (a small 3D skeleton, rotated and projected)
# --------------------------------------------------------------------------------------------------------------------

# Bone lengths in units of the figure height.
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.165, 0.15, 0.225, 0.215
_TORSO = 0.34  # neck to mid-hip


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


# Extra room around each keypoint (figure-height units) so that the whole drawn figure stays in the frame.
_MARGINS = np.array([0.0, 0.04, 0.045, 0.04, 0.05, 0.045, 0.04, 0.05, 0.05, 0.04, 0.05, 0.05, 0.04, 0.05] + [0.0] * 4)


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

    view = rng.random()
    if view < 0.5:
        yaw = float(np.clip(rng.normal(0.0, 0.2), -0.45, 0.45))
    elif view < 0.85:
        yaw = float(rng.choice([-1, 1]) * rng.uniform(0.45, 1.05))
    else:
        yaw = math.pi + float(rng.uniform(-0.4, 0.4))
    head_yaw = float(np.clip(rng.normal(0.0, 0.15), -0.35, 0.35))

    sw, hw = 0.1 * build, 0.058 * build
    p = np.zeros((NUM_KEYPOINTS, 3))
    # Torso and head (rotated together by a small lean).
    p[NECK] = (0.0, -_TORSO, 0.0)
    p[R_SHOULDER] = (-sw, -_TORSO + 0.025, -0.01)
    p[L_SHOULDER] = (sw, -_TORSO + 0.025, -0.01)
    head = np.array([0.0, -_TORSO - 0.095, 0.012])
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
        p[knee] = p[hip] + _THIGH * _direction(side, a, f)
        p[ankle] = p[knee] + _SHIN * _direction(side, a2, f2)

    # View: rotate about the vertical axis, tilt slightly in the image plane, project orthographically.
    p = _rot_z(_rot_y(p, yaw), float(rng.normal(0, 0.02)))
    facing = _rot_y(normals, yaw)[:, 2]
    visible = np.ones(NUM_KEYPOINTS, dtype=bool)
    visible[[NOSE, R_EYE, L_EYE]] = facing[:3] > 0.2
    visible[[R_EAR, L_EAR]] = facing[3:] > -0.3

    # Fit: figure height L (pixels), then a random position inside the frame.
    xy = p[:, :2]
    lo = (xy - _MARGINS[:, None]).min(axis=0)
    hi = (xy + _MARGINS[:, None]).max(axis=0)
    lo[1] = min(lo[1], xy[NECK, 1] - 0.185)  # top of the head (or hat)
    hi[1] = max(hi[1], xy[[R_ANKLE, L_ANKLE], 1].max() + 0.05)  # soles
    extent = hi - lo
    scale = height * float(rng.uniform(0.8, 0.92)) * stature
    scale = min(scale, 0.98 * width / extent[0], 0.98 * height / extent[1])
    free = np.array([width, height]) - extent * scale
    offset = free * (0.5 + 0.42 * rng.uniform(-1, 1, size=2)) - lo * scale

    keypoints = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)
    keypoints[visible, :2] = xy[visible] * scale + offset
    keypoints[visible, 2] = 1.0
    keypoints[~visible, 2] = 0.0
    return keypoints


# --------------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------------


class _PartCanvas:
    """An "L" image of part ids (0 = background) and the (ATR label, material) of each part."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("L", (width, height), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.labels = [BACKGROUND]
        self.materials = [_M_BG]

    def part(self, label: int, material: int) -> int:
        self.labels.append(label)
        self.materials.append(material)
        return len(self.labels) - 1

    def polygon(self, points: Sequence[np.ndarray], part: int) -> None:
        self.draw.polygon([(float(x), float(y)) for x, y in points], fill=part)

    def circle(self, center: np.ndarray, radius: float, part: int) -> None:
        x, y = float(center[0]), float(center[1])
        radius = max(float(radius), 0.5)
        self.draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=part)

    def limb(self, p0: np.ndarray, p1: np.ndarray, w0: float, w1: float, part: int) -> None:
        """A tapered capsule from ``p0`` (width ``w0``) to ``p1`` (width ``w1``)."""
        d = p1 - p0
        length = float(np.hypot(*d))
        if length > 1e-6:
            n = np.array([-d[1], d[0]]) / length
            self.polygon([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2], part)
        self.circle(p0, w0 / 2, part)
        self.circle(p1, w1 / 2, part)


def _ellipse_points(center: np.ndarray, rx: float, ry: float, right: np.ndarray, down: np.ndarray, start: float, stop: float, n: int = 20) -> list[np.ndarray]:  # fmt: skip
    angles = np.linspace(math.radians(start), math.radians(stop), n)
    return [center + right * (rx * math.cos(t)) + down * (ry * math.sin(t)) for t in angles]


@lru_cache(maxsize=64)
def _stamp(kind: str, value: str) -> np.ndarray:
    """A boolean mask of a logo shape or a short text (PIL's bitmap font), tight around its ink."""
    if kind == "text":
        font = ImageFont.load_default_imagefont()
        left, top, right, bottom = font.getbbox(value)
        image = Image.new("L", (right - left + 2, bottom - top + 2), 0)
        ImageDraw.Draw(image).text((1 - left, 1 - top), value, fill=255, font=font)
    else:
        size = 32
        image = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(image)
        c = size / 2
        if value == "star":
            pts = [
                (c + (15 if i % 2 == 0 else 6.5) * math.sin(i * math.pi / 5),
                 c - (15 if i % 2 == 0 else 6.5) * math.cos(i * math.pi / 5))
                for i in range(10)
            ]  # fmt: skip
            draw.polygon(pts, fill=255)
        elif value == "heart":
            draw.ellipse((2, 4, 17, 19), fill=255)
            draw.ellipse((15, 4, 30, 19), fill=255)
            draw.polygon([(3, 14), (29, 14), (16, 30)], fill=255)
        elif value == "ring":
            draw.ellipse((1, 1, 31, 31), fill=255)
            draw.ellipse((9, 9, 23, 23), fill=0)
        elif value == "triangle":
            draw.polygon([(16, 2), (31, 29), (1, 29)], fill=255)
        elif value == "diamond":
            draw.polygon([(16, 0), (31, 16), (16, 31), (1, 16)], fill=255)
        elif value == "plus":
            draw.rectangle((11, 1, 21, 31), fill=255)
            draw.rectangle((1, 11, 31, 21), fill=255)
        else:
            raise ValueError(f"Unknown logo shape {value!r}; expected one of {LOGO_SHAPES}.")
    mask = np.asarray(image) > 127
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _pattern(kind: str, u: np.ndarray, v: np.ndarray, period: float, angle: float) -> np.ndarray:
    """Boolean "secondary colour" mask of a garment pattern at torso-frame coordinates ``(u, v)``."""
    if kind == "stripes":
        t = (u * math.sin(angle) + v * math.cos(angle)) / period
        return (t - np.floor(t)) < 0.45
    if kind == "checks":
        return ((np.floor(u / period) + np.floor(v / period)) % 2) == 1
    if kind == "dots":
        row = np.floor(v / period)
        uu = u / period + 0.5 * (row % 2)
        du, dv = uu - np.floor(uu) - 0.5, v / period - row - 0.5
        return du * du + dv * dv < 0.09
    if kind == "colorblock":
        return v > 0.5
    return np.zeros(u.shape, dtype=bool)


@lru_cache(maxsize=16)
def _background(appearance: Appearance, width: int, height: int) -> np.ndarray:
    """The ``(height, width)`` packed-RGBA uint32 background of ``appearance`` (cached: both images of a pair share it)."""
    rgb = np.clip(_background_float(appearance, width, height) + 0.5, 0, 255).astype(np.uint32)
    packed = rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16) | np.uint32(0xFF000000)
    packed.flags.writeable = False
    return packed


def _background_float(appearance: Appearance, width: int, height: int) -> np.ndarray:
    c0 = np.array(appearance.background_colors[0], dtype=np.float32)
    c1 = np.array(appearance.background_colors[1], dtype=np.float32)
    kind = appearance.background
    if kind == "flat":
        return np.broadcast_to(c0, (height, width, 3)).copy()
    if kind in ("vgradient", "hgradient"):
        if kind == "vgradient":
            t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        else:
            t = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
        return np.broadcast_to(c0 * (1 - t) + c1 * t, (height, width, 3)).copy()
    if kind == "noise":
        rng = np.random.default_rng(appearance.background_seed)
        small = Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8), mode="L")
        t = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.float32)[..., None] / 255.0
        return c0 * (1 - t) + c1 * t
    if kind == "studio":  # wall and floor
        horizon = int(height * (0.72 + 0.12 * ((appearance.background_seed % 100) / 100.0)))
        image = np.empty((height, width, 3), dtype=np.float32)
        image[:horizon] = c0
        t = np.linspace(0.0, 1.0, height - horizon, dtype=np.float32)[:, None, None]
        floor = c0 * 0.78 + c1 * 0.22
        image[horizon:] = floor * (1 - 0.15 * t)
        return image
    raise ValueError(f"Unknown background kind {kind!r}; expected one of {BACKGROUNDS}.")


def _pack(color: Sequence[float]) -> np.uint32:
    """An opaque RGB colour as a little-endian packed RGBA ``uint32``."""
    r, g, b = (min(max(round(float(c)), 0), 255) for c in color)
    return np.uint32(r | (g << 8) | (b << 16) | (0xFF << 24))


def _supersampling(height: int, width: int) -> int:
    side = max(height, width)
    return 4 if side <= 96 else 2 if side <= 384 else 1


def _point(keypoints: np.ndarray, index: int) -> np.ndarray | None:
    return keypoints[index, :2].astype(np.float64) if keypoints[index, 2] > 0 else None


def render_person(
    appearance: Appearance, keypoints: np.ndarray, image_size: Sequence[int] | int
) -> tuple[Image.Image, np.ndarray]:
    """Draw ``appearance`` in the pose ``keypoints``.

    Limbs whose end points are missing are not drawn; a missing neck or hip is estimated from the other points,
    so keypoints from real photos (e.g. a DeepFashion annotation) render too.

    Args:
        appearance: from :func:`random_appearance`.
        keypoints: ``(18, 2)`` or ``(18, 3)`` COCO-18 keypoints in pixels of ``image_size``.
        image_size: ``(height, width)``.

    Returns:
        ``(image, parsing)``: an RGB PIL image of size ``(height, width)`` and an int64 ``(height, width)`` ATR label
        map.
    """
    height, width = check_image_size(image_size)
    keypoints = as_keypoints(keypoints)
    ss = _supersampling(height, width)
    kp = keypoints.copy()
    present = kp[:, 2] > 0
    kp[present, :2] = (kp[present, :2] + 0.5) * ss - 0.5  # pixel centres of the supersampled canvas

    def pt(i: int) -> np.ndarray | None:
        return _point(kp, i)

    canvas = _PartCanvas(width * ss, height * ss)

    # ---- Body frame from the keypoints: figure height L, torso axis, view. -----------------------------------------
    neck, r_sh, l_sh, r_hip, l_hip = pt(NECK), pt(R_SHOULDER), pt(L_SHOULDER), pt(R_HIP), pt(L_HIP)
    if neck is None and r_sh is not None and l_sh is not None:
        neck = (r_sh + l_sh) / 2
    mid_hip = (
        (r_hip + l_hip) / 2 if r_hip is not None and l_hip is not None else (r_hip if r_hip is not None else l_hip)
    )
    if neck is not None and mid_hip is not None and np.hypot(*(mid_hip - neck)) > 1:
        size = np.hypot(*(mid_hip - neck)) / _TORSO
    elif r_sh is not None and l_sh is not None:
        size = max(np.hypot(*(r_sh - l_sh)) / 0.2, 0.3 * height * ss)
    else:
        size = 0.85 * height * ss
    down = np.array([0.0, 1.0]) if neck is None or mid_hip is None else (mid_hip - neck) / np.hypot(*(mid_hip - neck))
    right = np.array([down[1], -down[0]])  # image-right for an upright figure
    face_points = [pt(i) for i in (NOSE, R_EYE, L_EYE, R_EAR, L_EAR)]
    if neck is None:
        visible_face = [p for p in face_points if p is not None]
        if not visible_face:
            raise ValueError("`keypoints` must contain the neck, both shoulders or a face keypoint to draw a person.")
        neck = np.mean(visible_face, axis=0) + down * 0.1 * size
    if mid_hip is None:
        mid_hip = neck + down * _TORSO * size
    if r_hip is None:
        r_hip = mid_hip - right * 0.058 * size * (1 if (r_sh is None or l_sh is None or r_sh[0] <= l_sh[0]) else -1)
    if l_hip is None:
        l_hip = 2 * mid_hip - r_hip
    back_view = face_points[0] is None and face_points[1] is None and face_points[2] is None
    if r_sh is not None and l_sh is not None and face_points[0] is None:
        back_view = back_view or (r_sh - l_sh) @ right > 0.02 * size
    head_center = neck - down * 0.1 * size
    nose = face_points[0]
    facing = 0.0 if nose is None else float(np.clip((nose - head_center) @ right / (0.06 * size), -1, 1))
    # The far side (drawn behind the torso) in three-quarter views: the person's left when they turn to image-right.
    far_side = "left" if facing > 0.35 else "right" if facing < -0.35 else None

    # Widths (supersampled pixels).
    b = appearance.build
    w_upper_arm, w_forearm, w_hand = 0.058 * size * b, 0.047 * size * b, 0.052 * size
    w_thigh, w_shin, w_neck = 0.078 * size * b, 0.058 * size * b, 0.05 * size
    min_width = 1.8 * ss  # keep limbs at least ~2 output pixels wide on tiny images
    w_upper_arm, w_forearm, w_hand = max(w_upper_arm, min_width), max(w_forearm, min_width), max(w_hand, min_width)
    w_thigh, w_shin, w_neck = max(w_thigh, min_width), max(w_shin, min_width), max(w_neck, min_width)
    sleeve_extra = 1.3

    def arm(side: str) -> None:
        shoulder, elbow, wrist = (R_SHOULDER, R_ELBOW, R_WRIST) if side == "right" else (L_SHOULDER, L_ELBOW, L_WRIST)
        s, e, w = pt(shoulder), pt(elbow), pt(wrist)
        if s is None or e is None:
            return
        label = RIGHT_ARM if side == "right" else LEFT_ARM
        part = canvas.part(label, _M_SKIN)
        canvas.limb(s, e, w_upper_arm, w_forearm * 1.05, part)
        if w is not None:
            canvas.limb(e, w, w_forearm, w_forearm * 0.85, part)
            hand = w + (w - e) / max(np.hypot(*(w - e)), 1e-6) * w_hand * 0.25
            canvas.circle(hand, w_hand / 2, part)
        sleeve_label = DRESS if appearance.lower_kind == "dress" else UPPER
        if appearance.upper_kind == "tshirt":
            sleeve = canvas.part(sleeve_label, _M_UPPER)
            canvas.limb(s, s + 0.55 * (e - s), w_upper_arm * sleeve_extra, w_upper_arm * 1.2, sleeve)
        elif appearance.upper_kind == "longsleeve":
            sleeve = canvas.part(sleeve_label, _M_UPPER)
            canvas.limb(s, e, w_upper_arm * sleeve_extra, w_forearm * 1.25, sleeve)
            if w is not None:
                canvas.limb(e, w - 0.12 * (w - e), w_forearm * 1.25, w_forearm * 1.1, sleeve)

    def leg(side: str) -> None:
        hip, knee, ankle = (R_HIP, R_KNEE, R_ANKLE) if side == "right" else (L_HIP, L_KNEE, L_ANKLE)
        h, k, a = (r_hip if side == "right" else l_hip), pt(knee), pt(ankle)
        if k is None:
            return
        label = RIGHT_LEG if side == "right" else LEFT_LEG
        part = canvas.part(label, _M_SKIN)
        canvas.limb(h, k, w_thigh, w_shin * 1.1, part)
        if a is not None:
            canvas.limb(k, a, w_shin, w_shin * 0.8, part)
        if appearance.lower_kind in ("pants", "shorts"):
            pants = canvas.part(PANTS, _M_LOWER)
            if appearance.lower_kind == "pants":
                canvas.limb(h, k, w_thigh * 1.18, w_shin * 1.35, pants)
                if a is not None:
                    canvas.limb(k, a - 0.06 * (a - k), w_shin * 1.35, w_shin * 1.25, pants)
            else:
                canvas.limb(h, h + 0.55 * (k - h), w_thigh * 1.2, w_thigh * 1.15, pants)
        if a is not None:
            shoe = canvas.part(RIGHT_SHOE if side == "right" else LEFT_SHOE, _M_SHOE)
            toe = a + down * 0.03 * size + right * facing * 0.035 * size
            canvas.limb(a + down * 0.012 * size, toe, w_shin * 0.95, w_shin * 0.9, shoe)

    def torso_corners(a: np.ndarray, c: np.ndarray, pad: float, min_half: float) -> tuple[np.ndarray, np.ndarray]:
        """Corners of the torso outline across the body axis at points ``a`` (person's right) and ``c`` (left)."""
        centre = (a + c) / 2
        half = max(abs(float((c - a) @ right)) / 2 + pad, min_half)
        return centre - right * half * side_sign, centre + right * half * side_sign

    # The person's left is image-right unless they show their back; one sign for every outline keeps them convex.
    side_sign = -1.0 if back_view else 1.0

    # ---- Draw, back to front. --------------------------------------------------------------------------------------
    hair_length = {"long": 0.26, "short": 0.0, "bun": 0.0, "buzz": 0.0}[appearance.hair_style]
    rx, ry = 0.057 * size, 0.07 * size
    if hair_length and not back_view:
        hair_back = canvas.part(HAIR, _M_HAIR)
        canvas.polygon(
            [
                head_center - right * rx * 1.08 - down * ry * 0.2,
                head_center + right * rx * 1.08 - down * ry * 0.2,
                head_center + right * rx * 1.3 + down * hair_length * size,
                head_center - right * rx * 1.3 + down * hair_length * size,
            ],
            hair_back,
        )

    for side in ("right", "left") if far_side != "right" else ("left", "right"):
        leg(side)
    if far_side is not None:
        arm(far_side)

    # Pelvis / skirt.
    hip_r, hip_l = torso_corners(r_hip, l_hip, w_thigh * 0.6, 0.07 * size * b)
    if appearance.lower_kind in ("pants", "shorts"):
        pelvis = canvas.part(PANTS, _M_LOWER)
        canvas.polygon(
            [
                hip_r - down * 0.05 * size,
                hip_l - down * 0.05 * size,
                hip_l + down * 0.05 * size,
                mid_hip + down * 0.11 * size,
                hip_r + down * 0.05 * size,
            ],
            pelvis,
        )
    else:
        skirt = canvas.part(SKIRT if appearance.lower_kind == "skirt" else DRESS, _M_LOWER)
        length = appearance.skirt_length * _THIGH * size
        knees = [p for p in (pt(R_KNEE), pt(L_KNEE)) if p is not None]
        half = 0.1 * size * b
        if knees:
            spread = [float((k - mid_hip) @ right) for k in knees]
            half = max(half, max(abs(x) for x in spread) * min(appearance.skirt_length, 1.0) + w_thigh * 0.7)
        bottom = mid_hip + down * length
        canvas.polygon(
            [
                hip_r - down * 0.05 * size,
                hip_l - down * 0.05 * size,
                bottom + right * half * side_sign,
                bottom - right * half * side_sign,
            ],
            skirt,
        )

    # Neck and torso.
    neck_part = canvas.part(FACE, _M_SKIN)
    canvas.limb(neck - down * 0.06 * size, neck + down * 0.02 * size, w_neck, w_neck * 1.1, neck_part)
    r_top = r_sh if r_sh is not None else neck - right * 0.1 * size
    l_top = l_sh if l_sh is not None else neck + right * 0.1 * size
    tank = appearance.upper_kind == "tank"
    sh_r, sh_l = torso_corners(r_top, l_top, w_upper_arm * (0.1 if tank else 0.45), 0.065 * size * b)
    waist_r, waist_l = torso_corners(r_hip, l_hip, w_thigh * 0.55, 0.07 * size * b)
    hem = 0.04 * size if appearance.lower_kind != "dress" else 0.0
    torso_part = canvas.part(DRESS if appearance.lower_kind == "dress" else UPPER, _M_UPPER)
    collar = 0.25 if tank else 0.45
    canvas.polygon(
        [
            sh_r - down * 0.015 * size,
            neck + (sh_r - neck) * collar - down * 0.02 * size,
            neck + down * (0.05 if tank else 0.03) * size,
            neck + (sh_l - neck) * collar - down * 0.02 * size,
            sh_l - down * 0.015 * size,
            waist_l + down * hem,
            waist_r + down * hem,
        ],
        torso_part,
    )
    if hair_length and back_view:  # long hair falls over the back
        hair_back = canvas.part(HAIR, _M_HAIR)
        canvas.polygon(
            [
                head_center - right * rx * 1.05,
                head_center + right * rx * 1.05,
                head_center + right * rx * 1.2 + down * hair_length * size,
                head_center - right * rx * 1.2 + down * hair_length * size,
            ],
            hair_back,
        )

    for side in ("right", "left"):
        if side != far_side:
            arm(side)

    # Head: face, hair, hat, features.
    visible_face = [p for p in face_points if p is not None]
    if visible_face:  # grow the head to contain every face keypoint, with a margin of about one output pixel
        margin = 0.9 * ss
        inner_x, inner_y = max(rx - margin, 0.5 * rx), max(ry - margin, 0.5 * ry)
        local = np.array(
            [[(p - head_center) @ right / inner_x, (p - head_center) @ down / inner_y] for p in visible_face]
        )
        grow = float(np.sqrt((local**2).sum(axis=1)).max())
        if grow > 1.0:
            rx, ry = rx + inner_x * (grow - 1.0), ry + inner_y * (grow - 1.0)
    face_part = canvas.part(FACE, _M_SKIN)
    for ear in face_points[3:]:
        if ear is not None:
            canvas.circle(ear, max(0.2 * rx, 1.0 * ss), face_part)
    canvas.polygon(_ellipse_points(head_center, rx, ry, right, down, 0, 360, 24), face_part)
    shift = right * (-facing * 0.3 * rx)  # hair sits towards the back of the head
    if back_view:
        hair = canvas.part(HAIR, _M_HAIR)
        canvas.polygon(_ellipse_points(head_center - down * 0.04 * ry, rx * 1.06, ry * 1.04, right, down, 0, 360, 24), hair)  # fmt: skip
    elif appearance.hair_style != "buzz" or appearance.hat is None:
        hair = canvas.part(HAIR, _M_HAIR)
        reach = {"short": 18, "long": 30, "bun": 12, "buzz": 5}[appearance.hair_style]
        scale = 1.0 if appearance.hair_style == "buzz" else 1.1
        crown = head_center + shift - down * 0.08 * ry
        outline = _ellipse_points(crown, rx * scale, ry * scale, right, down, 180 - reach, 360 + reach, 16)
        hairline = _ellipse_points(
            crown + shift * 0.5 - down * 0.12 * ry, rx * 0.9, ry * 0.55, right, down, 360 + reach, 180 - reach, 10
        )
        canvas.polygon(outline + hairline, hair)
        if appearance.hair_style == "bun":
            canvas.circle(head_center + shift * 2.5 - down * ry * 1.05, rx * 0.5, hair)
    if appearance.hat is not None:
        hat = canvas.part(HAT, _M_HAT)
        top = head_center - down * 0.25 * ry
        canvas.polygon(_ellipse_points(top, rx * 1.05, ry * 0.95, right, down, 180, 360, 14), hat)
        canvas.limb(top - right * rx * 1.3, top + right * rx * 1.3, 0.15 * ry, 0.15 * ry, hat)
    if not back_view:
        eye_part = canvas.part(FACE, _M_EYE)
        for eye in (face_points[1], face_points[2]):
            if eye is not None:
                canvas.circle(eye, max(0.09 * rx, 0.6), eye_part)
        if nose is not None:
            mouth = canvas.part(FACE, _M_MOUTH)
            centre = nose + down * 0.3 * ry
            canvas.limb(centre - right * 0.22 * rx, centre + right * 0.22 * rx, 0.07 * ry, 0.07 * ry, mouth)

    # ---- Colour the parts. Pixels are packed RGBA uint32 so that every mask is 2-D and every lookup one gather. ----
    parts = np.asarray(canvas.image)
    part_materials = np.asarray(canvas.materials, dtype=np.uint8)
    skin = np.asarray(appearance.skin, dtype=np.float32)
    palette = np.zeros(9, dtype=np.uint32)
    palette[_M_SKIN] = _pack(appearance.skin)
    palette[_M_HAIR] = _pack(appearance.hair)
    palette[_M_SHOE] = _pack(appearance.shoe)
    palette[_M_HAT] = _pack(appearance.hat or (0, 0, 0))
    palette[_M_EYE] = _pack((30, 25, 25))
    palette[_M_MOUTH] = _pack(skin * np.array([0.7, 0.45, 0.45]))
    rgba = np.take(palette[part_materials], parts)
    rgba = np.where(parts == 0, _background(appearance, width * ss, height * ss), rgba)
    torso_len = max(float(np.hypot(*(mid_hip - neck))), 1.0)
    for material, colors, kind in (
        (_M_UPPER, appearance.upper_colors, appearance.upper_pattern),
        (_M_LOWER, appearance.lower_colors, appearance.lower_pattern),
    ):
        ys, xs = np.nonzero(np.take(part_materials == material, parts))
        if len(ys) == 0:
            continue
        xf, yf = xs.astype(np.float32) - np.float32(neck[0]), ys.astype(np.float32) - np.float32(neck[1])
        u = (xf * np.float32(right[0]) + yf * np.float32(right[1])) / np.float32(torso_len)
        v = (xf * np.float32(down[0]) + yf * np.float32(down[1])) / np.float32(torso_len)
        secondary = _pattern(kind, u, v, appearance.pattern_period, appearance.pattern_angle)
        rgba[ys, xs] = np.where(secondary, _pack(colors[1]), _pack(colors[0]))
        if material == _M_UPPER and appearance.print_kind != "none" and not back_view:
            mask = _stamp(appearance.print_kind, appearance.print_value)
            sh, sw = mask.shape
            box_w = 0.42 if appearance.print_kind == "logo" else 0.16 * len(appearance.print_value) + 0.1
            box_w = min(box_w, 0.6)
            box_h = box_w * sh / sw
            col = np.floor((u - (facing * 0.12 - box_w / 2)) * (sw / box_w)).astype(np.int64)
            row = np.floor((v - (0.36 - box_h / 2)) * (sh / box_h)).astype(np.int64)
            inside = (col >= 0) & (col < sw) & (row >= 0) & (row < sh)
            inside &= parts[ys, xs] == torso_part
            ink = np.zeros_like(inside)
            ink[inside] = mask[row[inside], col[inside]]
            rgba[ys[ink], xs[ink]] = _pack(appearance.print_color)

    # Outlines between parts (darken the foreground side).
    edge = np.zeros(parts.shape, dtype=bool)
    diff = parts[:, 1:] != parts[:, :-1]
    edge[:, 1:] |= diff
    edge[:, :-1] |= diff
    diff = parts[1:] != parts[:-1]
    edge[1:] |= diff
    edge[:-1] |= diff
    outlined = (part_materials != _M_BG) & (part_materials != _M_EYE) & (part_materials != _M_MOUTH)
    edge &= np.take(outlined, parts)
    values = rgba[edge]
    dark = np.uint32(0xFF000000)
    for shift in (0, 8, 16):
        dark = dark | (
            (((values >> np.uint32(shift)) & np.uint32(0xFF)) * np.uint32(174)) >> np.uint32(8)
        ) << np.uint32(shift)
    rgba[edge] = dark

    image = Image.frombuffer("RGBA", (width * ss, height * ss), rgba.astype("<u4", copy=False), "raw", "RGBA", 0, 1)
    if ss > 1:
        image = image.reduce(ss)
    image = image.convert("RGB")
    labels = np.asarray(canvas.labels, dtype=np.int64)
    parsing = labels[parts[ss // 2 :: ss, ss // 2 :: ss]]
    return image, parsing


def render_pair(
    seed: int, index: int, image_size: Sequence[int] | int = (64, 64)
) -> tuple[Appearance, np.ndarray, np.ndarray]:
    """The appearance and the two poses of pair ``index`` of a :class:`SyntheticPoseDataset` with ``seed``."""
    height, width = check_image_size(image_size)
    rng = np.random.default_rng([int(seed), int(index)])
    appearance = random_appearance(rng)
    source = random_pose(rng, (height, width), appearance)
    target = source
    for _ in range(8):  # make sure the two poses differ visibly
        target = random_pose(rng, (height, width), appearance)
        both = (source[:, 2] > 0) & (target[:, 2] > 0)
        if np.abs(source[both, :2] - target[both, :2]).mean() > 0.03 * max(height, width):
            break
    return appearance, source, target


class SyntheticPoseDataset(Dataset):
    """Procedural person pairs: one cartoon person (identity, garments, background) in two random poses.

    Item ``i`` depends only on ``(seed, i)``. Parsing maps use the ATR label ids (``label_map="atr"``): hair 2, face
    11, upper clothes 4, skirt 5, pants 6, dress 7, arms 14/15, legs 12/13, shoes 9/10, hat 1, background 0.

    Args:
        num_pairs: Number of pairs (the data are generated on the fly, so any size is free).
        image_size: ``(height, width)`` of the images.
        seed: Seed of the whole set.
    """

    label_map = "atr"

    def __init__(self, num_pairs: int, image_size: Sequence[int] | int = (64, 64), seed: int = 0) -> None:
        super().__init__()
        if not isinstance(num_pairs, int | np.integer) or num_pairs < 0:
            raise ValueError(f"`num_pairs` must be a non-negative int, got {num_pairs!r}.")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
        self.num_pairs = int(num_pairs)
        self.image_size = check_image_size(image_size)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_pairs

    def pair_spec(self, index: int) -> tuple[Appearance, np.ndarray, np.ndarray]:
        """``(appearance, source_keypoints, target_keypoints)`` of pair ``index``, without rendering."""
        if not -self.num_pairs <= index < self.num_pairs:
            raise IndexError(f"Index {index} out of range for a dataset of {self.num_pairs} pairs.")
        return render_pair(self.seed, index % self.num_pairs, self.image_size)

    def __getitem__(self, index: int) -> PairItem:
        appearance, source_keypoints, target_keypoints = self.pair_spec(index)
        source_image, source_parsing = render_person(appearance, source_keypoints, self.image_size)
        target_image, target_parsing = render_person(appearance, target_keypoints, self.image_size)
        stem = f"synthetic-{self.seed}-{index % self.num_pairs:07d}"
        return {
            "source_image": source_image,
            "target_image": target_image,
            "source_keypoints": source_keypoints,
            "target_keypoints": target_keypoints,
            "source_parsing": source_parsing,
            "target_parsing": target_parsing,
            "label_map": self.label_map,
            "name": f"{stem}-a___{stem}-b",
        }
