"""Target poses (`truepose.conditioning.pose`): what counts as one pose or a batch (`as_pose_batch`), every target-pose
form giving the same skeleton image, `prepare_pose_image` (photos, retargeting, warnings, messages) and the names
the module still re-exports."""

import re
import warnings

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import (
    as_pose_batch,
    draw_skeleton,
    prepare_pose_image,
)
from truepose.conditioning import pose as pose_module
from truepose.conditioning.pose import KEYPOINT_NAMES
from truepose.testing import TINY_KEYPOINTS

ROWS = [(float(i), float(2 * i)) for i in range(18)]  # one pose as 18 (x, y) tuples


H, W = 256, 176  # the DeepFashion frame of the `skeleton` fixture


def expected(target: np.ndarray, scale: float, anchor_t, anchor_s) -> np.ndarray:
    out = np.full((18, 3), (-1.0, -1.0, 0.0), dtype=np.float64)
    present = target[:, 0] >= 0
    out[present, :2] = (target[present] - np.asarray(anchor_t)) * scale + np.asarray(anchor_s)
    out[present, 2] = 1.0
    return out


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _pose(**moved: tuple[float, float]) -> np.ndarray:
    """TINY_KEYPOINTS (64 x 64 frame) with a missing left ear and the named joints moved."""
    keypoints = TINY_KEYPOINTS.copy()
    keypoints[17] = (-1, -1, 0)
    for name, xy in moved.items():
        keypoints[KEYPOINT_NAMES.index(name), :2] = xy
    return keypoints


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ROWS, True),
        ([(1, 2)], True),  # one row is still a table
        ([np.array([1.0, 2.0]), torch.tensor([3.0, 4.0])], True),  # rows of arrays and tensors (0-d elements)
        ([np.float32(1.0), 2], False),  # a flat list of numbers has no rows
        ([], False),
        ([range(2), range(2)], False),  # rows must be lists, tuples or 1-D arrays
        ([("1", "2"), ("3", "4")], False),  # strings are not numbers
        ((np.zeros((2, 2)),), False),  # a 2-D row
        ([np.array([np.zeros(2), np.zeros(3)] + [None], dtype=object)[:2]], False),  # a row of arrays
    ],
)
def test_what_a_number_table_is(value, expected):
    assert pose_module._is_number_table(value) is expected


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((2, 18, 3), True), ((2, 18, 2), True), ((18, 3), False), ((2, 17, 3), False), ((2, 18, 4), False),
     ((2, 18, 3, 1), False), ((1, 18, 1), False)],
)  # fmt: skip
def test_what_a_keypoint_batch_is(shape, expected):
    assert pose_module._is_keypoint_batch(np.zeros(shape)) is expected
    assert pose_module._is_keypoint_batch(torch.zeros(shape)) is expected
    assert pose_module._is_keypoint_batch(np.zeros(shape).tolist()) is False  # lists are tables, not batches


def test_as_pose_batch_splits_each_documented_form():
    keypoints = np.asarray(ROWS, dtype=np.float32)
    batch = np.stack([keypoints, keypoints + 1])
    split = as_pose_batch(batch)
    assert len(split) == 2 and all(isinstance(p, np.ndarray) for p in split)
    np.testing.assert_array_equal(split[1], keypoints + 1)
    images = torch.zeros(3, 3, 8, 8)  # (N, 3, H, W)
    assert [p.shape for p in as_pose_batch(images)] == [(3, 8, 8)] * 3
    one_image = np.zeros((8, 8, 3), np.uint8)
    assert as_pose_batch(one_image)[0] is one_image and len(as_pose_batch(one_image)) == 1
    assert as_pose_batch(keypoints)[0] is keypoints and len(as_pose_batch(keypoints)) == 1
    picture = PIL.Image.new("RGB", (8, 8))
    assert as_pose_batch(picture) == [picture]
    assert as_pose_batch(ROWS) == [ROWS]  # 18 (x, y) tuples: one pose
    split = as_pose_batch((keypoints, picture))  # a tuple of poses: a list of them
    assert isinstance(split, list) and len(split) == 2 and split[0] is keypoints and split[1] is picture


def test_as_pose_batch_rejects_an_empty_list_and_a_list_of_batches():
    with pytest.raises(ValueError, match=r"^`poses` is an empty list; pass at least one pose\.$"):
        as_pose_batch([], "poses")
    with pytest.raises(ValueError, match=r"^`target_pose` is an empty list"):  # the default argument name
        as_pose_batch([])
    keypoints = np.asarray(ROWS, dtype=np.float32)
    for batch in (np.stack([keypoints, keypoints]), torch.zeros(2, 3, 8, 8)):
        message = (
            f"`poses[1]` holds a batch of shape {tuple(batch.shape)}; each list element must be one pose (keypoints "
            "(18, 2|3) or one image). Pass the batch itself, not a list of batches."
        )
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            as_pose_batch([keypoints, batch], "poses")


