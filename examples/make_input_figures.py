"""Makes the two pictures of docs/inputs.md with truepose's own conditioning code.

    python examples/make_input_figures.py [--out-dir docs/images]

- skeleton.png: a synthetic COCO-18 keypoint set drawn by `draw_skeleton` (all joints; some joints missing), and
  a small target pose before and after `retarget_keypoints` onto the first person.
- parsing_overlay.png: a hand-made ATR parsing map over scikit-image's astronaut photo, the person mask HPFA uses,
  and the CAA region crops (`region_masks` + `region_crops`).

Needs only the installed packages (scikit-image for the photo); no network, no model weights.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import PIL.Image
import PIL.ImageDraw

from truepose.conditioning import (
    LABEL_MAPS,
    as_parsing_map,
    draw_skeleton,
    person_mask,
    region_crops,
    region_masks,
    retarget_keypoints,
)

H, W = 256, 176  # the DeepFashion frame

# A standing person, COCO-18 order [x, y] in pixels of the 256x176 frame.
PERSON = np.array(
    [
        [88, 30], [88, 60], [60, 60], [50, 100], [45, 140], [116, 60], [126, 100], [131, 140], [70, 130],
        [70, 180], [70, 230], [106, 130], [106, 180], [106, 230], [82, 25], [94, 25], [76, 28], [100, 28],
    ],
    dtype=np.float32,
)  # fmt: skip

# A smaller person, higher up and to the left, with the arms raised and a knee bent.
TARGET = np.array(
    [
        [50, 40], [50, 58], [36, 58], [26, 40], [22, 22], [64, 58], [76, 42], [82, 24], [40, 102], [32, 128],
        [42, 150], [60, 102], [64, 128], [64, 154], [47, 37], [53, 37], [44, 39], [56, 39],
    ],
    dtype=np.float32,
)  # fmt: skip


def _caption(image: PIL.Image.Image, text: str, height: int = 30) -> PIL.Image.Image:
    out = PIL.Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    out.paste(image, (0, 0))
    draw = PIL.ImageDraw.Draw(out)
    for i, line in enumerate(text.split("\n")):
        draw.text((4, image.height + 3 + 12 * i), line, fill=(0, 0, 0))
    return out


def _row(images: list[PIL.Image.Image], gap: int = 8) -> PIL.Image.Image:
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    out = PIL.Image.new("RGB", (width, max(im.height for im in images)), (255, 255, 255))
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def skeleton_figure() -> PIL.Image.Image:
    missing = PERSON.copy()
    missing[[6, 7, 16, 17]] = -1  # left elbow and wrist, both ears
    retargeted = retarget_keypoints(TARGET, PERSON)
    panels = [
        _caption(draw_skeleton(PERSON, H, W), "(18, 2) keypoints\nall joints"),
        _caption(draw_skeleton(missing, H, W), "left arm and ears = -1\n(not drawn)"),
        _caption(draw_skeleton(TARGET, H, W), "target pose"),
        _caption(draw_skeleton(retargeted, H, W), "retargeted onto\nthe first person"),
    ]
    return _row(panels)


def hand_made_parsing(height: int, width: int) -> np.ndarray:
    """ATR label ids for skimage's 512x512 astronaut: upper clothes, hair, face, and the helmet as a hat."""
    atr = {name: i for i, name in LABEL_MAPS["atr"].labels.items()}
    canvas = PIL.Image.new("L", (width, height), atr["Background"])
    draw = PIL.ImageDraw.Draw(canvas)
    suit = [(118, 185), (305, 185), (350, 260), (365, 340), (372, 512), (18, 512), (22, 330), (60, 250)]
    draw.polygon(suit, fill=atr["Upper-clothes"])
    draw.ellipse((150, 12, 305, 150), fill=atr["Hair"])
    draw.ellipse((182, 62, 272, 178), fill=atr["Face"])
    draw.ellipse((276, 342, 512, 560), fill=atr["Hat"])
    return np.asarray(canvas).astype(np.int64)


# One colour per ATR label (id 0, background, stays transparent).
PALETTE = np.array(
    [
        [0, 0, 0], [128, 0, 0], [255, 200, 0], [0, 128, 128], [0, 90, 255], [255, 0, 255], [0, 200, 0], [150, 0, 255],
        [255, 255, 0], [0, 255, 255], [0, 160, 255], [255, 60, 60], [60, 255, 60], [60, 180, 60], [255, 120, 0],
        [200, 90, 0], [120, 120, 255], [255, 150, 200],
    ],
    dtype=np.uint8,
)  # fmt: skip


def parsing_figure() -> PIL.Image.Image:
    from skimage.data import astronaut

    photo = PIL.Image.fromarray(astronaut())
    parsing = as_parsing_map(hand_made_parsing(photo.height, photo.width), photo.height, photo.width, "atr")

    pixels = np.asarray(photo).astype(np.float32)
    colours = PALETTE[parsing].astype(np.float32)
    alpha = np.where(parsing > 0, 0.55, 0.0)[..., None]
    size = 256
    overlay = PIL.Image.fromarray((pixels * (1 - alpha) + colours * alpha).round().astype(np.uint8))
    overlay = overlay.resize((size, size), PIL.Image.BILINEAR)
    draw = PIL.ImageDraw.Draw(overlay)
    for row, label in enumerate(sorted(set(np.unique(parsing).tolist()) - {0})):
        y = 8 + 16 * row
        draw.rectangle((8, y, 20, y + 12), fill=tuple(PALETTE[label].tolist()), outline=(0, 0, 0))
        text = f"{label} {LABEL_MAPS['atr'].labels[label]}"
        draw.rectangle((22, y, 26 + 6 * len(text), y + 12), fill=(255, 255, 255))
        draw.text((25, y), text, fill=(0, 0, 0))

    mask = person_mask(parsing, "atr")
    mask_image = PIL.Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB")

    names, masks = region_masks(parsing, "atr")
    crops = [
        _caption(crop.resize((120, 120), PIL.Image.BICUBIC), name, height=16)
        for name, crop in zip(names, region_crops(photo, masks))
    ]
    top = _row(
        [
            _caption(overlay, "hand-made ATR parsing map", 16),
            _caption(mask_image.resize((size, size), PIL.Image.NEAREST), "person mask (HPFA)", 16),
        ]
    )
    bottom = _caption(_row(crops), "region crops for CLIP (CAA): masked, cropped, padded square with white", 16)
    out = PIL.Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height + 10), (255, 255, 255))
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height + 10))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "docs", "images"))
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for name, figure in (("skeleton.png", skeleton_figure()), ("parsing_overlay.png", parsing_figure())):
        path = os.path.join(args.out_dir, name)
        figure.save(path, optimize=True)
        print(f"wrote {os.path.normpath(path)} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
