"""Datasets of (source, target) person pairs with keypoints and parsing maps, and their preprocessing.

The preprocessing cache lives in ``truepose.data.preprocess`` (``from truepose.data.preprocess import preprocess``;
not re-exported here so that the submodule name is not shadowed by the function).
"""

from .common import (
    ATR_LABELS,
    PairFileDataset,
    PairItem,
    check_pair_item,
    collate_pairs,
    pair_name,
    pair_seed,
)
from .deepfashion import DeepFashionDataset, make_deepfashion_fixture
from .folder import FolderPairDataset
from .synthetic import (
    BACKGROUND_SETS,
    Appearance,
    SyntheticPoseDataset,
    random_appearance,
    random_pose,
    render_person,
    sample_pair_spec,
)

__all__ = [
    "ATR_LABELS",
    "BACKGROUND_SETS",
    "Appearance",
    "DeepFashionDataset",
    "FolderPairDataset",
    "PairFileDataset",
    "PairItem",
    "SyntheticPoseDataset",
    "check_pair_item",
    "collate_pairs",
    "pair_name",
    "pair_seed",
    "make_deepfashion_fixture",
    "random_appearance",
    "random_pose",
    "render_person",
    "sample_pair_spec",
]
