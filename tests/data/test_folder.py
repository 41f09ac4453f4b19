import csv
import json
import shutil

import numpy as np
import pytest

from truepose.conditioning import read_deepfashion_annotations
from truepose.data import FolderPairDataset, check_pair_item
from truepose.data.common import load_image
from truepose.data.deepfashion import write_annotation_csv


@pytest.fixture()
def folder(tmp_path, deepfashion_root):
    """A user folder: images/ (256x176 files), pairs.csv and keypoints.json in pixels of the files."""
    root = tmp_path / "mydata"
    shutil.copytree(deepfashion_root / "test_highres", root / "images")
    shutil.copytree(deepfashion_root / "parsing", root / "parsing")
    annotations = read_deepfashion_annotations(deepfashion_root / "fasion-resize-annotation-test.csv")
    (root / "keypoints.json").write_text(json.dumps({k: v.tolist() for k, v in annotations.items()}))
    shutil.copy(deepfashion_root / "fasion-resize-pairs-test.csv", root / "pairs.csv")
    return root, annotations


def test_json_keypoints(folder):
    root, annotations = folder
    dataset = FolderPairDataset(root, image_size=(128, 88), parsing_dir="parsing")
    assert len(dataset) == 4 and dataset.validate() == []
    item = dataset[0]
    check_pair_item(item, (128, 88))
    source = dataset.pairs[0][0]
    expected = annotations[source].copy()
    visible = expected[:, 2] > 0
    expected[visible, :2] = (expected[visible, :2] + 0.5) / 2 - 0.5  # files are 256x176 -> 128x88, pixel centres
    np.testing.assert_allclose(item["source_keypoints"], expected)
    assert item["source_parsing"].shape == (128, 88)


def test_csv_and_directory_keypoints(folder):
    root, annotations = folder
    write_annotation_csv(root / "kp.csv", annotations)
    (root / "keypoints.json").unlink()
    for name, array in annotations.items():  # per-image files as written by `truepose preprocess`
        path = root / "kp_dir" / f"{name[:-4]}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(array[:, :2].tolist()))  # (18, 2) is accepted too
    for keypoints in ("kp.csv", "kp_dir"):
        dataset = FolderPairDataset(root, image_size=(256, 176), keypoints=keypoints)
        assert dataset.validate() == []
        item = dataset[2]
        source = dataset.pairs[2][0]
        visible = annotations[source][:, 2] > 0
        np.testing.assert_allclose(item["source_keypoints"][visible, :2], annotations[source][visible, :2])


def test_keypoints_frame_and_image_dir(tmp_path, deepfashion_root):
    # images at the top level of root, DeepFashion CSV in its 256x176 frame, files resized to 128x88
    root = tmp_path / "flat"
    root.mkdir()
    for path in (deepfashion_root / "train_highres").iterdir():
        load_image(path).resize((88, 128)).save(root / path.name)
    shutil.copy(deepfashion_root / "fasion-resize-annotation-train.csv", root / "ann.csv")
    with open(root / "my_pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([["from", "to"], *[[p.name, p.name] for p in sorted(root.glob("*.jpg"))[:2]]])
    dataset = FolderPairDataset(
        root, image_size=(256, 176), pairs_csv="my_pairs.csv", keypoints="ann.csv", keypoints_frame=(256, 176)
    )
    annotations = read_deepfashion_annotations(root / "ann.csv")
    name = dataset.pairs[0][0]
    np.testing.assert_array_equal(dataset[0]["source_keypoints"], annotations[name])


def test_validate_and_errors(folder):
    root, annotations = folder
    data = json.loads((root / "keypoints.json").read_text())
    first = sorted(data)[0]
    data[first] = [[1, 2, 3]]  # malformed
    (root / "keypoints.json").write_text(json.dumps(data))
    dataset = FolderPairDataset(root, image_size=(64, 44))
    problems = dataset.validate()
    assert any(str(root / "keypoints.json") in p and first in p for p in problems)
    assert any(p.startswith(str(root / "images" / first)) and "missing keypoint row" in p for p in problems)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        FolderPairDataset(root, keypoints="missing.json")
    with pytest.raises(FileNotFoundError, match="nope"):
        FolderPairDataset(root, parsing_dir="nope")
