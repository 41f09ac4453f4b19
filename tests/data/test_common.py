import numpy as np
import pytest
from PIL import Image

from truepose.conditioning import read_deepfashion_annotations
from truepose.data import check_pair_item, collate_pairs, pair_name, pair_seed
from truepose.data.common import atomic_write, load_parsing, read_pairs_csv, save_parsing


def test_pair_seed_is_stable_and_distinct():
    assert pair_seed("a___b") == pair_seed("a___b")
    assert pair_seed("a___b") != pair_seed("b___a")
    assert 0 <= pair_seed("x") < 2**63
    # sha256-based: the same value on every machine and Python run
    assert pair_seed(
        "fashionWOMENDressesid0000012345_1front___fashionWOMENDressesid0000012345_2side"
    ) == int.from_bytes(
        __import__("hashlib")
        .sha256(b"fashionWOMENDressesid0000012345_1front___fashionWOMENDressesid0000012345_2side")
        .digest()[:8],
        "little",
    ) & (2**63 - 1)


def test_pair_name():
    assert pair_name("a/b.jpg", "c.png") == "a__b___c"
    assert pair_name("x_1front.jpg", "x_2side.jpg") == "x_1front___x_2side"


def test_collate_pairs_keeps_lists():
    items = [
        {"source_image": Image.new("RGB", (4, 4)), "source_parsing": None, "name": "a"},
        {"source_image": Image.new("RGB", (4, 4)), "source_parsing": np.zeros((4, 4)), "name": "b"},
    ]
    batch = collate_pairs(items)
    assert batch["name"] == ["a", "b"]
    assert batch["source_parsing"][0] is None and isinstance(batch["source_image"][1], Image.Image)
    with pytest.raises(ValueError):
        collate_pairs([])


def test_parsing_roundtrip_and_resize(tmp_path):
    parsing = np.random.default_rng(0).integers(0, 18, size=(8, 6))
    save_parsing(parsing, tmp_path / "p.png")
    assert not list(tmp_path.glob(".*.tmp"))
    loaded = load_parsing(tmp_path / "p.png", "atr")
    assert loaded.dtype == np.int64 and (loaded == parsing).all()
    resized = load_parsing(tmp_path / "p.png", "atr", (16, 12))  # nearest: each label pixel becomes a 2x2 block
    np.testing.assert_array_equal(resized, parsing.repeat(2, axis=0).repeat(2, axis=1))
    Image.fromarray(np.stack([parsing.astype(np.uint8)] * 3, axis=-1)).save(tmp_path / "gray_rgb.png")
    np.testing.assert_array_equal(load_parsing(tmp_path / "gray_rgb.png", "atr"), parsing)
    Image.new("RGB", (2, 2), (255, 0, 0)).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match="colour"):
        load_parsing(tmp_path / "colour.png", "atr")


def test_atomic_write_leaves_no_partial_file(tmp_path):
    def broken(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.bin", broken)
    assert list(tmp_path.iterdir()) == []


def test_readers_report_problems(tmp_path):
    (tmp_path / "pairs.csv").write_text("to,other\na,b\n")
    with pytest.raises(ValueError, match="from,to"):
        read_pairs_csv(tmp_path / "pairs.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_pairs_csv(tmp_path / "missing.csv")
    row = ", ".join(["1"] * 18)
    (tmp_path / "ann.csv").write_text(f"name:keypoints_y:keypoints_x\na.jpg: [{row}]: [{row}]\nb.jpg: [1, 2]: [3]\n")
    problems = []
    keypoints = read_deepfashion_annotations(tmp_path / "ann.csv", problems)
    assert list(keypoints) == ["a.jpg"]
    assert len(problems) == 1 and "ann.csv:3" in problems[0]


def test_check_pair_item():
    item = {
        "source_image": Image.new("RGB", (4, 6)),
        "target_image": Image.new("RGB", (4, 6)),
        "source_keypoints": np.zeros((18, 3), np.float32),
        "target_keypoints": np.zeros((18, 3), np.float32),
        "source_parsing": None,
        "target_parsing": np.zeros((6, 4), np.int64),
        "label_map": "atr",
        "name": "a___b",
    }
    check_pair_item(item, (6, 4))
    item["target_parsing"] = np.zeros((6, 4), np.int32)
    with pytest.raises(ValueError, match="target_parsing"):
        check_pair_item(item)


def test_every_dataset_builds_its_items_with_pair_item(tmp_path, monkeypatch):
    from truepose.data import DeepFashionDataset, SyntheticPoseDataset, make_deepfashion_fixture
    from truepose.data.common import PAIR_ITEM_KEYS, check_pair_item, pair_item
    from truepose.testing import TINY_KEYPOINTS, tiny_person

    image, parsing = tiny_person()
    keypoints = TINY_KEYPOINTS.astype(np.float32)
    item = pair_item((image, keypoints, parsing), (image, keypoints, None), "atr", "a___b")
    assert tuple(item) == PAIR_ITEM_KEYS
    check_pair_item(item)
    assert item["source_parsing"] is parsing and item["target_parsing"] is None

    built = []

    def spy(source, target, label_map, name):
        built.append(name)
        return pair_item(source, target, label_map, name)

    monkeypatch.setattr("truepose.data.common.pair_item", spy)
    monkeypatch.setattr("truepose.data.synthetic.dataset.pair_item", spy)
    synthetic = SyntheticPoseDataset(2, (64, 48), seed=3)[1]
    root = make_deepfashion_fixture(tmp_path / "deepfashion", num_images=4, image_size=(64, 44))
    deepfashion = DeepFashionDataset(root, split="test", image_size=(64, 44))[0]
    assert built == [synthetic["name"], deepfashion["name"]]
    for built_item in (synthetic, deepfashion):
        assert tuple(built_item) == PAIR_ITEM_KEYS
        check_pair_item(built_item)
