"""Retargeting against hand-computed cases whose two people have different proportions (issue 14).

A pure scale-and-shift of one pose cannot tell the right anchor joints or bones from wrong ones: any choice
recovers it. Here the source has a longer neck, torso and shins and shorter thighs than the target, and
different arm proportions, so every bone and anchor joint changes the answer.
"""

import logging
import re
import warnings

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import pose as pose_module
from truepose.conditioning.pose import (
    KEYPOINT_NAMES,
    as_keypoints,
    draw_skeleton,
    prepare_pose_image,
    rescale_keypoints,
    retarget_keypoints,
)
from truepose.testing import TINY_KEYPOINTS

MISSING = (-1.0, -1.0)


def person(joints: dict[str, tuple[float, float]]) -> np.ndarray:
    """COCO-18 `(18, 2)` keypoints from joint names (absent names are missing)."""
    order = (
        "nose neck r_shoulder r_elbow r_wrist l_shoulder l_elbow l_wrist r_hip r_knee r_ankle l_hip l_knee l_ankle "
        "r_eye l_eye r_ear l_ear"
    ).split()
    assert set(joints) <= set(order)
    return np.array([joints.get(name, MISSING) for name in order], dtype=np.float32)


# Source: nose-neck 30, neck-hip 50 (offset 30, 40) each side, hip-knee 40, knee-ankle 50. Size 310.
SOURCE = {
    "nose": (50, 10), "neck": (50, 40), "r_hip": (20, 80), "l_hip": (80, 80), "r_knee": (20, 120),
    "l_knee": (80, 120), "r_ankle": (20, 170), "l_ankle": (80, 170),
    "r_shoulder": (30, 40), "l_shoulder": (70, 40), "r_elbow": (25, 90), "l_elbow": (75, 90),
    "r_wrist": (25, 95), "l_wrist": (75, 95), "r_eye": (45, 5), "l_eye": (55, 5), "r_ear": (40, 8), "l_ear": (60, 8),
}  # fmt: skip
# Target: nose-neck 20, neck-hip 15 (offset 9, 12) each side, hip-knee 60, knee-ankle 15. Size 200.
TARGET = {
    "nose": (100, 30), "neck": (100, 50), "r_hip": (91, 62), "l_hip": (109, 62), "r_knee": (91, 122),
    "l_knee": (109, 122), "r_ankle": (91, 137), "l_ankle": (109, 137),
    "r_shoulder": (80, 50), "l_shoulder": (120, 50), "r_elbow": (70, 70), "l_elbow": (130, 70),
    "r_wrist": (60, 90), "l_wrist": (140, 90), "r_eye": (96, 27), "l_eye": (104, 27), "r_ear": (92, 29),
    "l_ear": (108, 29),
}  # fmt: skip


def expected(target: np.ndarray, scale: float, anchor_t, anchor_s) -> np.ndarray:
    out = np.full((18, 3), (-1.0, -1.0, 0.0), dtype=np.float64)
    present = target[:, 0] >= 0
    out[present, :2] = (target[present] - np.asarray(anchor_t)) * scale + np.asarray(anchor_s)
    out[present, 2] = 1.0
    return out


def test_retarget_different_proportions():
    # scale = 310 / 200; anchors = mean of neck and both hips: source (50, 200 / 3), target (100, 58).
    out = retarget_keypoints(person(TARGET), person(SOURCE))
    assert out.dtype == np.float32 and out.shape == (18, 3)
    np.testing.assert_allclose(out, expected(person(TARGET), 1.55, (100, 58), (50, 200 / 3)), atol=1.5e-3)
    assert out[0, 1] == pytest.approx(23.267, abs=1e-6)  # nose y: (30 - 58) * 1.55 + 66.667, rounded to 1/1000


