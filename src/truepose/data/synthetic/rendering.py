"""`render_person`: an `Appearance` drawn in a pose, as an RGB image and its ATR parsing map.

The figure is drawn with ``PIL.ImageDraw`` at 2-4x the output size into a map of "part ids" (`_PartCanvas`), back to
front: long hair, legs, the far arm, pelvis or skirt, torso, the near arms, the head. Each part carries an ATR label
(for the parsing map) and a material (for its colour). Garment patterns and prints are evaluated in the torso's own
frame so that they move with the body, part borders are darkened, and the result is box-downsampled. Where the
figure is (its `Body`, estimated from the keypoints) lives in `body`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ...conditioning import LABEL_MAPS, as_keypoints
from ..common import check_image_size
from .appearance import Appearance, background_rgba, garment_pattern, pack_rgb, print_stamp
from .body import Body, body_frame
from .poses import (
    L_ANKLE,
    L_ELBOW,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    R_ANKLE,
    R_ELBOW,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
    THIGH_LENGTH,
)

# ATR label ids, taken from conditioning's ATR table.
_ATR_ID = {name: i for i, name in LABEL_MAPS["atr"].labels.items()}
BACKGROUND, HAT, HAIR, FACE = (_ATR_ID[name] for name in ("Background", "Hat", "Hair", "Face"))
UPPER, SKIRT, PANTS, DRESS = (_ATR_ID[name] for name in ("Upper-clothes", "Skirt", "Pants", "Dress"))
LEFT_SHOE, LEFT_LEG, LEFT_ARM = (_ATR_ID[f"Left-{part}"] for part in ("shoe", "leg", "arm"))
RIGHT_SHOE, RIGHT_LEG, RIGHT_ARM = (_ATR_ID[f"Right-{part}"] for part in ("shoe", "leg", "arm"))

# Materials (how a part is coloured)
_M_BG, _M_SKIN, _M_HAIR, _M_UPPER, _M_LOWER, _M_SHOE, _M_HAT, _M_EYE, _M_MOUTH = range(9)

_SLEEVE_WIDTH = 1.3  # a sleeve's width at the shoulder, in upper-arm widths
_HAIR_LENGTH = {"long": 0.26, "short": 0.0, "bun": 0.0, "buzz": 0.0}  # hair below the head centre, figure heights


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


# --------------------------------------------------------------------------------------------------------------------
# Drawing stages (part ids on the canvas), back to front
# --------------------------------------------------------------------------------------------------------------------


def _draw_long_hair(canvas: _PartCanvas, body: Body, appearance: Appearance) -> None:
    """Long hair hanging from the head: behind the whole figure in a front view, over the back in a back view."""
    hair_length = _HAIR_LENGTH[appearance.hair_style]
    if not hair_length:
        return
    head_center, right, down, size = body.head_center, body.right, body.down, body.size
    rx, ry = body.head_radii
    hair_back = canvas.part(HAIR, _M_HAIR)
    if body.back_view:
        outline = [
            head_center - right * rx * 1.05,
            head_center + right * rx * 1.05,
            head_center + right * rx * 1.2 + down * hair_length * size,
            head_center - right * rx * 1.2 + down * hair_length * size,
        ]
    else:
        outline = [
            head_center - right * rx * 1.08 - down * ry * 0.2,
            head_center + right * rx * 1.08 - down * ry * 0.2,
            head_center + right * rx * 1.3 + down * hair_length * size,
            head_center - right * rx * 1.3 + down * hair_length * size,
        ]
    canvas.polygon(outline, hair_back)


def _draw_leg(canvas: _PartCanvas, body: Body, appearance: Appearance, side: str) -> None:
    """Leg ``side`` (``"right"``/``"left"``): skin from hip to ankle, trousers or shorts over it, and the shoe."""
    knee, ankle = (R_KNEE, R_ANKLE) if side == "right" else (L_KNEE, L_ANKLE)
    h, k, a = (body.r_hip if side == "right" else body.l_hip), body.point(knee), body.point(ankle)
    if k is None:
        return
    w_thigh, w_shin = body.widths.thigh, body.widths.shin
    down, right, size = body.down, body.right, body.size
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
        toe = a + down * 0.03 * size + right * body.facing * 0.035 * size
        canvas.limb(a + down * 0.012 * size, toe, w_shin * 0.95, w_shin * 0.9, shoe)


def _draw_arm(canvas: _PartCanvas, body: Body, appearance: Appearance, side: str) -> None:
    """Arm ``side`` (``"right"``/``"left"``): skin from shoulder to hand, and the sleeve of a t-shirt or long
    sleeve."""
    shoulder, elbow, wrist = (R_SHOULDER, R_ELBOW, R_WRIST) if side == "right" else (L_SHOULDER, L_ELBOW, L_WRIST)
    s, e, w = body.point(shoulder), body.point(elbow), body.point(wrist)
    if s is None or e is None:
        return
    w_upper_arm, w_forearm, w_hand = body.widths.upper_arm, body.widths.forearm, body.widths.hand
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
        canvas.limb(s, s + 0.55 * (e - s), w_upper_arm * _SLEEVE_WIDTH, w_upper_arm * 1.2, sleeve)
    elif appearance.upper_kind == "longsleeve":
        sleeve = canvas.part(sleeve_label, _M_UPPER)
        canvas.limb(s, e, w_upper_arm * _SLEEVE_WIDTH, w_forearm * 1.25, sleeve)
        if w is not None:
            canvas.limb(e, w - 0.12 * (w - e), w_forearm * 1.25, w_forearm * 1.1, sleeve)


def _draw_pelvis(canvas: _PartCanvas, body: Body, appearance: Appearance) -> None:
    """The top of trousers or shorts over the hips, or a skirt or the skirt of a dress."""
    down, right, size, b, mid_hip = body.down, body.right, body.size, body.build, body.mid_hip
    w_thigh = body.widths.thigh
    hip_r, hip_l = body.torso_corners(body.r_hip, body.l_hip, w_thigh * 0.6, 0.07 * size * b)
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
        return
    skirt = canvas.part(SKIRT if appearance.lower_kind == "skirt" else DRESS, _M_LOWER)
    length = appearance.skirt_length * THIGH_LENGTH * size
    knees = [p for p in (body.point(R_KNEE), body.point(L_KNEE)) if p is not None]
    half = 0.1 * size * b
    if knees:
        spread = [float((k - mid_hip) @ right) for k in knees]
        half = max(half, max(abs(x) for x in spread) * min(appearance.skirt_length, 1.0) + w_thigh * 0.7)
    bottom = mid_hip + down * length
    canvas.polygon(
        [
            hip_r - down * 0.05 * size,
            hip_l - down * 0.05 * size,
            bottom + right * half * body.side_sign,
            bottom - right * half * body.side_sign,
        ],
        skirt,
    )


def _draw_torso(canvas: _PartCanvas, body: Body, appearance: Appearance) -> int:
    """The neck and the top (or the bodice of a dress); returns the top's part id (its print goes on it)."""
    down, right, size, b, neck = body.down, body.right, body.size, body.build, body.neck
    widths = body.widths
    neck_part = canvas.part(FACE, _M_SKIN)
    canvas.limb(neck - down * 0.06 * size, neck + down * 0.02 * size, widths.neck, widths.neck * 1.1, neck_part)
    r_top = body.r_shoulder if body.r_shoulder is not None else neck - right * 0.1 * size
    l_top = body.l_shoulder if body.l_shoulder is not None else neck + right * 0.1 * size
    tank = appearance.upper_kind == "tank"
    sh_r, sh_l = body.torso_corners(r_top, l_top, widths.upper_arm * (0.1 if tank else 0.45), 0.065 * size * b)
    waist_r, waist_l = body.torso_corners(body.r_hip, body.l_hip, widths.thigh * 0.55, 0.07 * size * b)
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
    return torso_part


