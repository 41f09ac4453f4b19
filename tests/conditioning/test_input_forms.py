"""Every input form documented in docs/inputs.md gives the same conditioning as its canonical form.

The batching table of docs/inputs.md is read from the file: each of its rows must have a case here, so the docs and
the behaviour cannot drift apart.
"""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import (
    as_parsing_batch,
    as_parsing_map,
    as_pose_batch,
    draw_skeleton,
    prepare_pose_image,
    to_pil_images,
)
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

DOCS = Path(__file__).resolve().parents[2] / "docs" / "inputs.md"
SOURCE, PARSING = tiny_person(0)  # canonical source (64x64 RGB PIL) and parsing (int64 (64, 64))
H, W = PARSING.shape
KEYPOINTS = TINY_KEYPOINTS.astype(np.float32)  # canonical pose, (18, 3) pixels
OTHER_KEYPOINTS = KEYPOINTS.copy()
OTHER_KEYPOINTS[:, 0] = np.where(KEYPOINTS[:, 2] > 0, W - 1 - KEYPOINTS[:, 0], -1)  # mirrored: a second pose
SKELETON = draw_skeleton(KEYPOINTS, H, W)
SOURCE_ARRAY = np.asarray(SOURCE)  # uint8 (H, W, 3)
OTHER_SOURCE = PIL.Image.fromarray(255 - SOURCE_ARRAY)


def documented_batching_rows() -> list[tuple[str, str]]:
    """(argument, form) of every row of the batching table in docs/inputs.md."""
    table = DOCS.read_text().split("<!-- batching table")[1].split("<!-- end of batching table")[0]
    rows = [line.strip().strip("|").split("|") for line in table.splitlines() if line.startswith("| `")]
    return [(argument.strip(), form.strip()) for argument, form, _ in rows]


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


# (argument, form) -> (input, canonical items)
FORMS = {
    ("`source_image`", "one image (table above)"): (SOURCE_ARRAY, [SOURCE]),
    ("`source_image`", "`np.ndarray` `(N, H, W, 3)` / `torch.Tensor` `(N, 3, H, W)`"): (
        torch.stack([chw(SOURCE_ARRAY), chw(255 - SOURCE_ARRAY)]).float() / 255,
        [SOURCE, OTHER_SOURCE],
    ),
    ("`source_image`", "list or tuple of single images"): ((SOURCE_ARRAY, OTHER_SOURCE), [SOURCE, OTHER_SOURCE]),
    ("`target_pose`", "keypoints `(18, 2)` / `(18, 3)`: array, tensor or nested list"): (
        torch.from_numpy(KEYPOINTS),
        [KEYPOINTS],
    ),
    ("`target_pose`", "list or tuple of 18 `(x, y)` / `(x, y, c)` tuples"): (
        [tuple(row) for row in KEYPOINTS.tolist()],
        [KEYPOINTS],
    ),
    ("`target_pose`", "`np.ndarray` / `torch.Tensor` `(N, 18, 2)` or `(N, 18, 3)`"): (
        np.stack([KEYPOINTS, OTHER_KEYPOINTS]),
        [KEYPOINTS, OTHER_KEYPOINTS],
    ),
    ("`target_pose`", "one skeleton image or photo (table above)"): (chw(np.asarray(SKELETON)), [KEYPOINTS]),
    ("`target_pose`", "`np.ndarray` `(N, H, W, 3)` / `torch.Tensor` `(N, 3, H, W)`"): (
        np.stack([np.asarray(SKELETON), np.asarray(draw_skeleton(OTHER_KEYPOINTS, H, W))]),
        [KEYPOINTS, OTHER_KEYPOINTS],
    ),
    ("`target_pose`", "any other list or tuple: one pose per element"): (
        [SKELETON, OTHER_KEYPOINTS.tolist()],
        [KEYPOINTS, OTHER_KEYPOINTS],
    ),
    ("`source_parsing`", "one map: `PIL.Image`, `(H, W)`, `(1, H, W)`, `(H, W, 1)`, `(1, 1, H, W)`"): (
        torch.from_numpy(PARSING)[None, None],
        [PARSING],
    ),
    ("`source_parsing`", "`np.ndarray` / `torch.Tensor` `(N, H, W)` (N > 1) or `(N, 1, H, W)`"): (
        np.stack([PARSING, PARSING[:, ::-1]]),
        [PARSING, PARSING[:, ::-1]],
    ),
    ("`source_parsing`", "list or tuple of maps"): (
        (PIL.Image.fromarray(PARSING.astype(np.uint8)), PARSING[:, ::-1]),
        [PARSING, PARSING[:, ::-1]],
    ),
}


