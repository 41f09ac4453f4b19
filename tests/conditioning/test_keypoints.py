"""Keypoints (`truepose.conditioning.keypoints`): the forms `as_keypoints` accepts and its missing-joint rules, the
frame checks (2% tolerance, normalised coordinates, sizes) and `rescale_keypoints`; full messages."""

import re

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import as_keypoints, draw_skeleton
from truepose.conditioning.pose import rescale_keypoints


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def one_joint(x: float, y: float) -> np.ndarray:
    keypoints = np.full((18, 2), -1.0, dtype=np.float32)
    keypoints[0] = (x, y)
    keypoints[1] = (30, 20)
    return keypoints


def test_as_keypoints_forms_and_missing(skeleton):
    out = as_keypoints(skeleton)
    assert out.dtype == np.float32 and out.shape == (18, 3)
    np.testing.assert_array_equal(out[:, :2], skeleton)
    assert (out[:, 2] == 1).all()
    np.testing.assert_array_equal(as_keypoints(skeleton.tolist()), out)
    np.testing.assert_array_equal(as_keypoints(torch.from_numpy(skeleton)), out)

    with_conf = np.concatenate([skeleton, np.full((18, 1), 0.8, np.float32)], axis=1)
    with_conf[3] = (-1, -1, 0.9)  # negative coordinates: missing
    with_conf[4, 2] = 0.0  # zero confidence: missing
    with_conf[5, 0] = np.nan  # not finite: missing
    out = as_keypoints(with_conf)
    for j in (3, 4, 5):
        np.testing.assert_array_equal(out[j], [-1, -1, 0])
    assert out[0, 2] == pytest.approx(0.8)


@pytest.mark.parametrize("shape", [(17, 2), (18, 4), (18,), (2, 18, 2)])
def test_as_keypoints_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"`keypoints`.*" + str(shape).replace("(", r"\(").replace(")", r"\)")):
        as_keypoints(np.zeros(shape))


def test_as_keypoints_bad_type():
    with pytest.raises(TypeError, match="keypoints"):
        as_keypoints("nose")


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