def _grown_head_radii(body: Body) -> tuple[float, float]:
    """``(rx, ry)`` of the head ellipse, grown to contain every face keypoint with a margin of about one output
    pixel."""
    rx, ry = body.head_radii
    visible_face = [p for p in body.face_points if p is not None]
    if visible_face:
        margin = 0.9 * body.ss
        inner_x, inner_y = max(rx - margin, 0.5 * rx), max(ry - margin, 0.5 * ry)
        head_center, right, down = body.head_center, body.right, body.down
        local = np.array(
            [[(p - head_center) @ right / inner_x, (p - head_center) @ down / inner_y] for p in visible_face]
        )
        grow = float(np.sqrt((local**2).sum(axis=1)).max())
        if grow > 1.0:
            rx, ry = rx + inner_x * (grow - 1.0), ry + inner_y * (grow - 1.0)
    return rx, ry


def _draw_head(canvas: _PartCanvas, body: Body, appearance: Appearance) -> None:
    """The head: ears and face, hair, hat, then eyes and mouth."""
    head_center, right, down = body.head_center, body.right, body.down
    rx, ry = _grown_head_radii(body)
    face_part = canvas.part(FACE, _M_SKIN)
    for ear in body.face_points[3:]:
        if ear is not None:
            canvas.circle(ear, max(0.2 * rx, 1.0 * body.ss), face_part)
    canvas.polygon(_ellipse_points(head_center, rx, ry, right, down, 0, 360, 24), face_part)
    _draw_hair(canvas, body, appearance, rx, ry)
    if appearance.hat is not None:
        hat = canvas.part(HAT, _M_HAT)
        top = head_center - down * 0.25 * ry
        canvas.polygon(_ellipse_points(top, rx * 1.05, ry * 0.95, right, down, 180, 360, 14), hat)
        canvas.limb(top - right * rx * 1.3, top + right * rx * 1.3, 0.15 * ry, 0.15 * ry, hat)
    if not body.back_view:
        eye_part = canvas.part(FACE, _M_EYE)
        for eye in (body.face_points[1], body.face_points[2]):
            if eye is not None:
                canvas.circle(eye, max(0.09 * rx, 0.6), eye_part)
        nose = body.face_points[0]
        if nose is not None:
            mouth = canvas.part(FACE, _M_MOUTH)
            centre = nose + down * 0.3 * ry
            canvas.limb(centre - right * 0.22 * rx, centre + right * 0.22 * rx, 0.07 * ry, 0.07 * ry, mouth)


