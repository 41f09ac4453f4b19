"""`retarget_keypoints` against hand-computed cases whose two people have different proportions (issue 14).

A pure scale-and-shift of one pose cannot tell the right anchor joints or bones from wrong ones: any choice
recovers it. Here the source has a longer neck, torso and shins and shorter thighs than the target, and
different arm proportions, so every bone and anchor joint changes the answer."""

import logging

import numpy as np
import pytest

from truepose.conditioning import (
    prepare_pose_image,
    retarget_keypoints,
)
from truepose.conditioning.pose import KEYPOINT_NAMES
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


def _pose(**moved: tuple[float, float]) -> np.ndarray:
    """TINY_KEYPOINTS (64 x 64 frame) with a missing left ear and the named joints moved."""
    keypoints = TINY_KEYPOINTS.copy()
    keypoints[17] = (-1, -1, 0)
    for name, xy in moved.items():
        keypoints[KEYPOINT_NAMES.index(name), :2] = xy
    return keypoints


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


def test_retarget_hand_computed():
    target = np.full((18, 3), -1, np.float32)
    target[:, 2] = 0
    target[1] = (10, 10, 1)  # neck
    target[8] = (10, 30, 1)  # right hip: torso bone of length 20
    target[0] = (10, 0, 1)  # nose: bone neck-nose of length 10
    target[4] = (0, 20, 1)  # right wrist: only in the target, still moved
    source = np.full((18, 3), -1, np.float32)
    source[:, 2] = 0
    source[1] = (50, 40, 1)
    source[8] = (50, 80, 1)  # torso 40 -> scale 2 (nose missing in the source: bone not counted)
    source[11] = (70, 80, 1)  # left hip only in the source: ignored
    out = retarget_keypoints(target, source)
    # anchors: mean(neck, right hip) = (10, 20) -> (50, 60); p' = (p - (10, 20)) * 2 + (50, 60)
    np.testing.assert_allclose(out[1], [50, 40, 1])
    np.testing.assert_allclose(out[8], [50, 80, 1])
    np.testing.assert_allclose(out[0], [50, 20, 1])
    np.testing.assert_allclose(out[4], [30, 60, 1])
    np.testing.assert_array_equal(out[11], [-1, -1, 0])


def test_retarget_undoes_scale_and_shift(skeleton):
    target = (skeleton - [88, 60]) * 0.6 + [40, 90]
    np.testing.assert_allclose(retarget_keypoints(target, skeleton)[:, :2], skeleton, atol=1e-4)
