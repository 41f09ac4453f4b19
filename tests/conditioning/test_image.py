"""Image inputs (`truepose.conditioning.image`) rule by rule: each accepted form's pixels, each refusal's message.
Also the one aspect-ratio rule and the one image-file loader."""

import re

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import image as image_module
from truepose.conditioning import (
    load_image_file,
    same_aspect_ratio,
    to_pil_images,
)
from truepose.conditioning import parsing as parsing_module
from truepose.conditioning.image import IMAGE_FORMS, _to_numpy_batch, is_batch_of_images, to_pil_image
from truepose.data.common import load_image

RNG = np.random.default_rng(0)


PIXELS = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)  # (H, W, 3)


def refused(error: type[Exception], message: str):
    return pytest.raises(error, match=f"^{re.escape(message)}$")


def test_float_images_are_the_uint8_pixels_over_255():
    for dtype in (np.float16, np.float32, np.float64):
        array = PIXELS.astype(dtype) / dtype(255)
        np.testing.assert_array_equal(np.asarray(to_pil_image(array, "x")), PIXELS)
    tensor = torch.from_numpy(PIXELS).permute(2, 0, 1).float().div(255).requires_grad_()
    np.testing.assert_array_equal(np.asarray(to_pil_image(tensor, "x")), PIXELS)
    extremes = np.zeros((2, 2, 3), np.float32)
    extremes[0] = 1.0  # the range's ends are inside it
    np.testing.assert_array_equal(np.asarray(to_pil_image(extremes, "x"))[:, 0, 0], [255, 0])


def test_arrays_become_float32_batches_in_0_1():
    for form in (PIXELS, PIXELS.astype(np.float64) / 255, torch.from_numpy(PIXELS).permute(2, 0, 1)):
        batch = _to_numpy_batch(form, "x", batch=False)
        assert batch.dtype == np.float32 and batch.shape == (1, 6, 5, 3)
        np.testing.assert_allclose(batch[0], PIXELS / 255, atol=1e-6)


def test_gray_and_single_channel_forms_become_rgb():
    gray = PIXELS[..., 0]
    expected = np.repeat(gray[..., None], 3, axis=-1)
    for form in (gray, gray[..., None], torch.from_numpy(gray.copy()), torch.from_numpy(gray.copy())[None]):
        image = to_pil_image(form, "x")
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), expected)


def test_pil_images_are_converted_to_rgb_or_passed_through():
    rgb = PIL.Image.fromarray(PIXELS)
    assert to_pil_image(rgb, "x") is rgb
    gray = to_pil_image(PIL.Image.fromarray(PIXELS[..., 0]), "x")
    assert gray.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(gray)[..., 2], PIXELS[..., 0])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_channels_are_refused(mode):
    image = PIL.Image.new(mode, (4, 4))
    message = (
        f"`x` has an alpha channel (mode {mode!r}); pass `image.convert('RGB')` (or composite it over a background) "
        "so that the colour under transparent pixels is your choice."
    )
    with refused(ValueError, message):
        to_pil_image(image, "x")
    with refused(ValueError, message):
        to_pil_images(image, "x")


def test_palette_images_with_transparency_are_refused_without_it_accepted():
    palette = PIL.Image.fromarray(PIXELS).quantize(8)
    assert to_pil_image(palette, "x").mode == "RGB"
    palette.info["transparency"] = 0
    with pytest.raises(ValueError, match=r"^`x` has an alpha channel \(mode 'P'\)"):
        to_pil_image(palette, "x")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, 255.0], "`x` float values must lie in [0, 1], got [0, 255] (it looks like 0..255: divide by 255 or "
         "pass uint8)."),
        ([-1.0, 1.0], "`x` float values must lie in [0, 1], got [-1, 1] ([-1, 1]: pass (x + 1) / 2)."),
        ([-0.5, 0.5], "`x` float values must lie in [0, 1], got [-0.5, 0.5] ([-1, 1]: pass (x + 1) / 2)."),
        ([0.0, 1.5], "`x` float values must lie in [0, 1], got [0, 1.5] (it looks like 0..255: divide by 255 or "
         "pass uint8)."),
        ([0.0, np.nan], "`x` holds non-finite values (NaN or inf)."),
        ([np.inf, 0.5], "`x` holds non-finite values (NaN or inf)."),
    ],
)  # fmt: skip
def test_float_values_outside_0_1_are_refused(values, message):
    array = np.zeros((2, 2, 3), np.float32)
    array[0, 0, 0], array[1, 1, 1] = values
    with refused(ValueError, message):
        to_pil_image(array, "x")
    with refused(ValueError, message):
        to_pil_image(torch.from_numpy(array).permute(2, 0, 1), "x")


