"""A procedural pose-transfer data set that needs no download.

Each pair shows one cartoon person (same face, hair, garments, colours and background) in two poses, with exact
COCO-18 keypoints and ATR parsing maps rendered at the same time. Figures are drawn with ``PIL.ImageDraw`` at 2-4x
the output size into a map of "part ids"; garment patterns (stripes, checks, dots, a logo or short text) are
evaluated in the torso's own frame so they move with the body, and the result is box-downsampled.

Modules: `appearance` (the person: `Appearance`, `random_appearance`, garment patterns, prints, backgrounds),
`poses` (`random_pose`), `body` (where a figure is, estimated from its keypoints), `rendering` (`render_person`, in
named drawing and colouring stages), `dataset` (`SyntheticPoseDataset`, `sample_pair_spec`).

Example::

    from truepose.data import SyntheticPoseDataset

    dataset = SyntheticPoseDataset(num_pairs=1000, image_size=(128, 128), seed=0)
    item = dataset[0]  # same keys as every TruePose dataset, label_map "atr"
"""

from .appearance import BACKGROUND_SETS, Appearance, random_appearance
from .dataset import SyntheticPoseDataset, sample_pair_spec
from .poses import random_pose
from .rendering import render_person

__all__ = [
    "BACKGROUND_SETS",
    "Appearance",
    "SyntheticPoseDataset",
    "random_appearance",
    "random_pose",
    "render_person",
    "sample_pair_spec",
]