def _draw_hair(canvas: _PartCanvas, body: Body, appearance: Appearance, rx: float, ry: float) -> None:
    """Hair on the head of radii ``(rx, ry)``: all of it from behind, else a cap (none for a buzz cut under a hat),
    set towards the back of the head, with a bun for that style."""
    head_center, right, down = body.head_center, body.right, body.down
    shift = right * (-body.facing * 0.3 * rx)  # hair sits towards the back of the head
    if body.back_view:
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


# --------------------------------------------------------------------------------------------------------------------
# Colouring stages. Pixels are packed RGBA uint32 so that every mask is 2-D and every lookup one gather.
# --------------------------------------------------------------------------------------------------------------------


def _paint_flat(parts: np.ndarray, part_materials: np.ndarray, appearance: Appearance) -> np.ndarray:
    """Packed RGBA of the background and of every one-colour material (skin, hair, shoes, hat, eyes, mouth);
    ``parts`` is the ``(H, W)`` part-id map, ``part_materials`` the material of each part id."""
    skin = np.asarray(appearance.skin, dtype=np.float32)
    palette = np.zeros(9, dtype=np.uint32)
    palette[_M_SKIN] = pack_rgb(appearance.skin)
    palette[_M_HAIR] = pack_rgb(appearance.hair)
    palette[_M_SHOE] = pack_rgb(appearance.shoe)
    palette[_M_HAT] = pack_rgb(appearance.hat or (0, 0, 0))
    palette[_M_EYE] = pack_rgb((30, 25, 25))
    palette[_M_MOUTH] = pack_rgb(skin * np.array([0.7, 0.45, 0.45]))
    rgba = np.take(palette[part_materials], parts)
    height, width = parts.shape
    return np.where(parts == 0, background_rgba(appearance, width, height), rgba)