def test_every_target_pose_form_gives_the_same_image(skeleton):
    expected = np.array(draw_skeleton(skeleton, H, W))  # writable: torch.from_numpy warns on read-only arrays
    skeleton_image = PIL.Image.fromarray(expected)
    forms = [
        skeleton,
        np.concatenate([skeleton, np.ones((18, 1), np.float32)], axis=1),
        skeleton.tolist(),
        torch.from_numpy(skeleton),
        skeleton_image,
        expected,
        expected.astype(np.float32) / 255,
        torch.from_numpy(expected).permute(2, 0, 1).float() / 255,
        torch.from_numpy(expected).permute(2, 0, 1)[None].float() / 255,
    ]
    for form in forms:
        image = prepare_pose_image(form, H, W)
        assert isinstance(image, PIL.Image.Image) and image.mode == "RGB" and image.size == (W, H)
        np.testing.assert_array_equal(np.asarray(image), expected, err_msg=type(form).__name__)


def test_skeleton_image_is_resized_and_made_rgb(skeleton):
    big = draw_skeleton(skeleton * 2, 2 * H, 2 * W)
    image = prepare_pose_image(big.convert("P"), H, W)
    assert image.mode == "RGB" and image.size == (W, H)
    with pytest.raises(ValueError, match="`target_pose` has an alpha channel"):
        prepare_pose_image(big.convert("RGBA"), H, W)
    gray = prepare_pose_image(PIL.Image.new("L", (W, H), 7), H, W)
    assert gray.mode == "RGB" and np.asarray(gray).max() == 7


def test_prepare_pose_image_from_photo_and_retarget(skeleton):
    photo = PIL.Image.new("RGB", (2 * W, 2 * H))  # keypoints are found in the photo's own (2x) frame
    small = (skeleton - [88, 60]) * 0.5 + [88, 60]

    def detector(image):
        assert image.size == (2 * W, 2 * H)
        return (small + 0.5) * 2 - 0.5

    # No source: drawn as detected, mapped to the (H, W) frame.
    image = prepare_pose_image(photo, H, W, is_photo=True, detector=detector)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(draw_skeleton(small, H, W)))
    # With the source person: retargeted by default for a photo.
    image = prepare_pose_image(photo, H, W, is_photo=True, detector=detector, source_keypoints=skeleton)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(draw_skeleton(skeleton, H, W)))
    image = prepare_pose_image(
        photo, H, W, is_photo=True, detector=detector, source_keypoints=skeleton, retarget=False
    )
    np.testing.assert_array_equal(np.asarray(image), np.asarray(draw_skeleton(small, H, W)))
    # Keypoints: not retargeted unless asked.
    image = prepare_pose_image(small, H, W, source_keypoints=skeleton)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(draw_skeleton(small, H, W)))
    image = prepare_pose_image(small, H, W, source_keypoints=skeleton, retarget=True)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(draw_skeleton(skeleton, H, W)))


def test_prepare_pose_image_errors(skeleton):
    photo = PIL.Image.new("RGB", (W, H))
    with pytest.raises(TypeError, match="`target_pose`"):
        prepare_pose_image("pose.png", H, W)
    with pytest.raises(TypeError, match="`target_pose`"):
        prepare_pose_image({"nose": (1, 2)}, H, W)
    with pytest.raises(ValueError, match=r"`target_pose`.*\(17, 2\)"):
        prepare_pose_image(skeleton[:17], H, W)
    with pytest.raises(ValueError, match="`target_pose` has joints outside"):
        prepare_pose_image(skeleton * 2, H, W)
    with pytest.raises(ValueError, match="`target_pose`.*\\(H, W, 3\\)"):
        prepare_pose_image(np.zeros((H, W, 5), np.uint8), H, W)
    with pytest.raises(ValueError, match="PoseDetector.from_pretrained"):
        prepare_pose_image(photo, H, W, is_photo=True)
    with pytest.raises(ValueError, match="expects `target_pose` to be an image"):
        prepare_pose_image(skeleton, H, W, is_photo=True)
    with pytest.raises(ValueError, match="needs `source_keypoints`"):
        prepare_pose_image(skeleton, H, W, retarget=True)
    with pytest.raises(ValueError, match="cannot be retargeted"):
        prepare_pose_image(photo, H, W, source_keypoints=skeleton, retarget=True)
    with pytest.raises(ValueError, match="no person found in `target_pose`"):
        prepare_pose_image(photo, H, W, is_photo=True, detector=lambda image: -np.ones((18, 2)))