def test_retarget_only_bones_present_in_both_poses():
    """Source without the left knee: the left hip-knee and knee-ankle bones leave both sums."""
    source = dict(SOURCE)
    del source["l_knee"]
    out = retarget_keypoints(person(TARGET), person(source))
    # source 310 - 40 - 50 = 220, target 200 - 60 - 15 = 125; the anchors keep neck and both hips.
    np.testing.assert_allclose(out, expected(person(TARGET), 220 / 125, (100, 58), (50, 200 / 3)), atol=1.5e-3)


def test_retarget_anchor_uses_common_neck_and_hips_only():
    """Right hip missing in the target: the anchor is the mean of neck and left hip, in both poses."""
    target = dict(TARGET)
    del target["r_hip"]
    out = retarget_keypoints(person(target), person(SOURCE))
    # bones left: nose-neck, neck-left hip, both left-leg bones, right knee-ankle:
    # source 30 + 50 + 40 + 50 + 50 = 220, target 20 + 15 + 60 + 15 + 15 = 125.
    np.testing.assert_allclose(
        out, expected(person(target), 220 / 125, (104.5, 56), (65, 60)), atol=1.5e-3
    )  # fmt: skip
    assert tuple(out[8]) == (-1.0, -1.0, 0.0)  # missing stays missing


def test_retarget_anchor_falls_back_to_all_common_joints():
    """No neck or hip in the source: the anchor is the mean of the joints present in both."""
    source = {k: v for k, v in SOURCE.items() if k not in ("neck", "r_hip", "l_hip")}
    out = retarget_keypoints(person(TARGET), person(source))
    # Common bones: only the two knee-ankle bones: source 100, target 30.
    common = [k for k in TARGET if k in source]
    anchor_t = np.mean([TARGET[k] for k in common], axis=0)
    anchor_s = np.mean([SOURCE[k] for k in common], axis=0)
    np.testing.assert_allclose(out, expected(person(TARGET), 100 / 30, anchor_t, anchor_s), atol=1.5e-3)


def test_retarget_without_common_bone_only_moves(caplog):
    """Source with arms and face only: no size bone in common -> scale 1 and a warning; anchor = common joints."""
    source = {k: v for k, v in SOURCE.items() if k in ("r_shoulder", "l_shoulder", "r_elbow", "r_eye")}
    with caplog.at_level(logging.WARNING):
        out = retarget_keypoints(person(TARGET), person(source))
    assert "no bone is present in both poses" in caplog.text
    anchor_t = np.mean([TARGET[k] for k in source], axis=0)
    anchor_s = np.mean([SOURCE[k] for k in source], axis=0)
    np.testing.assert_allclose(out, expected(person(TARGET), 1.0, anchor_t, anchor_s), atol=1.5e-3)


def test_retarget_without_common_joint_returns_the_target(caplog):
    target = {k: v for k, v in TARGET.items() if k in ("nose", "neck")}
    source = {k: v for k, v in SOURCE.items() if k in ("r_hip", "l_hip")}
    with caplog.at_level(logging.WARNING):
        out = retarget_keypoints(person(target), person(source))
    assert "no joint is present in both poses" in caplog.text
    np.testing.assert_array_equal(out, expected(person(target), 1.0, (0, 0), (0, 0)))


def test_retarget_with_a_zero_length_bone_in_one_pose():
    """All size bones of the target collapsed to one point: no usable scale (1), still moved by the anchors."""
    target = {k: TARGET["neck"] for k in ("nose", "neck", "r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle")}
    target["r_wrist"] = (60, 90)
    out = retarget_keypoints(person(target), person(SOURCE))
    np.testing.assert_allclose(out, expected(person(target), 1.0, (100, 50), (50, 200 / 3)), atol=1.5e-3)


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_as_keypoints_missing_rules():
    raw = np.tile(np.array([[10.0, 20.0, 0.9]], dtype=np.float32), (18, 1))
    raw[0] = (-1, 5, 1)  # x == -1: missing
    raw[1] = (5, -1, 1)  # y == -1: missing
    raw[2] = (np.nan, 5, 1)
    raw[3] = (5, np.inf, 1)
    raw[4] = (5, 5, 0)  # confidence 0
    raw[5] = (5, 5, -0.5)
    raw[6] = (-0.5, -3, 0.2)  # other negatives: just left of / above the frame, kept
    out = as_keypoints(torch.from_numpy(raw))
    assert out.dtype == np.float32 and out.shape == (18, 3)
    np.testing.assert_array_equal(out[:6], np.tile([[-1.0, -1.0, 0.0]], (6, 1)))
    np.testing.assert_allclose(out[6], (-0.5, -3, 0.2))
    np.testing.assert_allclose(out[7:], raw[7:])
    two = as_keypoints(raw[:, :2].tolist())
    np.testing.assert_array_equal(two[7:, 2], 1.0)  # no confidence given: 1
    assert tuple(two[0]) == (-1.0, -1.0, 0.0)


