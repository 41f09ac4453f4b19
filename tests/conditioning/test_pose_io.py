"""Pose input paths, each checked case by case: what counts as one pose (`pose.as_pose_batch`) and the annotation
readers' errors (`pose_files`); the detector's are in test_detector.py."""

import json
import re

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import (
    as_pose_batch,
    parse_deepfashion_keypoints,
    read_deepfashion_annotations,
    read_openpose_json,
)
from truepose.conditioning import pose as pose_module

ROWS = [(float(i), float(2 * i)) for i in range(18)]  # one pose as 18 (x, y) tuples


# --- what counts as one pose -----------------------------------------------------------------------------------


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


# --- annotation readers ----------------------------------------------------------------------------------------


def test_parse_deepfashion_keypoints_takes_lists_as_well_as_json():
    ys, xs = list(range(18)), list(range(100, 118))
    from_json = parse_deepfashion_keypoints(json.dumps(ys), json.dumps(xs))
    np.testing.assert_array_equal(parse_deepfashion_keypoints(ys, json.dumps(xs)), from_json)
    np.testing.assert_array_equal(parse_deepfashion_keypoints(json.dumps(ys), xs), from_json)
    np.testing.assert_array_equal(from_json[:, :2], np.stack([xs, ys], axis=1))


def test_parse_deepfashion_keypoints_errors_name_the_problem():
    numbers = json.dumps(list(range(18)))
    with pytest.raises(ValueError, match=r"^DeepFashion keypoints must be JSON lists of 18 ints: Expecting"):
        parse_deepfashion_keypoints("[1, 2", numbers)
    only_numbers = r"^`keypoints_y` and `keypoints_x` must hold numbers only\.$"
    with pytest.raises(ValueError, match=only_numbers):
        parse_deepfashion_keypoints(json.dumps(["a"] * 18), numbers)
    with pytest.raises(ValueError, match=only_numbers):
        parse_deepfashion_keypoints(numbers, json.dumps(["a"] * 18))
    lengths = r"^`keypoints_y` and `keypoints_x` must be lists of 18 values, got shapes \(18,\) and \(17,\)\.$"
    with pytest.raises(ValueError, match=lengths):
        parse_deepfashion_keypoints(numbers, json.dumps(list(range(17))))


def test_read_deepfashion_annotations_header_problems_and_messages(tmp_path):
    ys, xs = json.dumps(list(range(18))), json.dumps(list(range(18)))
    missing = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError, match=r"^Keypoint annotation file not found: .*missing\.csv \(expected"):
        read_deepfashion_annotations(missing)
    long_name = "x" * 150
    path = tmp_path / "annotations.csv"
    path.write_text(f"name: keypoints_y: keypoints_x\nfront.jpg:{ys}:{xs}\n{long_name}:[1]\n")
    problems = []
    annotations = read_deepfashion_annotations(path, problems=problems)
    assert list(annotations) == ["front.jpg"]  # the spaced header is skipped, not reported
    row = f"{long_name}:[1]"
    assert problems == [
        f"{path}:3: malformed keypoint row: expected 3 ':'-separated fields (name:keypoints_y:keypoints_x), got 2: "
        f"{row[:120]!r}"
    ]


def test_read_openpose_json_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"^`path_or_dict` must be a path or a dict, got int\.$"):
        read_openpose_json(3)
    with pytest.raises(ValueError, match=r"^OpenPose JSON must have a `people` list\.$"):
        read_openpose_json({"version": 1.3})
    with pytest.raises(ValueError, match=r"people\[0\]\.pose_keypoints_2d must hold .* got 0 values\.$"):
        read_openpose_json({"people": [{"face_keypoints_2d": []}]})
