import shutil

import numpy as np
import pytest

from truepose.conditioning import read_deepfashion_annotations
from truepose.data import DeepFashionDataset, check_pair_item, make_deepfashion_fixture
from truepose.data.common import save_parsing


@pytest.mark.parametrize("split", ["train", "test"])
def test_fixture_loads(deepfashion_root, split):
    dataset = DeepFashionDataset(deepfashion_root, split=split, image_size=(256, 176))
    assert len(dataset) == 4  # two people, two views each, both directions
    assert dataset.validate() == []
    item = dataset[0]
    check_pair_item(item, (256, 176))
    assert item["source_parsing"] is None and item["label_map"] == "atr"
    source, target = dataset.pairs[0]
    assert source.startswith("fashion") and source.endswith(".jpg")
    assert item["name"] == f"{source[:-4]}___{target[:-4]}"


def test_sizes_scaling_and_parsing(deepfashion_root):
    problems = []
    annotations = read_deepfashion_annotations(deepfashion_root / "fasion-resize-annotation-test.csv", problems)
    assert problems == []
    dataset = DeepFashionDataset(
        deepfashion_root, split="test", image_size=(512, 352), parsing_dir=deepfashion_root / "parsing"
    )
    item = dataset[1]
    check_pair_item(item, (512, 352))
    source = dataset.pairs[1][0]
    expected = annotations[source].copy()
    visible = expected[:, 2] > 0
    expected[visible, :2] = (expected[visible, :2] + 0.5) * 2 - 0.5  # 256x176 -> 512x352, pixel centres aligned
    np.testing.assert_array_equal(item["source_keypoints"], expected)
    assert item["source_parsing"].shape == (512, 352)
    # parsing is on the person at the (scaled) keypoints
    xs, ys = expected[visible, 0].astype(int), expected[visible, 1].astype(int)
    assert (item["source_parsing"][ys, xs] != 0).mean() > 0.9
    assert dataset.validate() == []


def test_validate_reports_problems_by_path(tmp_path):
    root = make_deepfashion_fixture(tmp_path / "fashion", num_images=4, image_size=(64, 44))
    dataset = DeepFashionDataset(root, split="train", image_size=(64, 44), parsing_dir=root / "parsing")
    names = dataset.image_names()
    # delete an image, truncate another, corrupt a keypoint row, delete a parsing map
    (root / "train_highres" / names[0]).unlink()
    (root / "train_highres" / names[1]).write_bytes(b"not a jpeg")
    csv_path = root / "fasion-resize-annotation-train.csv"
    lines = csv_path.read_text().splitlines()
    bad_line = next(i for i, line in enumerate(lines) if line.startswith(names[2]))
    lines[bad_line] = f"{names[2]}: [1, 2, 3]: [oops"
    csv_path.write_text("\n".join(lines) + "\n")
    (root / "parsing" / f"{names[3][:-4]}.png").unlink()

    problems = DeepFashionDataset(root, split="train", image_size=(64, 44), parsing_dir=root / "parsing").validate()
    text = "\n".join(problems)
    assert f"{root / 'train_highres' / names[0]}: missing image" in text
    assert f"{root / 'train_highres' / names[1]}: unreadable image" in text
    assert f"{csv_path}:{bad_line + 1}: malformed keypoint row" in text
    assert f"missing keypoint row for {names[2]!r}" in text
    assert f"{root / 'parsing' / (names[3][:-4] + '.png')}: missing parsing map" in text
    assert len(problems) == 5
    with pytest.raises(FileNotFoundError, match=names[0]):
        dataset[[p[0] for p in dataset.pairs].index(names[0])]


def test_missing_files_are_reported(tmp_path):
    root = make_deepfashion_fixture(tmp_path / "fashion", num_images=2, image_size=(64, 44), with_parsing=False)
    (root / "fasion-resize-pairs-test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="fasion-resize-pairs-test.csv"):
        DeepFashionDataset(root, split="test")
    shutil.rmtree(root / "train_highres")
    with pytest.raises(FileNotFoundError, match="train_highres"):
        DeepFashionDataset(root, split="train")
    with pytest.raises(ValueError, match="split"):
        DeepFashionDataset(root, split="val")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        DeepFashionDataset(tmp_path / "nowhere")


def test_label_map(deepfashion_root, tmp_path):
    with pytest.raises(ValueError, match="label_map"):
        DeepFashionDataset(deepfashion_root, split="test", label_map="nonsense")
    parsing_dir = tmp_path / "parsing"
    shutil.copytree(deepfashion_root / "parsing", parsing_dir)
    dataset = DeepFashionDataset(deepfashion_root, split="test", parsing_dir=parsing_dir, label_map="LIP")
    assert dataset[0]["label_map"] == "lip" and dataset.validate() == []
    bad = parsing_dir / f"{dataset.pairs[0][0][:-4]}.png"
    save_parsing(np.full((8, 8), 30), bad)
    (problem,) = dataset.validate()
    assert problem.startswith(f"`{bad}` holds label ids [30]") and "'lip'" in problem