def test_as_keypoints_full_messages():
    with pytest.raises(TypeError, match=exactly("`keypoints` must be an array of shape (18, 2) or (18, 3), got str.")):
        as_keypoints("pose.json")
    with pytest.raises(TypeError, match=exactly("`pose` must be an array of shape (18, 2) or (18, 3), got Image.")):
        as_keypoints(PIL.Image.new("RGB", (2, 2)), "pose")
    with pytest.raises(TypeError, match=exactly(
        "`keypoints` must be an array of shape (18, 2) or (18, 3) of numbers, got list."
    )):  # fmt: skip
        as_keypoints([["a", "b"]] * 18)
    with pytest.raises(ValueError, match=exactly(
        "`keypoints` must have shape (18, 2) [x, y] or (18, 3) [x, y, confidence] in COCO-18 order, got shape (17, 2)."
    )):  # fmt: skip
        as_keypoints(np.zeros((17, 2)))
    for shape in [(18, 4), (18,), (2, 18, 2)]:
        with pytest.raises(ValueError, match="got shape"):
            as_keypoints(np.zeros(shape))


def one_joint(x: float, y: float) -> np.ndarray:
    keypoints = np.full((18, 2), -1.0, dtype=np.float32)
    keypoints[0] = (x, y)
    keypoints[1] = (30, 20)
    return keypoints


def test_frame_tolerance_is_two_percent_on_every_side():
    """Frame 50 x 100 (h x w): x may lie in [-2, 101], y in [-1, 50] (2 % of the side beyond the pixel centres)."""
    for x, y in [(101, 10), (-2, 10), (10, 50), (10, -1), (0, 0), (99, 49)]:
        draw_skeleton(one_joint(x, y), 50, 100)
    for x, y in [(101.1, 10), (-2.1, 10), (10, 50.1), (10, -1.1)]:
        with pytest.raises(ValueError, match="has joints outside"):
            draw_skeleton(one_joint(x, y), 50, 100)
    with pytest.raises(ValueError, match=exactly(
        "`keypoints` has joints outside the (height, width) = (50, 100) image: 0 nose at (120, 10.5). Keypoints must "
        "be pixel coordinates of that frame; rescale keypoints annotated at another resolution (e.g. DeepFashion's "
        "256x176) by width / old_width and height / old_height."
    )):  # fmt: skip
        draw_skeleton(one_joint(120, 10.5), 50, 100)


def test_normalised_coordinates_are_recognised():
    normalised = np.full((18, 2), -1.0, dtype=np.float32)
    normalised[:2] = [(0.5, 0.2), (1.0, 0.4)]
    with pytest.raises(ValueError, match=exactly(
        "`keypoints` look normalised to [0, 1]; pass pixel coordinates of the (50, 100) frame (multiply x by the width "
        "and y by the height)."
    )):  # fmt: skip
        draw_skeleton(normalised, 50, 100)
    draw_skeleton(normalised[[1, 0] + list(range(2, 18))] * [1.01, 1], 50, 100)  # one joint beyond 1: pixels
    single = np.full((18, 2), -1.0, dtype=np.float32)
    single[0] = (0.5, 0.5)
    draw_skeleton(single, 50, 100)  # one joint alone is not evidence
    draw_skeleton(normalised, 4, 4)  # a 4x4 frame has pixel coordinates in [0, 1] too
    draw_skeleton(np.full((18, 2), -1.0), 50, 100)  # nothing present: nothing to check


