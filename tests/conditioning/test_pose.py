import json

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import (
    BODY25_TO_COCO18,
    PoseDetector,
    as_keypoints,
    draw_skeleton,
    parse_deepfashion_keypoints,
    prepare_pose_image,
    read_deepfashion_annotations,
    read_openpose_json,
    retarget_keypoints,
)

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


# --- keypoint arrays ------------------------------------------------------------------------------------------


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


# --- readers --------------------------------------------------------------------------------------------------


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


# --- drawing --------------------------------------------------------------------------------------------------


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


# --- prepare_pose_image ---------------------------------------------------------------------------------------


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


# --- PoseDetector ---------------------------------------------------------------------------------------------


def test_pose_detector_random_weights_finds_no_person(openpose_dir):
    from skimage.data import astronaut

    detector = PoseDetector.from_pretrained(openpose_dir, detect_resolution=64)
    assert detector.kind == "openpose"
    # A portrait crop of the astronaut, small: the body network's cost grows with the photo's width.
    photo = PIL.Image.fromarray(astronaut()[:400, 50:250]).resize((64, 128))
    with pytest.raises(ValueError, match="no person found"):
        prepare_pose_image(photo, H, W, is_photo=True, detector=detector)


def test_pose_detector_missing_files(tmp_path):
    with pytest.raises(OSError, match=r"does not exist.*body_pose_model\.pth"):
        PoseDetector.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(OSError, match=r"lacks body_pose_model\.pth.*put them in"):
        PoseDetector.from_pretrained(tmp_path)
    (tmp_path / "body_pose_model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(OSError, match="not a valid OpenPose body model"):
        PoseDetector.from_pretrained(tmp_path)
    with pytest.raises(OSError, match=r"body_pose_model\.pth.*lllyasviel/Annotators") as info:
        PoseDetector.from_pretrained("lllyasviel/Annotators", local_files_only=True)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_pose_detector_bad_kind_and_dwpose_without_mm():
    with pytest.raises(ValueError, match="`kind`"):
        PoseDetector.from_pretrained("x", kind="mediapipe")
    import importlib.util

    if importlib.util.find_spec("mmpose") is None:
        with pytest.raises(ImportError, match="mmpose"):
            PoseDetector.from_pretrained("x", kind="dwpose")
