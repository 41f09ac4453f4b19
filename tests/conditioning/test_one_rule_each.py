"""One implementation each (issue 25): label-group masks, the aspect-ratio rule, image files and keypoint files.

Each shared helper is checked on its own, then against every caller that used to write it out itself.
"""

import json
import re

import numpy as np
import PIL.Image
import pytest

from truepose.analysis import group_masks
from truepose.conditioning import (
    get_label_map,
    label_group_masks,
    load_image_file,
    person_mask,
    region_masks,
    same_aspect_ratio,
)
from truepose.conditioning import image as image_module
from truepose.conditioning import parsing as parsing_module
from truepose.conditioning import pose as pose_module
from truepose.conditioning.pose_files import read_keypoints_any, read_keypoints_dir
from truepose.data.common import load_image
from truepose.evaluation.regions import identity_region_masks
from truepose.testing import TINY_KEYPOINTS

# --- label-group masks -----------------------------------------------------------------------------------------


def test_label_group_masks_in_group_order_and_without_empty_groups():
    parsing = np.array([[0, 1, 2], [2, 3, 0]])
    masks = label_group_masks(parsing, {"b": (2, 3), "a": [1], "none": (), "absent": (7,)})
    assert list(masks) == ["b", "a", "none", "absent"]
    np.testing.assert_array_equal(masks["b"], [[False, False, True], [True, True, False]])
    np.testing.assert_array_equal(masks["a"], [[False, True, False], [False, False, False]])
    assert masks["b"].dtype == bool and not masks["none"].any() and not masks["absent"].any()
    assert list(label_group_masks(parsing, {"b": (2, 3), "none": (), "a": [1]}, drop_empty=True)) == ["b", "a"]
    assert label_group_masks(parsing, {}) == {}
    with pytest.raises(ValueError, match=re.escape("`parsing` must have shape (H, W), got shape (1, 2, 3).")):
        label_group_masks(np.zeros((1, 2, 3), np.int64), {"a": [1]})


@pytest.mark.parametrize("name", ["atr", "lip", "cihp", "deepfashion"])
def test_every_mask_of_parsing_labels_is_label_group_masks(name):
    """The person mask, the CAA regions, the identity regions and the analysis groups, on every id of the map."""
    label_map = get_label_map(name)
    rng = np.random.default_rng(0)
    parsing = rng.choice(sorted(label_map.labels), size=(24, 20))
    groups = {g: label_map.groups[g] for g in ("body", "clothing", "face")}
    by_group = label_group_masks(parsing, groups)

    person = person_mask(parsing, name)
    np.testing.assert_array_equal(person, np.logical_or.reduce(list(by_group.values())))
    np.testing.assert_array_equal(
        group_masks(parsing, name), np.stack([*by_group.values(), ~person]).astype(np.float32)
    )

    names, stacked = region_masks(parsing, name)
    regions = label_group_masks(parsing, label_map.regions, drop_empty=True)
    assert names == list(regions)
    np.testing.assert_array_equal(stacked, np.stack(list(regions.values())))

    identity = identity_region_masks(parsing, name, {"all": list(label_map.regions), "nothing": ["no such region"]})
    assert list(identity) == ["all"]
    np.testing.assert_array_equal(identity["all"], person)  # the shipped maps' regions cover the person


# --- the aspect-ratio rule -------------------------------------------------------------------------------------


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


# --- image files -----------------------------------------------------------------------------------------------


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


# --- keypoint files --------------------------------------------------------------------------------------------


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


def test_the_pose_module_still_holds_every_pose_name():
    """`truepose.conditioning.pose.X` keeps working for the names that moved to keypoints/skeleton/pose_files/detector."""
    for name in (
        "KEYPOINT_NAMES", "BODY25_TO_COCO18", "OUT_OF_FRAME_TOLERANCE", "PoseDetector", "as_keypoints", "draw_skeleton",
        "is_pose_file", "read_pose_file", "read_openpose_json", "read_deepfashion_annotations", "rescale_keypoints",
        "retarget_keypoints", "prepare_pose_image", "as_pose_batch", "OPENPOSE_HUB_REPO",
    ):  # fmt: skip
        assert hasattr(pose_module, name), name