def test_sizes_must_be_positive_ints():
    for height, width, error, message in [
        (True, 4, TypeError, "`height` must be a positive int, got bool True."),
        (4, 2.0, TypeError, "`width` must be a positive int, got float 2.0."),
        (0, 4, ValueError, "`height` must be a positive int, got 0."),
        (4, -3, ValueError, "`width` must be a positive int, got -3."),
    ]:
        with pytest.raises(error, match=exactly(message)):
            draw_skeleton(np.full((18, 2), -1.0), height, width)
    assert draw_skeleton(np.full((18, 2), -1.0), np.int64(3), 5).size == (5, 3)


def test_joints_are_drawn_at_their_pixel():
    """A vertical limb from (10, 10) to (10, 30): the stroke is centred on column 10 and rows 10..30."""
    keypoints = np.full((18, 2), -1.0, dtype=np.float32)
    keypoints[1], keypoints[8] = (10, 10), (10, 30)  # neck - right hip
    canvas = np.asarray(draw_skeleton(keypoints, 64, 48)).any(axis=2)
    rows, cols = np.nonzero(canvas)
    assert abs(cols.mean() - 10) < 0.25 and abs(rows.mean() - 20) < 0.5
    assert not canvas[:, 20:].any()


def test_rescale_keypoints_aligns_pixel_centres():
    keypoints = np.full((18, 3), (-1.0, -1.0, 0.0), dtype=np.float32)
    keypoints[0] = (0, 0, 0.7)
    keypoints[1] = (175, 255, 1)
    keypoints[2] = (10.25, 3, 1)
    out = rescale_keypoints(keypoints, (256, 176), (512, 528))  # y x 2, x x 3
    np.testing.assert_allclose(out[0], (1.0, 0.5, 0.7))  # (0 + 0.5) * 3 - 0.5, (0 + 0.5) * 2 - 0.5
    np.testing.assert_allclose(out[1], (526.0, 510.5, 1))  # 175.5 * 3 - 0.5, 255.5 * 2 - 0.5
    np.testing.assert_allclose(out[2], (31.75, 6.5, 1))
    np.testing.assert_array_equal(out[3:], keypoints[3:])
    down = rescale_keypoints(np.array([[1.0, 1.0]] * 18), (3, 3), (2, 2))
    np.testing.assert_allclose(down[:, :2], 2 / 3 * 1.5 - 0.5, atol=1e-3)  # rounded to 1/1000
    assert down[0, 0] == pytest.approx(0.5)


def test_retarget_tiny_and_collapsed_people():
    """Any positive size counts, even below one pixel; a collapsed source (all size bones 0) is not a scale of 0."""
    small = {k: (v[0] / 400 + 5, v[1] / 400 + 5) for k, v in TARGET.items()}  # size 0.5
    smaller = {k: (v[0] / 800 + 9, v[1] / 800 + 9) for k, v in SOURCE.items()}  # size 310 / 800
    out = retarget_keypoints(person(small), person(smaller))
    anchor_t, anchor_s = np.array((100, 58)) / 400 + 5, np.array((50, 200 / 3)) / 800 + 9
    np.testing.assert_allclose(out, expected(person(small), (310 / 800) / 0.5, anchor_t, anchor_s), atol=1.5e-3)
    collapsed = {
        k: SOURCE["neck"] for k in ("nose", "neck", "r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle")
    }
    out = retarget_keypoints(person(TARGET), person(collapsed))
    np.testing.assert_allclose(out, expected(person(TARGET), 1.0, (100, 58), SOURCE["neck"]), atol=1.5e-3)


