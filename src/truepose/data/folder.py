"""Pairs from your own folder of person photos.

::

    root/
    ├── images/            any image files (sub-folders allowed)
    ├── pairs.csv          from,to   (image names relative to images/)
    ├── keypoints.json     {"a.jpg": [[x, y, c], ... 18 rows], ...}   or a DeepFashion-style CSV, or a folder
    └── parsing/           optional: <image stem>.png label-id maps

``truepose preprocess root/images root/cache`` writes ``cache/keypoints.json`` and ``cache/parsing/`` in exactly the
form read here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..conditioning.pose_files import read_keypoints_any
from .common import PairFileDataset, read_pairs_csv

__all__ = ["FolderPairDataset", "read_keypoints_any"]


class FolderPairDataset(PairFileDataset):
    """Pairs of your own images with keypoints and optional parsing maps.

    Keypoints are in pixels of each image file as stored (``keypoints_frame=None``) unless ``keypoints_frame``
    gives one common ``(height, width)`` frame (e.g. ``(256, 176)`` for DeepFashion annotations); they are scaled to
    ``image_size`` with the image.

    Args:
        root: Data folder; relative paths below are taken from it.
        image_size: Output ``(height, width)``.
        pairs_csv: CSV with columns ``from,to`` (image names relative to ``image_dir``).
        keypoints: ``keypoints.json`` (``{image_name: [[x, y, c] * 18]}``; ``[[x, y]] * 18`` also accepted), a
            DeepFashion-style CSV (``name:keypoints_y:keypoints_x``), or a folder of ``<stem>.json`` files.
        parsing_dir: Optional folder of ``<image stem>.png`` label-id maps.
        image_dir: Folder of the images, default ``root/images`` if it exists, else ``root``.
        label_map: Label table of the parsing maps.
        keypoints_frame: Common ``(height, width)`` frame of the keypoints, or ``None`` (each image's own size).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: Sequence[int] | int = (256, 176),
        pairs_csv: str | os.PathLike = "pairs.csv",
        keypoints: str | os.PathLike = "keypoints.json",
        parsing_dir: str | os.PathLike | None = None,
        image_dir: str | os.PathLike | None = None,
        label_map: str = "atr",
        keypoints_frame: Sequence[int] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"`root` {root} is not a directory.")
        if image_dir is None:
            image_dir = root / "images" if (root / "images").is_dir() else root
        else:
            image_dir = root / image_dir
        if not Path(image_dir).is_dir():
            raise FileNotFoundError(f"`image_dir` {image_dir} is not a directory.")
        keypoint_map, problems = read_keypoints_any(root / keypoints)
        super().__init__(
            pairs=read_pairs_csv(root / pairs_csv),
            image_dir=image_dir,
            keypoints=keypoint_map,
            image_size=image_size,
            keypoints_frame=keypoints_frame,
            parsing_dir=None if parsing_dir is None else root / parsing_dir,
            label_map=label_map,
            annotation_problems=problems,
        )
        self.root = root

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, image_size={self.image_size}, pairs={len(self)}, "
            f"parsing_dir={None if self.parsing_dir is None else str(self.parsing_dir)!r})"
        )