def test_other_dtypes_and_empty_arrays_are_refused():
    with refused(ValueError, "`x` must be float in [0, 1], uint8 or uint16, got dtype int32."):
        to_pil_image(PIXELS.astype(np.int32), "x")
    with refused(ValueError, "`x` must be float in [0, 1], uint8 or uint16, got dtype torch.int64."):
        to_pil_image(torch.zeros(3, 2, 2, dtype=torch.int64), "x")
    with refused(ValueError, "`x` is empty (shape (1, 0, 4, 3))."):
        to_pil_image(np.zeros((0, 4, 3), np.float32), "x")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 4, 4, 3), "`x` as an array must have shape (H, W, 3) (channels last), got shape (2, 4, 4, 3)."),
        ((4, 4, 2), "`x` as an array must have shape (H, W, 3) (channels last), got shape (4, 4, 2)."),
        ((4, 4, 4), "`x` as an array must have shape (H, W, 3) (channels last) (an alpha channel is not accepted: "
         "drop it), got shape (4, 4, 4)."),
        ((1, 1, 4, 4, 3), "`x` as an array must have shape (H, W, 3) (channels last), got shape (1, 1, 4, 4, 3)."),
    ],
)  # fmt: skip
def test_wrong_array_shapes_are_refused(shape, message):
    with refused(ValueError, message):
        to_pil_image(np.zeros(shape, np.uint8), "x")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 3, 4, 4), "`x` as a tensor must have shape (3, H, W) (channels first), got shape (2, 3, 4, 4)."),
        ((4, 4, 3), "`x` as a tensor must have shape (3, H, W) (channels first), got shape (4, 4, 3)."),
        ((1, 1, 3, 4, 4), "`x` as a tensor must have shape (3, H, W) (channels first), got shape (1, 1, 3, 4, 4)."),
    ],
)  # fmt: skip
def test_wrong_tensor_shapes_are_refused(shape, message):
    with refused(ValueError, message):
        to_pil_image(torch.zeros(shape), "x")


def test_batches_are_split_and_their_shapes_checked():
    batch = np.stack([PIXELS, 255 - PIXELS])
    for form in (batch, torch.from_numpy(batch).permute(0, 3, 1, 2)):
        images = to_pil_images(form, "x")
        assert [image.mode for image in images] == ["RGB", "RGB"]
        np.testing.assert_array_equal(np.asarray(images[1]), 255 - PIXELS)
    with refused(ValueError, "`x` as an array must have shape (H, W, 3) or (N, H, W, 3) (channels last) (an alpha "
                 "channel is not accepted: drop it), got shape (2, 6, 5, 4)."):  # fmt: skip
        to_pil_images(np.zeros((2, 6, 5, 4), np.uint8), "x")
    with refused(ValueError, "`x` as a tensor must have shape (3, H, W) or (N, 3, H, W) (channels first), got shape "
                 "(2, 4, 6, 5)."):  # fmt: skip
        to_pil_images(torch.zeros(2, 4, 6, 5), "x")


def test_lists_name_the_element_at_fault():
    images = to_pil_images((PIXELS, PIL.Image.fromarray(PIXELS)), "x")
    assert len(images) == 2 and all(np.array_equal(np.asarray(image), PIXELS) for image in images)
    with refused(ValueError, "`x` is an empty list; pass at least one image."):
        to_pil_images([], "x")
    with refused(ValueError, "`x[1]` as an array must have shape (H, W, 3) (channels last), got shape (2, 6, 5, 3)."):
        to_pil_images([PIXELS, np.stack([PIXELS, PIXELS])], "x")


def test_other_types_are_refused_with_the_accepted_forms():
    with refused(TypeError, f"`x` must be {IMAGE_FORMS}; got str."):
        to_pil_images("photo.jpg", "x")
    with refused(TypeError, "`x` must be one image: a PIL image, an np.ndarray (H, W, 3) or a torch.Tensor (3, H, W); "
                 "got list."):  # fmt: skip
        to_pil_image([PIXELS], "x")
    with pytest.raises(TypeError, match="^`image` must be one image"):  # the default argument name
        to_pil_image(None)
    with pytest.raises(TypeError, match="^`image` must be a PIL image"):
        to_pil_images(None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [([], True), ((PIXELS,), True), (np.zeros((1, 2, 2, 3)), True), (torch.zeros(1, 3, 2, 2), True),
     (PIXELS, False), (torch.zeros(3, 2, 2), False), (PIL.Image.fromarray(PIXELS), False)],
)  # fmt: skip
def test_what_a_batch_of_images_is(value, expected):
    assert is_batch_of_images(value) is expected


@pytest.mark.parametrize(
    "size, same",
    [((64, 48), True), ((128, 96), True), ((129, 96), True), ((130, 96), False), ((64, 64), False), ((63, 48), False)],
)
def test_same_aspect_ratio_within_one_percent(size, same):
    assert same_aspect_ratio(size, (64, 48)) is same
    assert same_aspect_ratio(size, (64, 48), tolerance=0.05) is (size != (64, 64))


def test_one_aspect_ratio_tolerance():
    assert image_module.ASPECT_RATIO_TOLERANCE == 0.01
    assert not hasattr(parsing_module, "ASPECT_RATIO_TOLERANCE")  # no second copy to drift


def test_load_image_file_is_the_datasets_loader(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the colour underneath is kept
    PIL.Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = load_image_file(tmp_path / "rgba.png")
    assert image.mode == "RGB" and image.size == (5, 6)
    np.testing.assert_array_equal(np.asarray(image), rgba[..., :3])
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "rgba.png")), rgba[..., :3])

    PIL.Image.fromarray(np.full((4, 4), 257 * 200, np.uint16)).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(np.asarray(load_image_file(str(tmp_path / "deep.png"))), np.full((4, 4, 3), 200))

    PIL.Image.fromarray(np.full((4, 4), 2.0, np.float32), "F").save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match=r"float\.tiff.*must lie in \[0, 1\]"):
        load_image_file(tmp_path / "float.tiff")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(PIL.UnidentifiedImageError):
        load_image_file(tmp_path / "text.png")
