"""Pose files (`truepose.conditioning.pose_files`): DeepFashion annotations and OpenPose JSON (COCO-18, BODY-25),
keypoint files and folders with suffixes in any case, and the readers' errors, case by case."""

import json

import numpy as np
import pytest

from truepose.conditioning import (
    BODY25_TO_COCO18,
    parse_deepfashion_keypoints,
    read_deepfashion_annotations,
    read_openpose_json,
)
from truepose.conditioning.pose_files import read_keypoints_any, read_keypoints_dir
from truepose.testing import TINY_KEYPOINTS


def test_deepfashion_annotations_round_trip(tmp_path, skeleton):
    ys, xs = skeleton[:, 1].astype(int).tolist(), skeleton[:, 0].astype(int).tolist()
    ys2, xs2 = list(ys), list(xs)
    ys2[16], xs2[16] = -1, -1
    path = tmp_path / "fasion-resize-annotation-test.csv"
    path.write_text(
        "name:keypoints_y:keypoints_x\n"
        f"fashionWOMENDressesid0000262902_3back.jpg: {json.dumps(ys)}: {json.dumps(xs)}\n"
        f"fashionMENDenimid0000008001_1front.jpg:{json.dumps(ys2)}:{json.dumps(xs2)}\n"
    )
    annotations = read_deepfashion_annotations(path)
    assert list(annotations) == ["fashionWOMENDressesid0000262902_3back.jpg", "fashionMENDenimid0000008001_1front.jpg"]
    first = annotations["fashionWOMENDressesid0000262902_3back.jpg"]
    np.testing.assert_array_equal(first[:, :2], skeleton)
    assert (first[:, 2] == 1).all()
    second = annotations["fashionMENDenimid0000008001_1front.jpg"]
    np.testing.assert_array_equal(second[16], [-1, -1, 0])
    np.testing.assert_array_equal(second[17, :2], skeleton[17])
    np.testing.assert_array_equal(parse_deepfashion_keypoints(json.dumps(ys), json.dumps(xs)), first)


def test_deepfashion_errors(tmp_path):
    with pytest.raises(ValueError, match="18"):
        parse_deepfashion_keypoints("[1, 2]", "[3, 4]")
    path = tmp_path / "bad.csv"
    path.write_text("name,keypoints_y,keypoints_x\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: .*':'-separated"):
        read_deepfashion_annotations(path)


def test_openpose_json_coco18(tmp_path, skeleton):
    flat = np.concatenate([skeleton, np.ones((18, 1), np.float32)], axis=1)
    flat[2] = 0  # OpenPose writes missing joints as 0, 0, 0
    path = tmp_path / "frame_keypoints.json"
    path.write_text(json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": flat.ravel().tolist()}]}))
    (person,) = read_openpose_json(path)
    np.testing.assert_array_equal(person[2], [-1, -1, 0])
    np.testing.assert_array_equal(person[[0, 1, 3]], flat[[0, 1, 3]])
    assert read_openpose_json({"people": []}) == []


def test_openpose_json_body25_mapping():
    # Joint i of BODY_25 at x = i, y = 100 + i, confidence 0.5.
    body25 = np.stack([np.arange(25), 100 + np.arange(25), np.full(25, 0.5)], axis=1)
    (person,) = read_openpose_json({"people": [{"pose_keypoints_2d": body25.ravel().tolist()}]})
    expected_x = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]  # mid-hip (8) and feet dropped
    assert list(BODY25_TO_COCO18) == expected_x
    np.testing.assert_array_equal(person[:, 0], expected_x)
    np.testing.assert_array_equal(person[:, 1], 100 + np.array(expected_x))
    with pytest.raises(ValueError, match="18 \\(COCO\\) or 25"):
        read_openpose_json({"people": [{"pose_keypoints_2d": [0.0] * 30}]})


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


def test_keypoint_folder_suffixes_in_any_case_like_every_pose_file(tmp_path):
    folder = tmp_path / "keypoints"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps(TINY_KEYPOINTS.tolist()))
    (folder / "sub" / "B.JSON").write_text(json.dumps(TINY_KEYPOINTS[:, :2].tolist()))
    (folder / ".hidden.json").write_text("[]")  # hidden: skipped
    (folder / "folder.json").mkdir()  # not a file: skipped
    (folder / "broken.Json").write_text("[1, 2")
    keypoints, problems = read_keypoints_dir(folder)
    assert sorted(keypoints) == ["a", "sub/B"]
    np.testing.assert_array_equal(keypoints["sub/B"], keypoints["a"])
    assert problems == [
        f"{folder / 'broken.Json'}: malformed keypoints: the file is not valid JSON (Expecting ',' delimiter: line 1 "
        "column 6 (char 5))."
    ]
    assert read_keypoints_any(folder)[0].keys() == keypoints.keys()


def test_keypoint_annotation_suffixes_in_any_case(tmp_path):
    (tmp_path / "kp.JSON").write_text(json.dumps({"a.jpg": TINY_KEYPOINTS.tolist()}))
    keypoints, problems = read_keypoints_any(tmp_path / "kp.JSON")
    assert list(keypoints) == ["a.jpg"] and problems == []
    with pytest.raises(ValueError, match=r"kp\.npy must end in \.json or \.csv, or be a folder\."):
        (tmp_path / "kp.npy").write_bytes(b"")
        read_keypoints_any(tmp_path / "kp.npy")