def normalise(argument: str, value) -> list[np.ndarray]:
    """The conditioning the pipeline builds from `value` (same functions, same order as `TruePosePipeline`)."""
    if argument == "`source_image`":
        return [np.asarray(image) for image in to_pil_images(value, "source_image")]
    if argument == "`target_pose`":
        return [np.asarray(prepare_pose_image(pose, H, W)) for pose in as_pose_batch(value)]
    return [as_parsing_map(parsing, H, W, "atr") for parsing in as_parsing_batch(value)]


def canonical(argument: str, items: list) -> list[np.ndarray]:
    if argument == "`source_image`":
        return [np.asarray(image) for image in items]
    if argument == "`target_pose`":
        return [np.asarray(draw_skeleton(keypoints, H, W)) for keypoints in items]
    return [np.asarray(parsing, dtype=np.int64) for parsing in items]


def test_every_documented_batching_row_has_a_case():
    documented = documented_batching_rows()
    assert len(documented) == 12 and set(documented) == set(FORMS)


@pytest.mark.parametrize("argument, form", list(FORMS), ids=[f"{a} {f}" for a, f in FORMS])
def test_documented_form_gives_the_canonical_conditioning(argument, form):
    value, items = FORMS[(argument, form)]
    got, expected = normalise(argument, value), canonical(argument, items)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


float_source = SOURCE_ARRAY.astype(np.float32) / 255
SINGLE_IMAGE_FORMS = {
    "PIL RGB": SOURCE,
    "PIL P (palette)": SOURCE.quantize(256).convert("RGB").quantize(256),
    "np uint8 (H, W, 3)": SOURCE_ARRAY,
    "np float (H, W, 3) in [0, 1]": float_source,
    "np float64 (H, W, 3)": float_source.astype(np.float64),
    "torch uint8 (3, H, W)": chw(SOURCE_ARRAY),
    "torch float (3, H, W) in [0, 1]": chw(float_source),
    "np (1, H, W, 3) batch of one": SOURCE_ARRAY[None],
    "torch (1, 3, H, W) batch of one": chw(SOURCE_ARRAY)[None],
}


@pytest.mark.parametrize("image", SINGLE_IMAGE_FORMS.values(), ids=SINGLE_IMAGE_FORMS.keys())
def test_every_image_form_gives_the_same_rgb_pixels(image):
    (got,) = to_pil_images(image, "source_image")
    reference = SOURCE if not isinstance(image, PIL.Image.Image) else image.convert("RGB")
    assert got.mode == "RGB" and got.size == (W, H)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(reference))


def test_gray_forms_are_repeated_to_rgb():
    gray = SOURCE_ARRAY[..., 0]
    expected = np.repeat(gray[..., None], 3, axis=-1)
    for form in (PIL.Image.fromarray(gray), gray, gray[..., None], torch.from_numpy(gray.copy())[None], gray / 255):
        (got,) = to_pil_images(form, "source_image")
        np.testing.assert_array_equal(np.asarray(got), expected)


def test_keypoint_forms_and_parsing_forms_agree():
    poses = [KEYPOINTS, KEYPOINTS[:, :2], KEYPOINTS.tolist(), torch.from_numpy(KEYPOINTS), KEYPOINTS.astype(int)]
    expected = np.asarray(draw_skeleton(KEYPOINTS, H, W))
    (skeleton_array,) = as_pose_batch(np.asarray(SKELETON))  # one (H, W, 3) image, not H keypoint arrays
    poses.append(skeleton_array)
    for pose in poses:
        np.testing.assert_array_equal(np.asarray(prepare_pose_image(pose, H, W)), expected)
    maps = [
        PIL.Image.fromarray(PARSING.astype(np.uint8)),
        PIL.Image.fromarray(PARSING.astype(np.uint8)).convert("P"),
        PIL.Image.fromarray(PARSING.astype(np.int32)),  # mode "I"
        PIL.Image.fromarray(np.repeat(PARSING.astype(np.uint8)[..., None], 3, axis=-1)),  # ids saved as gray RGB
        PARSING[None],
        PARSING[..., None],
        PARSING.astype(np.float32),
    ]
    for parsing in maps:
        (single,) = as_parsing_batch(parsing)
        np.testing.assert_array_equal(as_parsing_map(single, H, W, "atr"), PARSING)


def test_the_pipeline_gives_the_same_image_for_other_forms():
    pipe = tiny_pipeline(seed=0)
    canonical_call = {"source_image": SOURCE, "target_pose": KEYPOINTS, "source_parsing": PARSING}
    other_call = {
        "source_image": chw(SOURCE_ARRAY),
        "target_pose": [tuple(row) for row in KEYPOINTS[:, :2].tolist()],
        "source_parsing": torch.from_numpy(PARSING)[None, None],
    }
    outputs = [
        pipe(**call, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
        for call in (canonical_call, other_call)
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])
