# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Image inputs: PIL images, NumPy arrays and torch tensors -> RGB `PIL.Image.Image`s.

The value-range and layout rules are those of diffusers' `VaeImageProcessor`, whose converters do the work:

- `PIL.Image.Image`: any mode without alpha ("RGB", "L", "P", ...), converted to RGB; images of more than 8 bits
  ("I;16", "I;16B", "I", "F") are first scaled to 8 bits by `to_8bit`.
- `np.ndarray`: channels last, `(H, W)`, `(H, W, 1|3)` or a batch `(N, H, W, 1|3)`; float in [0, 1], uint8 or uint16.
- `torch.Tensor`: channels first, `(H, W)`, `(1|3, H, W)` or a batch `(N, 1|3, H, W)`; float in [0, 1], uint8 or
  uint16.
- a list or tuple of single images.

Anything else is refused with an error naming the argument: float values outside [0, 1] (e.g. 0..255 floats or the
[-1, 1] range, which `VaeImageProcessor` only accepts with a deprecation warning), non-finite values, other integer
dtypes, alpha channels, an empty list.

Bit depths (`to_8bit`, shared by the pipeline, `truepose metrics` and the datasets): an unsigned 16-bit value `v`
(PIL "I;16", "I;16L", "I;16B", "I;16N"; uint16 arrays) becomes `round(v * 255 / 65535)`, so `257 * k` gives back the
8-bit `k`. PIL's 32-bit integer mode "I" is read as 16-bit data (values 0..65535, what `convert("I")` of a 16-bit
image and Pillow < 10's 16-bit PNGs hold); other values are refused. PIL's float mode "F" holds [0, 1] and is scaled
by 255, like float arrays; values outside [0, 1] or non-finite are refused.

Image files (`load_image_file`, shared by `truepose metrics` and the datasets) are read fully, scaled to 8 bits by
`to_8bit` and converted to RGB; an alpha channel is dropped. Two `(height, width)` sizes have the same aspect ratio
(`same_aspect_ratio`) when their height / width ratios differ by at most `ASPECT_RATIO_TOLERANCE` (1 %).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor

IMAGE_FORMS = (
    "a PIL image, an np.ndarray (H, W, 3) or torch.Tensor (3, H, W) (float in [0, 1], uint8 or uint16), "
    "a batch (N, H, W, 3) / (N, 3, H, W), or a list of images"
)


# Largest relative difference of two aspect ratios (height / width) that TruePose treats as the same: a parsing map
# of such a size is resized to its image, a skeleton image or source image of another one is stretched with a warning.
ASPECT_RATIO_TOLERANCE = 0.01

_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_INTEGER_TENSOR_DTYPES = (torch.uint8, *([torch.uint16] if hasattr(torch, "uint16") else []))  # uint16: torch >= 2.3


def _check_unit_range(array: np.ndarray, argument_name: str, what: str = "float values") -> None:
    """Refuse non-finite values, and values outside [0, 1] with a hint at the range they look like."""
    if not np.isfinite(array).all():
        raise ValueError(f"`{argument_name}` holds non-finite values (NaN or inf).")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:
        hint = " (it looks like 0..255: divide by 255 or pass uint8)" if high > 1 else " ([-1, 1]: pass (x + 1) / 2)"
        raise ValueError(f"`{argument_name}` {what} must lie in [0, 1], got [{low:g}, {high:g}]{hint}.")


def _array_to_float(array: np.ndarray, argument_name: str) -> np.ndarray:
    """uint8 -> [0, 1], uint16 -> [0, 1]; floats are checked to be finite and in [0, 1]; anything else is refused."""
    if array.dtype in (np.uint8, np.uint16):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"`{argument_name}` must be float in [0, 1], uint8 or uint16, got dtype {array.dtype}.")
    array = array.astype(np.float32)
    if array.size == 0:
        raise ValueError(f"`{argument_name}` is empty (shape {tuple(array.shape)}).")
    _check_unit_range(array, argument_name)
    return array


def uint16_to_uint8(array: np.ndarray) -> np.ndarray:
    """Unsigned 16-bit values -> 8 bits, ``round(v * 255 / 65535)`` in exact integer arithmetic."""
    return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def to_8bit(image: PIL.Image.Image, argument_name: str = "image") -> PIL.Image.Image:
    """``image`` scaled to an 8-bit "L" image where it has more than 8 bits per pixel ("I;16*", "I", "F"; see the
    module docstring for the rules); any other mode is returned as it is."""
    if image.mode not in (*_16_BIT_MODES, "I", "F"):
        return image
    values = np.asarray(image)
    if image.mode == "F":
        if values.size:
            _check_unit_range(values, argument_name, "values of a float ('F') image")
        return PIL.Image.fromarray((values.astype(np.float64) * 255.0).round().astype(np.uint8))
    if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(
            f"`{argument_name}` is a 32-bit integer ('I') image with values in [{values.min()}, {values.max()}]; "
            "TruePose reads 'I' images as 16-bit data (0..65535). Scale it to 8 bits and pass an 'L' or 'RGB' image."
        )
    return PIL.Image.fromarray(uint16_to_uint8(values))