def test_retarget_messages_name_the_argument(caplog):
    with pytest.raises(ValueError, match=r"^`target` must have shape"):
        retarget_keypoints(np.zeros((17, 2)), person(SOURCE))
    with pytest.raises(ValueError, match=r"^`source` must have shape"):
        retarget_keypoints(person(TARGET), np.zeros((17, 2)))
    with caplog.at_level(logging.WARNING):
        retarget_keypoints(person({"nose": (1, 1)}), person({"neck": (2, 2)}))
    assert caplog.messages == [
        "retarget_keypoints: no bone is present in both poses; the target pose is not rescaled.",
        "retarget_keypoints: no joint is present in both poses; the target pose is not moved.",
    ]


def test_frame_checks_small_frames_confidence_and_rounding():
    normalised = np.full((18, 3), (-1.0, -1.0, 0.0), dtype=np.float32)
    normalised[:2] = [(0.5, 0.2, 1.5), (1.0, 0.4, 1.5)]  # confidences above 1 do not hide it
    with pytest.raises(ValueError, match="look normalised"):
        draw_skeleton(normalised, 50, 100)
    with pytest.raises(ValueError, match="look normalised"):
        draw_skeleton(normalised, 5, 5)  # frames above 4 pixels
    keypoints = np.full((18, 2), 10.12345, dtype=np.float32)
    assert rescale_keypoints(keypoints, (100, 100), (100, 100))[0, 0] == pytest.approx(10.123, abs=1e-5)


def test_frame_edges_not_covered_by_the_missing_marker():
    """Frame 150 x 100: y may go down to -3 (y = -1 would mean "missing"); several outside joints are all listed."""
    draw_skeleton(one_joint(10, -3), 150, 100)
    with pytest.raises(ValueError, match=re.escape("image: 0 nose at (10, -3.1).")):
        draw_skeleton(one_joint(10, -3.1), 150, 100)
    two = one_joint(120, 10)
    two[1] = (10, 200)
    with pytest.raises(ValueError, match=re.escape("image: 0 nose at (120, 10), 1 neck at (10, 200). Keypoints")):
        draw_skeleton(two, 150, 100)
    assert draw_skeleton(np.full((18, 2), -1.0), 1, 1).size == (1, 1)


# `prepare_pose_image`: its warnings, log messages, thresholds and error texts (the mutants of `benchmarks/mutation.sh
# pose` that survived in it). Warnings point at the caller (stacklevel 2), not into pose.py (mutmut's trampoline adds
# a frame, so the test checks "not pose.py" rather than "this file").


def _pose(**moved: tuple[float, float]) -> np.ndarray:
    """TINY_KEYPOINTS (64 x 64 frame) with a missing left ear and the named joints moved."""
    keypoints = TINY_KEYPOINTS.copy()
    keypoints[17] = (-1, -1, 0)
    for name, xy in moved.items():
        keypoints[KEYPOINT_NAMES.index(name), :2] = xy
    return keypoints


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


@pytest.mark.parametrize(
    "moved, beyond",
    [
        ({}, False),
        ({"right_wrist": (63.0, 30.0)}, False),  # on the last pixel centres: inside
        ({"right_wrist": (30.0, 63.0)}, False),
        ({"right_wrist": (0.0, 0.0)}, False),
        ({"right_wrist": (63.5, 30.0)}, True),
        ({"right_wrist": (30.0, 63.5)}, True),
        ({"right_wrist": (-0.5, 30.0)}, True),
        ({"right_wrist": (30.0, -0.5)}, True),
    ],
)
def test_retargeted_pose_beyond_the_image_is_logged(caplog, moved, beyond):
    """Retargeted onto itself (the identity), so the joints stay where they are put."""
    keypoints = _pose(**moved)
    with caplog.at_level(logging.WARNING):
        prepare_pose_image(keypoints, 64, 64, source_keypoints=keypoints, retarget=True)
    message = "The retargeted target pose extends beyond the image; limbs are cut at the border."
    assert [r.getMessage() for r in caplog.records] == ([message] if beyond else [])


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
