"""Skeleton drawing (`truepose.conditioning.skeleton`): `draw_skeleton` against controlnet_aux's drawing, joints at
their pixel, missing joints not drawn, frame checks."""

import numpy as np
import pytest

from truepose.conditioning import draw_skeleton

H, W = 256, 176  # the DeepFashion frame of the `skeleton` fixture


def reference_drawing(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """controlnet_aux's own drawing of the same pose (joints at the nearest pixel)."""
    from controlnet_aux.open_pose.body import Keypoint
    from controlnet_aux.open_pose.util import draw_bodypose

    body = [
        Keypoint(x=(x + 0.5) / width, y=(y + 0.5) / height) if x >= 0 and y >= 0 else None
        for x, y in keypoints[:, :2].tolist()
    ]
    return draw_bodypose(np.zeros((height, width, 3), dtype=np.uint8), body)


def test_draw_skeleton_matches_controlnet_aux(skeleton):
    image = draw_skeleton(skeleton, H, W)
    assert image.mode == "RGB" and image.size == (W, H)
    np.testing.assert_array_equal(np.asarray(image), reference_drawing(skeleton, H, W))
    assert np.asarray(image)[30, 88].tolist() == [255, 0, 0]  # the nose, in OpenPose's first colour


def test_missing_joints_are_not_drawn(skeleton):
    full = np.asarray(draw_skeleton(skeleton, H, W))
    no_nose = skeleton.copy()
    no_nose[0] = -1
    drawn = np.asarray(draw_skeleton(no_nose, H, W))
    assert drawn[30, 88].tolist() == [0, 0, 0]  # its circle (and limbs) are gone
    assert (drawn != full).any(axis=-1).sum() > 20
    np.testing.assert_array_equal(drawn, reference_drawing(no_nose, H, W))
    # A missing joint given as (0, 0) with confidence 0 is not drawn at the corner.
    zero_conf = np.concatenate([skeleton, np.ones((18, 1), np.float32)], axis=1)
    zero_conf[0] = (0, 0, 0)
    corner = np.asarray(draw_skeleton(zero_conf, H, W))
    assert corner[:12, :12].max() == 0
    np.testing.assert_array_equal(corner, drawn)


def test_draw_skeleton_frame_checks(skeleton):
    draw_skeleton(skeleton + [47, 0], H, W)  # within 2 % beyond the last pixel is tolerated
    with pytest.raises(ValueError, match=r"`keypoints` has joints outside.*\(256, 176\)"):
        draw_skeleton(skeleton * 2, H, W)  # keypoints of a 512x352 frame
    with pytest.raises(ValueError, match="normalised"):
        draw_skeleton(skeleton / [W, H], H, W)
    with pytest.raises(ValueError, match="`height`"):
        draw_skeleton(skeleton, 0, W)


def test_joints_are_drawn_at_their_pixel():
    """A vertical limb from (10, 10) to (10, 30): the stroke is centred on column 10 and rows 10..30."""
    keypoints = np.full((18, 2), -1.0, dtype=np.float32)
    keypoints[1], keypoints[8] = (10, 10), (10, 30)  # neck - right hip
    canvas = np.asarray(draw_skeleton(keypoints, 64, 48)).any(axis=2)
    rows, cols = np.nonzero(canvas)
    assert abs(cols.mean() - 10) < 0.25 and abs(rows.mean() - 20) < 0.5
    assert not canvas[:, 20:].any()
