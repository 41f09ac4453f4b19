"""Make a contact sheet of synthetic pose-transfer pairs (source | target | target parsing).

python examples/make_synthetic_sheet.py --output docs/images/synthetic_pairs.png --size 128 --pairs 8
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from truepose.data import SyntheticPoseDataset

# A fixed colour per ATR label id for showing parsing maps.
ATR_PALETTE = np.array(
    [
        (0, 0, 0), (128, 0, 0), (254, 0, 0), (0, 85, 0), (169, 0, 51), (254, 85, 0), (0, 0, 85), (0, 119, 220),
        (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 254), (51, 169, 220),
        (0, 254, 254), (85, 254, 169), (169, 254, 85),
    ],
    dtype=np.uint8,
)  # fmt: skip


def contact_sheet(dataset: SyntheticPoseDataset, num_pairs: int, columns: int = 2) -> Image.Image:
    """Grid of ``num_pairs`` pairs, each shown as source | target | source parsing | target parsing."""
    height, width = dataset.image_size
    tiles = []
    for index in range(num_pairs):
        item = dataset[index]
        row = [np.asarray(item["source_image"]), np.asarray(item["target_image"])]
        row += [ATR_PALETTE[item["source_parsing"]], ATR_PALETTE[item["target_parsing"]]]
        tiles.append(np.concatenate(row, axis=1))
    rows = -(-num_pairs // columns)
    gap = 4
    sheet = np.full((rows * (height + gap), columns * (4 * width + gap), 3), 255, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        sheet[r * (height + gap) : r * (height + gap) + height, c * (4 * width + gap) : c * (4 * width + gap) + 4 * width] = tile  # fmt: skip
    return Image.fromarray(sheet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="docs/images/synthetic_pairs.png")
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--columns", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = SyntheticPoseDataset(num_pairs=args.pairs, image_size=(args.size, args.size), seed=args.seed)
    contact_sheet(dataset, args.pairs, args.columns).save(args.output)


if __name__ == "__main__":
    main()
