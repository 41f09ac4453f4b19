"""Image folders and arrays for scoring (`truepose.evaluation.images`): sizes, folder listing and pairing, resizing to
uint8, the parsing maps a run needs, the pair loader and the image checks."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from truepose.evaluation import images, metrics


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_parse_size():
    assert metrics.parse_size("256x176") == (256, 176)
    assert metrics.parse_size((512, 352)) == (512, 352)
    with pytest.raises(ValueError, match="size"):
        metrics.parse_size("256")


def test_load_image_folder_sorted_bicubic_uint8(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {name: rng.integers(0, 256, (100, 70, 3), dtype=np.uint8) for name in ["b.png", "a.png", "c.jpg"]}
    for name, array in arrays.items():
        Image.fromarray(array).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    images = metrics.load_image_folder(tmp_path, (64, 48))
    assert images.shape == (3, 64, 48, 3) and images.dtype == np.uint8
    assert metrics.list_image_files(tmp_path) == ["a.png", "b.png", "c.jpg"]
    expected = np.asarray(Image.fromarray(arrays["a.png"]).resize((48, 64), Image.BICUBIC))
    np.testing.assert_array_equal(images[0], expected)
    # Already at size: read as is.
    np.testing.assert_array_equal(metrics.load_image_folder(tmp_path, (100, 70))[1], arrays["b.png"])


def test_resize_to_uint8_reads_each_array_kind_and_rejects_out_of_range_values():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (20, 14, 3), dtype=np.uint8)
    size = (10, 7)
    expected = np.asarray(Image.fromarray(pixels).resize((7, 10), Image.BICUBIC))
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels, size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels.astype(np.int64), size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels / 255.0, size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8((pixels / 255.0).astype(np.float32), size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(Image.fromarray(pixels), size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels, (20, 14)), pixels)  # already at size: unchanged
    gray = metrics.resize_to_uint8(pixels[..., 0], (20, 14))
    assert gray.shape == (20, 14, 3) and (gray == pixels[..., :1]).all()
    # 0-255 floats and 16-bit values would be clipped to white or wrapped around: refused, naming the range.
    for bad in (
        pixels.astype(np.float32),
        pixels.astype(np.int32) * 256,
        -(pixels / 255.0),
        np.full((4, 4, 3), np.nan),
    ):
        with pytest.raises(ValueError, match=r"`image` of dtype .* must hold values in \["):
            metrics.resize_to_uint8(bad, size)
    for bad in (np.full((4, 4, 3), 256, np.int64), np.full((4, 4, 3), 1.5)):  # just above each range
        with pytest.raises(ValueError, match=r"must hold values in \["):
            metrics.resize_to_uint8(bad, size)
    rgba = np.dstack([pixels, np.full((20, 14), 255, np.uint8)])
    np.testing.assert_array_equal(metrics.resize_to_uint8(rgba, size), expected)  # alpha dropped
    for shape in [(1, 20, 14, 3), (20, 14, 2), (20, 14, 5)]:
        with pytest.raises(ValueError, match=r"`image` must be an \(H, W\)"):
            metrics.resize_to_uint8(np.zeros(shape, np.uint8), size)
    with pytest.raises(TypeError, match="`image` must be an integer or floating-point array"):
        metrics.resize_to_uint8(pixels > 128, size)


def test_pair_image_folders(tmp_path):
    for folder, names in {"real": ["x.jpg", "y.jpg", "z.jpg"], "fake": ["x.png", "y.png", "w.png"]}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("RGB", (8, 8)).save(tmp_path / folder / name)
    with pytest.raises(ValueError) as error:
        metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake")
    message = str(error.value)
    assert "missing in fake_dir: z" in message and "missing in real_dir: w" in message
    # With `names`, only those are paired and other files are ignored; a missing one is still reported.
    assert metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake", names=["y"]) == [("y.jpg", "y.png")]
    with pytest.raises(ValueError, match="missing in fake_dir: z"):
        metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake", names=["x", "z"])
    os.remove(tmp_path / "real" / "z.jpg")
    os.remove(tmp_path / "fake" / "w.png")
    assert metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake") == [("x.jpg", "x.png"), ("y.jpg", "y.png")]
    with pytest.raises(ValueError, match="does not exist"):
        metrics.list_image_files(tmp_path / "nope")


def test_sizes_parse_in_every_written_form_and_say_what_is_wrong():
    for size in ("256x176", "256,176", "256X176", " 256 x 176 ", (256, 176), [256, 176]):
        assert metrics.parse_size(size) == (256, 176)
    assert metrics.parse_size((1, 1)) == (1, 1)
    for size, message in [
        ("256", "`size` must look like 'HxW' (e.g. '256x176'), got '256'."),
        ((256,), "`size` must be (height, width), got (256,)."),
        ("8x0", "`size` must be positive, got (8, 0)."),
        ((0, 8), "`size` must be positive, got (0, 8)."),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            metrics.parse_size(size)


def test_image_folders_read_the_given_names_or_all(tmp_path, pooled_colour):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (6, 4), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    assert metrics.load_image_folder(tmp_path, (4, 6)).shape == (3, 4, 6, 3)
    chosen = metrics.load_image_folder(tmp_path, (4, 6), names=["2.png"])
    assert chosen.shape == (1, 4, 6, 3) and chosen[0, 0, 0, 0] == 160
    empty = metrics.load_image_folder(tmp_path, (4, 6), names=[])
    assert empty.shape == (0, 4, 6, 3) and empty.dtype == np.uint8

    mu, _, count = metrics.folder_statistics(tmp_path, pooled_colour, (4, 6), names=["0.png", "2.png"])
    assert count == 2 and mu.shape == (4,)
    assert metrics.folder_statistics(tmp_path, pooled_colour, (4, 6))[2] == 3


def test_image_folder_errors_name_the_folders_and_list_the_names(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    message = f"Image folder {str(tmp_path / 'empty')!r} contains no images (expected files ending in "
    with pytest.raises(ValueError, match=f"^{re.escape(message + str(metrics.IMAGE_EXTENSIONS))}\\)\\.$"):
        metrics.list_image_files(tmp_path / "empty")
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    for i in range(12):
        Image.new("RGB", (4, 4)).save(real / f"{i:02d}.png")
    for i in range(10, 21):
        Image.new("RGB", (4, 4)).save(fake / f"{i:02d}.png")
    expected = "\n".join([
        f"Cannot pair {str(real)!r} (real) with {str(fake)!r} (fake) by file name:",
        "  missing in fake_dir: 00, 01, 02, 03, 04, 05, 06, 07, 08, 09",  # ten: all shown
        "  missing in real_dir: 12, 13, 14, 15, 16, 17, 18, 19, 20",
    ])  # fmt: skip
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        metrics.pair_image_folders(real, fake)
    Image.new("RGB", (4, 4)).save(real / "21.png")  # 11 missing in fake_dir: the first ten, then the count
    expected = expected.replace("08, 09\n", "08, 09, ... (11 in all)\n")
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        metrics.pair_image_folders(real, fake)
    Image.new("RGB", (4, 4)).save(real / "00.jpg")
    message = f"Folder {str(real)!r} holds two images named '00': '00.jpg' and '00.png'."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.pair_image_folders(real, fake)


def test_target_parsing_files_lists_the_missing_maps(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"`parsing_dir` {str(tmp_path / 'no')!r} is not a")):
        metrics.target_parsing_files(tmp_path / "no", ["a.jpg"])
    (tmp_path / "a.png").write_bytes(b"")
    assert metrics.target_parsing_files(tmp_path, ["a.jpg"]) == [tmp_path / "a.png"]
    names = [f"{i:02d}.jpg" for i in range(11)]
    listed = ", ".join(f"{i:02d}.png" for i in range(10))
    message = f"`parsing_dir` {str(tmp_path)!r} has no parsing map for: {listed}"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}, \\.\\.\\. \\(11 in all\\)\\.$"):
        metrics.target_parsing_files(tmp_path, names)
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}\\.$"):  # ten: all shown, no count
        metrics.target_parsing_files(tmp_path, names[:10])


def test_the_pair_loader_keeps_file_order_in_batches_of_the_given_size():
    """Pairs must come in file order: the parsing maps are matched to them by position."""
    batches = [batch.tolist() for batch in images.image_loader(list(range(10)), 4, 0)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert images.image_loader(list(range(10)), 4, 1).num_workers == 1


def test_image_checks_need_every_condition():
    with pytest.raises(ValueError, match=_exactly("Expected images of shape (N, H, W, 3), got (1, 8, 8, 4).")):
        images.to_float(np.zeros((1, 8, 8, 4), np.uint8))  # 4-D but not RGB
    with pytest.raises(ValueError, match=_exactly("Expected images of shape (N, H, W, 3), got (8, 8, 3).")):
        images.to_float(np.zeros((8, 8, 3), np.uint8))  # RGB but not a batch
    with pytest.raises(
        ValueError, match=_exactly("Expected uint8 images (the protocol scores uint8), got torch.float32.")
    ):
        images.to_float(np.zeros((1, 8, 8, 3), np.float32))
    real = np.zeros((64, 64, 3), np.uint8)
    for fake in (real.astype(np.float64), real.astype(np.int16)):  # one of the two not uint8 is enough
        message = f"`real` and `fake` must be uint8 (H, W, 3) images, got uint8 and {fake.dtype}."
        with pytest.raises(ValueError, match=_exactly(message)):
            metrics.ssim(real, fake)


def test_metrics_read_images_with_the_datasets_loader(tmp_path, monkeypatch):
    import PIL.Image

    from truepose.conditioning.image import load_image_file
    from truepose.data import common as data_common
    from truepose.evaluation import images as evaluation_images

    rgba = np.random.default_rng(0).integers(0, 256, (20, 14, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the colour underneath is what both loaders keep
    PIL.Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(evaluation_images.load_image(tmp_path / "rgba.png", (20, 14)), rgba[..., :3])
    np.testing.assert_array_equal(np.asarray(data_common.load_image(tmp_path / "rgba.png")), rgba[..., :3])

    read = []

    def spy(path):
        read.append(path)
        return load_image_file(path)

    monkeypatch.setattr(evaluation_images, "load_image_file", spy)
    loaded = evaluation_images.load_image_folder(tmp_path, (10, 7))
    assert read == [tmp_path / "rgba.png"] and loaded.shape == (1, 10, 7, 3)
