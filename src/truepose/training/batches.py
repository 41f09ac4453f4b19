"""What the trainer reads: the dataset the options name, its pairs in an order seeded by ``(seed, epoch)``, and
batches in the trainer's form ([`TrainingBatch`])."""

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..conditioning.parsing import as_parsing_map
from ..conditioning.pose import draw_skeleton
from ..data.common import collate_pairs


def build_dataset(args: argparse.Namespace) -> Dataset:
    """The training split of ``--dataset`` at ``--resolution``."""
    from .. import data

    size = tuple(args.resolution)
    if args.dataset == "synthetic":
        return data.SyntheticPoseDataset(
            args.num_pairs, image_size=size, seed=args.data_seed, backgrounds=args.synthetic_backgrounds
        )
    if args.dataset == "deepfashion":
        return data.DeepFashionDataset(args.data_root, split="train", image_size=size, parsing_dir=args.parsing_dir)
    return data.FolderPairDataset(args.data_root, image_size=size, parsing_dir=args.parsing_dir)


class PairNamingDataset(Dataset):
    """A dataset wrapping ``dataset``, whose loading errors name the pair (and so the files) that failed, e.g. a
    corrupt image."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.dataset[index]
        except Exception as error:
            pair = self.dataset.pairs[index] if hasattr(self.dataset, "pairs") else index
            raise RuntimeError(f"Training data: pair {index} {pair} could not be loaded: {error}") from error


class EpochPermutationSampler(Sampler[int]):
    """Shuffles with a permutation seeded by ``(seed, epoch)``: the same order again after a resume."""

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())


def make_dataloader(args: argparse.Namespace, dataset: Dataset) -> tuple[DataLoader, EpochPermutationSampler]:
    """Batches of ``--train_batch_size`` collated pairs (an incomplete last batch is dropped) in the order of an
    [`EpochPermutationSampler`] seeded by ``--seed``; returns the loader and its sampler, whose epoch the loop sets."""
    sampler = EpochPermutationSampler(len(dataset), args.seed)
    dataloader = DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        collate_fn=collate_pairs,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
    )
    return dataloader, sampler


@dataclass
class TrainingBatch:
    """One batch in the trainer's form: images at the training size, skeletons and parsing maps."""

    sources: list[PIL.Image.Image]
    targets: list[PIL.Image.Image]
    pose_images: list[PIL.Image.Image]
    parsing_maps: list[np.ndarray]
    label_map: str


def make_batch(items: dict) -> TrainingBatch:
    """Collated dataset items -> [`TrainingBatch`] (skeletons drawn from the target keypoints)."""
    if any(parsing is None for parsing in items["source_parsing"]):
        raise ValueError(
            "Training needs source parsing maps: give the dataset a parsing_dir, or run `truepose preprocess`."
        )
    width, height = items["source_image"][0].size
    label_map = items["label_map"][0]
    return TrainingBatch(
        sources=items["source_image"],
        targets=items["target_image"],
        pose_images=[draw_skeleton(k, height, width) for k in items["target_keypoints"]],
        parsing_maps=[
            as_parsing_map(parsing, height, width, label_map, argument_name=f"source parsing of pair {name!r}")
            for parsing, name in zip(items["source_parsing"], items["name"])
        ],
        label_map=label_map,
    )
