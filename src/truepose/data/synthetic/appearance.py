"""What a synthetic person looks like: the `Appearance` (identity, garments, colours, background), its random
sampling, and the pixels its surfaces are painted with (garment patterns, printed logos and text, backgrounds).

Colours are packed into little-endian RGBA ``uint32`` values (`pack_rgb`) so that a whole image is coloured with
one gather.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

UPPER_KINDS = ("tshirt", "longsleeve", "tank")
LOWER_KINDS = ("pants", "shorts", "skirt", "dress")
UPPER_PATTERNS = ("plain", "stripes", "checks", "dots", "colorblock")
LOWER_PATTERNS = ("plain", "stripes", "checks")
PRINT_KINDS = ("none", "logo", "text")
LOGO_SHAPES = ("star", "heart", "ring", "triangle", "diamond", "plus")
PRINT_TEXTS = ("NY", "LA", "GO", "23", "OK", "HI", "XO", "99", "ZEN", "RUN", "ART", "JOY", "SKY", "TOP", "ABC", "7")
HAIR_STYLES = ("short", "long", "bun", "buzz")
BACKGROUNDS = ("flat", "vgradient", "hgradient", "noise", "studio")
BACKGROUND_SETS = ("varied", "studio")

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


def random_appearance(rng: np.random.Generator, backgrounds: str = "varied") -> Appearance:
    """Draw a random person: skin, hair, garments with patterns and colours, background, body build.

    Args:
        rng: a ``np.random.Generator``; the result depends only on its state.
        backgrounds: ``"varied"`` (any colour: flat, gradients, smooth noise, a wall and floor) or ``"studio"``
            (near-white or light-grey flat walls, soft vertical gradients and walls with a floor, as DeepFashion's
            photos). Both draw the same numbers from ``rng``: the person and the poses drawn after it are the same,
            only the background differs (its studio look comes from ``background_seed``).
    """
    check_backgrounds(backgrounds)
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
    background_seed = int(rng.integers(2**31))
    if backgrounds == "studio":
        background, (bg0, bg1) = _studio_background(np.random.default_rng(background_seed))
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
        background_seed=background_seed,
        build=float(rng.uniform(0.88, 1.15)),
        height=float(rng.uniform(0.92, 1.04)),
    )


def check_backgrounds(backgrounds: str) -> None:
    """Raise a ``ValueError`` unless ``backgrounds`` is one of `BACKGROUND_SETS`."""
    if backgrounds not in BACKGROUND_SETS:
        raise ValueError(f"`backgrounds` must be one of {BACKGROUND_SETS}, got {backgrounds!r}.")


def _studio_background(rng: np.random.Generator) -> tuple[str, tuple[Color, Color]]:
    """A plain light background like a fashion studio's: the kind and its two colours (near-neutral, bright)."""
    kind = str(rng.choice(("flat", "vgradient", "studio"), p=[0.5, 0.2, 0.3]))
    hue = rng.random()
    wall = _hsv(hue, rng.uniform(0.0, 0.06), rng.uniform(0.86, 0.99))
    shade = _hsv(hue + rng.uniform(-0.05, 0.05), rng.uniform(0.0, 0.08), rng.uniform(0.72, 0.9))
    return kind, (wall, shade)


# --------------------------------------------------------------------------------------------------------------------
# Surface textures
# --------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def print_stamp(kind: str, value: str) -> np.ndarray:
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


def garment_pattern(kind: str, u: np.ndarray, v: np.ndarray, period: float, angle: float) -> np.ndarray:
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
def background_rgba(appearance: Appearance, width: int, height: int) -> np.ndarray:
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


def pack_rgb(color: Sequence[float]) -> np.uint32:
    """An opaque RGB colour as a little-endian packed RGBA ``uint32``."""
    r, g, b = (min(max(round(float(c)), 0), 255) for c in color)
    return np.uint32(r | (g << 8) | (b << 16) | (0xFF << 24))
