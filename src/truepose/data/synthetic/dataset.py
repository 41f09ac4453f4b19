"""`SyntheticPoseDataset` (one random person in two random poses per item) and `sample_pair_spec`, the appearance
and poses of one pair, a function of ``(seed, index)`` only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from ..common import PairItem, check_image_size, pair_item
from .appearance import Appearance, check_backgrounds, random_appearance
from .poses import random_pose
from .rendering import render_person


def sample_pair_spec(
    seed: int, index: int, image_size: Sequence[int] | int = (64, 64), backgrounds: str = "varied"
) -> tuple[Appearance, np.ndarray, np.ndarray]:
    """Draws the appearance and the two poses of pair ``index`` of a :class:`SyntheticPoseDataset` with ``seed``
    and ``backgrounds`` (nothing is rendered): ``(appearance, source_keypoints, target_keypoints)``, keypoints
    ``(18, 3)`` float32 in pixels of ``image_size``."""
    height, width = check_image_size(image_size)
    rng = np.random.default_rng([int(seed), int(index)])
    appearance = random_appearance(rng, backgrounds)
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
        backgrounds: ``"varied"`` (any colour, gradients, noise) or ``"studio"`` (plain light backgrounds as in
            DeepFashion). Item ``i`` shows the same person in the same poses, under the same name, with either.
    """

    label_map = "atr"

    def __init__(
        self, num_pairs: int, image_size: Sequence[int] | int = (64, 64), seed: int = 0, backgrounds: str = "varied"
    ) -> None:
        super().__init__()
        if not isinstance(num_pairs, int | np.integer) or num_pairs < 0:
            raise ValueError(f"`num_pairs` must be a non-negative int, got {num_pairs!r}.")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
        self.num_pairs = int(num_pairs)
        self.image_size = check_image_size(image_size)
        self.seed = int(seed)
        check_backgrounds(backgrounds)
        self.backgrounds = backgrounds

    def __len__(self) -> int:
        return self.num_pairs

    def pair_spec(self, index: int) -> tuple[Appearance, np.ndarray, np.ndarray]:
        """``(appearance, source_keypoints, target_keypoints)`` of pair ``index``, without rendering."""
        if not -self.num_pairs <= index < self.num_pairs:
            raise IndexError(f"Index {index} out of range for a dataset of {self.num_pairs} pairs.")
        return sample_pair_spec(self.seed, index % self.num_pairs, self.image_size, self.backgrounds)

    def __getitem__(self, index: int) -> PairItem:
        appearance, source_keypoints, target_keypoints = self.pair_spec(index)
        source_image, source_parsing = render_person(appearance, source_keypoints, self.image_size)
        target_image, target_parsing = render_person(appearance, target_keypoints, self.image_size)
        stem = f"synthetic-{self.seed}-{index % self.num_pairs:07d}"
        return pair_item(
            (source_image, source_keypoints, source_parsing),
            (target_image, target_keypoints, target_parsing),
            self.label_map,
            f"{stem}-a___{stem}-b",
        )