def _paint_garments(
    rgba: np.ndarray,
    parts: np.ndarray,
    part_materials: np.ndarray,
    body: Body,
    appearance: Appearance,
    torso_part: int,
) -> None:
    """Paints the top and the bottom garment in place with their pattern, in torso-frame coordinates (torso
    lengths from the neck), and the top's print on its front."""
    neck, right, down = body.neck, body.right, body.down
    torso_len = max(float(np.hypot(*(body.mid_hip - neck))), 1.0)
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
        secondary = garment_pattern(kind, u, v, appearance.pattern_period, appearance.pattern_angle)
        rgba[ys, xs] = np.where(secondary, pack_rgb(colors[1]), pack_rgb(colors[0]))
        if material == _M_UPPER and appearance.print_kind != "none" and not body.back_view:
            ink = _print_ink(appearance, u, v, body.facing) & (parts[ys, xs] == torso_part)
            rgba[ys[ink], xs[ink]] = pack_rgb(appearance.print_color)


def _print_ink(appearance: Appearance, u: np.ndarray, v: np.ndarray, facing: float) -> np.ndarray:
    """Where the top's logo or text covers the torso-frame points ``(u, v)`` (a boolean array of their shape); the
    print sits on the chest, shifted towards where the person faces."""
    mask = print_stamp(appearance.print_kind, appearance.print_value)
    sh, sw = mask.shape
    box_w = 0.42 if appearance.print_kind == "logo" else 0.16 * len(appearance.print_value) + 0.1
    box_w = min(box_w, 0.6)
    box_h = box_w * sh / sw
    col = np.floor((u - (facing * 0.12 - box_w / 2)) * (sw / box_w)).astype(np.int64)
    row = np.floor((v - (0.36 - box_h / 2)) * (sh / box_h)).astype(np.int64)
    inside = (col >= 0) & (col < sw) & (row >= 0) & (row < sh)
    ink = np.zeros_like(inside)
    ink[inside] = mask[row[inside], col[inside]]
    return ink


def _darken_outlines(rgba: np.ndarray, parts: np.ndarray, part_materials: np.ndarray) -> None:
    """Darkens, in place, the pixels on either side of a border between two parts, except on the background, eyes
    and mouth."""
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


def _downsample(
    rgba: np.ndarray, parts: np.ndarray, part_labels: Sequence[int], ss: int
) -> tuple[Image.Image, np.ndarray]:
    """The RGB image (box-downsampled by ``ss``) and the ATR parsing map (the label of each output pixel's centre
    sample)."""
    height_ss, width_ss = parts.shape
    image = Image.frombuffer("RGBA", (width_ss, height_ss), rgba.astype("<u4", copy=False), "raw", "RGBA", 0, 1)
    if ss > 1:
        image = image.reduce(ss)
    image = image.convert("RGB")
    labels = np.asarray(part_labels, dtype=np.int64)
    parsing = labels[parts[ss // 2 :: ss, ss // 2 :: ss]]
    return image, parsing


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
    body = body_frame(keypoints, height, width, appearance.build)

    # Part ids, back to front.
    canvas = _PartCanvas(width * body.ss, height * body.ss)
    if not body.back_view:
        _draw_long_hair(canvas, body, appearance)  # behind the whole figure
    for side in ("right", "left") if body.far_side != "right" else ("left", "right"):
        _draw_leg(canvas, body, appearance, side)
    if body.far_side is not None:
        _draw_arm(canvas, body, appearance, body.far_side)
    _draw_pelvis(canvas, body, appearance)
    torso_part = _draw_torso(canvas, body, appearance)
    if body.back_view:
        _draw_long_hair(canvas, body, appearance)  # over the back
    for side in ("right", "left"):
        if side != body.far_side:
            _draw_arm(canvas, body, appearance, side)
    _draw_head(canvas, body, appearance)

    # Colours, then the output resolution.
    parts = np.asarray(canvas.image)
    part_materials = np.asarray(canvas.materials, dtype=np.uint8)
    rgba = _paint_flat(parts, part_materials, appearance)
    _paint_garments(rgba, parts, part_materials, body, appearance, torso_part)
    _darken_outlines(rgba, parts, part_materials)
    return _downsample(rgba, parts, canvas.labels, body.ss)
