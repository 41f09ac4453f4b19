import json

import numpy as np
import pytest
from PIL import Image

from truepose.data import FolderPairDataset
from truepose.data.preprocess import list_images, main, preprocess


class FakeParser:
    """Callable with the shape of `parse_images`: list of PIL images -> list of (H, W) label maps."""

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += len(images)
        return [(np.asarray(image.convert("L")) > 128).astype(np.int64) * 4 for image in images]


class FakeDetector:
    """Callable with the shape of `PoseDetector.__call__`: image -> (18, 3), ValueError without a person."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        if image.getpixel((0, 0)) == (0, 0, 0):
            raise ValueError("no person found in the image")
        keypoints = np.full((18, 3), 1.0, dtype=np.float32)
        keypoints[:, 0] = np.arange(18) % image.width
        keypoints[:, 1] = np.arange(18) % image.height
        return keypoints


@pytest.fixture()
def image_dir(tmp_path):
    directory = tmp_path / "images"
    (directory / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        Image.fromarray(rng.integers(1, 255, (20, 16, 3), dtype=np.uint8)).save(directory / name)
    Image.new("RGB", (16, 20), (0, 0, 0)).save(directory / "empty.png")  # nobody in it
    (directory / "notes.txt").write_text("not an image")
    return directory


def test_preprocess_writes_and_resumes(image_dir, tmp_path):
    out = tmp_path / "cache"
    parser, detector = FakeParser(), FakeDetector()
    summary = preprocess(image_dir, out, parser=parser, detector=detector, batch_size=2)
    assert summary.images == 4 and summary.parsed == 4 and summary.detected == 4 and summary.skipped == 0
    assert summary.no_person == [str(image_dir / "empty.png")]
    assert (out / "parsing" / "sub" / "c.png").is_file() and (out / "keypoints" / "b.json").is_file()
    parsing = np.asarray(Image.open(out / "parsing" / "a.png"))
    assert parsing.shape == (20, 16) and set(np.unique(parsing)) <= {0, 4}
    merged = json.loads((out / "keypoints.json").read_text())
    assert sorted(merged) == ["a.jpg", "b.png", "empty.png", "sub/c.jpg"]
    assert np.asarray(merged["empty.png"])[:, 2].max() == 0
    assert not list(out.rglob("*.tmp"))

    # second run: nothing to do
    parser2, detector2 = FakeParser(), FakeDetector()
    summary = preprocess(image_dir, out, parser=parser2, detector=detector2)
    assert summary.parsed == 0 and summary.detected == 0 and summary.skipped == 4
    assert parser2.calls == 0 and detector2.calls == 0

    # an interrupted write (temp file only) does not count as done
    (out / "keypoints" / "b.json").rename(out / "keypoints" / ".b.json.tmp")
    (out / "parsing" / "sub" / "c.png").unlink()
    (out / "parsing" / "sub" / ".c.png.tmp").write_bytes(b"\x89PNG half")
    summary = preprocess(image_dir, out, parser=parser2, detector=detector2)
    assert summary.parsed == 1 and summary.detected == 1 and summary.skipped == 2
    assert parser2.calls == 1 and detector2.calls == 1
    assert (out / "keypoints" / "b.json").is_file() and np.asarray(Image.open(out / "parsing" / "sub" / "c.png")).size
    assert not list(out.rglob("*.tmp"))  # the stale temp files were overwritten and moved into place

    # overwrite recomputes everything
    summary = preprocess(image_dir, out, detector=FakeDetector(), overwrite=True)
    assert summary.detected == 4


def test_preprocess_output_feeds_folder_dataset(image_dir, tmp_path):
    out = tmp_path / "cache"
    preprocess(image_dir, out, parser=FakeParser(), detector=FakeDetector())
    (tmp_path / "pairs.csv").write_text("from,to\na.jpg,sub/c.jpg\nsub/c.jpg,b.png\n")
    dataset = FolderPairDataset(
        tmp_path,
        image_size=(40, 32),
        image_dir="images",
        keypoints="cache/keypoints.json",
        parsing_dir="cache/parsing",
    )
    assert dataset.validate() == []
    item = dataset[0]
    assert item["name"] == "a___sub__c"
    assert item["target_parsing"].shape == (40, 32)
    # (3, 3) in a 20x16 file, pixel centres aligned: (3 + 0.5) * 2 - 0.5
    np.testing.assert_allclose(item["source_keypoints"][3, :2], [6.5, 6.5])


def test_cli(image_dir, tmp_path, monkeypatch):
    import truepose.data.preprocess as module

    monkeypatch.setattr(module, "load_detector", lambda detector, device=None, kind="openpose": FakeDetector())
    out = tmp_path / "cli"
    assert main([str(image_dir), str(out), "--detector", "fake/path"]) == 0
    assert (out / "keypoints.json").is_file() and not (out / "parsing").exists()
    with pytest.raises(SystemExit):
        main([str(image_dir), str(out)])  # neither --parser nor --detector
    assert main([str(tmp_path / "missing"), str(out), "--detector", "x"]) == 1


def test_list_images_and_errors(image_dir, tmp_path):
    assert list_images(image_dir) == ["a.jpg", "b.png", "empty.png", "sub/c.jpg"]
    with pytest.raises(ValueError, match="Nothing to do"):
        preprocess(image_dir, tmp_path / "out")
    with pytest.raises(TypeError, match="parser"):
        preprocess(image_dir, tmp_path / "out", parser=123)


def test_real_parse_images_with_a_tiny_segformer(image_dir, tmp_path):
    """`--parser PATH` loads a transformers checkpoint and runs `truepose.conditioning.parsing.parse_images`."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    config = SegformerConfig(
        num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8], num_attention_heads=[1], patch_sizes=[3],
        strides=[2], mlp_ratios=[1], decoder_hidden_size=8, num_labels=18,
    )  # fmt: skip
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "parser")
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "parser")
    summary = preprocess(image_dir, tmp_path / "out", parser=str(tmp_path / "parser"))
    assert summary.parsed == 4 and summary.failed == []
    parsing = np.asarray(Image.open(tmp_path / "out" / "parsing" / "sub" / "c.png"))
    assert parsing.shape == (20, 16) and parsing.max() < 18