def test_prepare_pose_image_warns_for_an_empty_pose_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_pose_image(_pose(), 64, 64)
    assert caught == []
    empty = np.full((18, 3), -1.0, dtype=np.float32)
    empty[:, 2] = 0
    with pytest.warns(UserWarning) as record:
        image = prepare_pose_image(empty, 64, 64)
    assert [str(w.message) for w in record] == [
        "`target_pose` has no visible joint (all missing: -1, NaN or confidence 0); the skeleton is an empty black "
        "image and the pose is left to the model."
    ]
    assert record[0].filename != pose_module.__file__ and not np.asarray(image).any()


@pytest.mark.parametrize(
    "image_size, warns",
    [((64, 48), False), ((128, 96), False), ((129, 96), False), ((130, 96), True), ((64, 64), True), ((63, 48), True)],
)
def test_prepare_pose_image_stretch_warning_above_one_percent(image_size, warns):
    """Output 64 x 48 (h x w): a skeleton image whose aspect ratio differs by more than 1 % is stretched with a
    warning (130 x 96: 1.6 %; 129 x 96: 0.8 %); the resize is bilinear."""
    rng = np.random.default_rng(0)
    skeleton = PIL.Image.fromarray(rng.integers(0, 256, (*image_size, 3), dtype=np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = prepare_pose_image(skeleton, 64, 48)
    expected = skeleton if image_size == (64, 48) else skeleton.resize((48, 64), resample=PIL.Image.BILINEAR)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
    if not warns:
        assert caught == []
        return
    assert [w.category for w in caught] == [UserWarning] and caught[0].filename != pose_module.__file__
    assert str(caught[0].message) == (
        f"`target_pose` skeleton image of size (height, width) = {image_size} has another aspect ratio than the output "
        "(64, 48); it is stretched. Draw it at the output's aspect ratio (or pass keypoints)."
    )


def test_prepare_pose_image_error_messages():
    keypoints = _pose()
    cases = [
        (dict(target_pose=keypoints, retarget=True), ValueError,
         "`retarget=True` needs `source_keypoints` (the source person's (18, 2|3) keypoints)."),
        (dict(target_pose=keypoints, is_photo=True), ValueError,
         "`is_photo=True` expects `target_pose` to be an image, got a keypoint array."),
        (dict(target_pose=PIL.Image.new("RGB", (64, 64)), retarget=True, source_keypoints=keypoints), ValueError,
         "`retarget=True` needs `target_pose` as keypoints or a photo (with `is_photo=True`); a skeleton image cannot "
         "be retargeted."),
        (dict(target_pose=PIL.Image.new("RGB", (64, 64)), is_photo=True), ValueError,
         "`is_photo=True` needs a pose `detector`, e.g. `truepose.conditioning.PoseDetector.from_pretrained("
         "'lllyasviel/Annotators')` (or a local folder holding body_pose_model.pth)."),
        (dict(target_pose=PIL.Image.new("RGB", (64, 64)), is_photo=True, detector=lambda image: np.full((18, 2), -1.0)),
         ValueError, "no person found in `target_pose` by the pose detector."),
        (dict(target_pose="pose.json"), TypeError,
         "`target_pose` must be keypoints ((18, 2) or (18, 3) array, list or tensor), or a skeleton/photo image "
         "(PIL.Image.Image, np.ndarray (H, W, 3), torch.Tensor (3, H, W)), got str."),
    ]  # fmt: skip
    for kwargs, error, message in cases:
        with pytest.raises(error, match=exactly(message)):
            prepare_pose_image(height=64, width=64, **kwargs)
    # the malformed argument is named in as_keypoints' message
    with pytest.raises(ValueError, match="^`source_keypoints` must"):
        prepare_pose_image(keypoints, 64, 64, source_keypoints=np.zeros((17, 2)))
    with pytest.raises(ValueError, match="^`detector output` must"):
        prepare_pose_image(PIL.Image.new("RGB", (64, 64)), 64, 64, is_photo=True, detector=lambda image: np.zeros(3))


def test_the_pose_module_still_holds_every_pose_name():
    """`truepose.conditioning.pose.X` keeps working for the names that moved to keypoints/skeleton/pose_files/detector."""
    for name in (
        "KEYPOINT_NAMES", "BODY25_TO_COCO18", "OUT_OF_FRAME_TOLERANCE", "PoseDetector", "as_keypoints", "draw_skeleton",
        "is_pose_file", "read_pose_file", "read_openpose_json", "read_deepfashion_annotations", "rescale_keypoints",
        "retarget_keypoints", "prepare_pose_image", "as_pose_batch", "OPENPOSE_HUB_REPO",
    ):  # fmt: skip
        assert hasattr(pose_module, name), name