def _to_numpy_batch(image: np.ndarray | torch.Tensor, argument_name: str, batch: bool) -> np.ndarray:
    """Channels-last float batch `(N, H, W, C)` in [0, 1] of an array or tensor (`batch`: N may exceed 1)."""
    if isinstance(image, torch.Tensor):
        shape = tuple(image.shape)
        tensor = image.detach()
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.ndim == 3:
            tensor = tensor[None]
        if tensor.ndim != 4 or not batch and len(tensor) > 1 or tensor.shape[1] not in (1, 3):
            expected = "(3, H, W) or (N, 3, H, W)" if batch else "(3, H, W)"
            raise ValueError(
                f"`{argument_name}` as a tensor must have shape {expected} (channels first), got shape {shape}."
            )
        if tensor.dtype in _INTEGER_TENSOR_DTYPES:
            array = tensor.cpu().permute(0, 2, 3, 1).numpy()
        elif tensor.is_floating_point():
            array = VaeImageProcessor.pt_to_numpy(tensor)
        else:
            raise ValueError(f"`{argument_name}` must be float in [0, 1], uint8 or uint16, got dtype {tensor.dtype}.")
    else:
        shape = tuple(image.shape)
        array = image
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or not batch and len(array) > 1 or array.shape[-1] not in (1, 3):
            expected = "(H, W, 3) or (N, H, W, 3)" if batch else "(H, W, 3)"
            alpha = " (an alpha channel is not accepted: drop it)" if array.ndim == 4 and array.shape[-1] == 4 else ""
            raise ValueError(
                f"`{argument_name}` as an array must have shape {expected} (channels last){alpha}, got shape {shape}."
            )
    return _array_to_float(array, argument_name)


def _pil_to_rgb(image: PIL.Image.Image, argument_name: str) -> PIL.Image.Image:
    if "A" in image.getbands() or image.mode == "P" and "transparency" in image.info:
        raise ValueError(
            f"`{argument_name}` has an alpha channel (mode {image.mode!r}); pass `image.convert('RGB')` (or composite "
            "it over a background) so that the colour under transparent pixels is your choice."
        )
    image = to_8bit(image, argument_name)
    return VaeImageProcessor.convert_to_rgb(image) if image.mode != "RGB" else image


def is_batch_of_images(images: Any) -> bool:
    """Whether `images` is a list/tuple, a 4-D array `(N, H, W, C)` or a 4-D tensor `(N, C, H, W)`."""
    return isinstance(images, (list, tuple)) or isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4


def to_pil_images(images: Any, argument_name: str = "image") -> list[PIL.Image.Image]:
    """Converts one image or a batch of images to RGB PIL images (see the module docstring for the forms).

    Args:
        images: one image, a 4-D batch, or a list/tuple of single images.
        argument_name: name used in error messages.

    Returns:
        list of RGB `PIL.Image.Image`, one per image.

    Raises:
        TypeError: an unsupported type. ValueError: an empty list, a wrong shape, dtype or value range.
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"`{argument_name}` is an empty list; pass at least one image.")
        return [to_pil_image(image, f"{argument_name}[{i}]") for i, image in enumerate(images)]
    if isinstance(images, PIL.Image.Image):
        return [_pil_to_rgb(images, argument_name)]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        array = _to_numpy_batch(images, argument_name, batch=True)
        return [VaeImageProcessor.convert_to_rgb(image) for image in VaeImageProcessor.numpy_to_pil(array)]
    raise TypeError(f"`{argument_name}` must be {IMAGE_FORMS}; got {type(images).__name__}.")


def to_pil_image(image: Any, argument_name: str = "image") -> PIL.Image.Image:
    """Converts one image (PIL, `(H, W, 3)` array, `(3, H, W)` tensor; no batch) to an RGB PIL image."""
    if isinstance(image, PIL.Image.Image):
        return _pil_to_rgb(image, argument_name)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        (pil,) = VaeImageProcessor.numpy_to_pil(_to_numpy_batch(image, argument_name, batch=False))
        return VaeImageProcessor.convert_to_rgb(pil)
    raise TypeError(
        f"`{argument_name}` must be one image: a PIL image, an np.ndarray (H, W, 3) or a torch.Tensor (3, H, W); "
        f"got {type(image).__name__}."
    )


def same_aspect_ratio(
    size: Sequence[int], reference: Sequence[int], tolerance: float = ASPECT_RATIO_TOLERANCE
) -> bool:
    """Whether the `(height, width)` `size` has the aspect ratio of the `(height, width)` `reference`:
    `|(h / w) / (h_ref / w_ref) - 1| <= tolerance` (1 % by default)."""
    (height, width), (reference_height, reference_width) = size, reference
    return abs((height / width) / (reference_height / reference_width) - 1) <= tolerance


def load_image_file(path: str | os.PathLike) -> PIL.Image.Image:
    """Reads an image file as an RGB `PIL.Image.Image` (fully loaded, the file closed).

    Images of more than 8 bits are scaled to 8 bits by `to_8bit` (its errors name the file); any other mode is
    converted to RGB by PIL, so an alpha channel is dropped (the colour under transparent pixels is kept).

    Raises:
        OSError: the file is missing or not an image PIL can read (`PIL.UnidentifiedImageError`).
        ValueError: a float or 32-bit integer image outside the range `to_8bit` accepts.
    """
    with PIL.Image.open(path) as image:
        image.load()
        return to_8bit(image, os.fspath(path)).convert("RGB")
