"""`PoseDetector` (`truepose.conditioning.detector`), checked case by case: where detector weights are looked for and
how it calls controlnet_aux (through stand-ins that record what they get, since no real detector weights can be
downloaded here)."""

import sys
import types

import numpy as np
import PIL.Image
import pytest

from truepose.conditioning import PoseDetector, prepare_pose_image
from truepose.conditioning import detector as detector_module
from truepose.conditioning.skeleton import import_controlnet_aux_openpose

H, W = 256, 176  # the DeepFashion frame of the `skeleton` fixture


class RecordingHub:
    """Stands in for `huggingface_hub.hf_hub_download`: records its calls, returns a path or raises `error`."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = [], error

    def __call__(self, repo_id, filename, **kwargs):
        self.calls.append((repo_id, filename, kwargs))
        if self.error is not None:
            raise self.error
        return f"/cache/{repo_id}/{filename}"


class RecordingBody:
    """Stands in for controlnet_aux's OpenPose `Body`: records its path and the devices it is moved to."""

    def __init__(self, path):
        self.path, self.devices = path, []

    def to(self, device):
        self.devices.append(device)


class RecordingDWpose:
    """Stands in for controlnet_aux's `DWposeDetector`: records its arguments and the devices it is moved to."""

    def __init__(self, det_ckpt=None, pose_ckpt=None, device="cpu"):
        self.arguments, self.devices = {"det_ckpt": det_ckpt, "pose_ckpt": pose_ckpt, "device": device}, []

    def to(self, device):
        self.devices.append(device)


@pytest.fixture
def fake_dwpose(monkeypatch):
    """`kind="dwpose"` without the OpenMMLab stack: its availability check passes, controlnet_aux's module is a
    stand-in."""
    module = types.ModuleType("controlnet_aux.dwpose")
    module.DWposeDetector = RecordingDWpose
    monkeypatch.setitem(sys.modules, "controlnet_aux.dwpose", module)
    monkeypatch.setattr(detector_module, "_mm_stack_available", lambda: True)
    return module


class FakeOpenpose:
    """Stands in for controlnet_aux's `OpenposeDetector`: the given people (normalised to the resized frame, `x < 0`
    for a missing joint); records the shape of the image it was given."""

    def __init__(self, people):
        self.people, self.seen_shape = people, None

    def detect_poses(self, image):
        from controlnet_aux.open_pose import BodyResult, Keypoint, PoseResult

        self.seen_shape = image.shape
        bodies = [[Keypoint(x, y) if x >= 0 else None for x, y in person] for person in self.people]
        return [PoseResult(BodyResult(k, 1.0, 18), None, None, None) for k in bodies]


def box_person(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    """18 normalised joints whose bounding box is [x0, x1] x [y0, y1] (joint 5 missing)."""
    xs, ys = np.linspace(x0, x1, 18), np.linspace(y0, y1, 18)
    return [(-1.0, -1.0) if i == 5 else (float(x), float(y)) for i, (x, y) in enumerate(zip(xs, ys))]


class FakeDWposeEstimation(RecordingDWpose):
    """Stands in for a `DWposeDetector`: `pose_estimation` returns fixed candidates (pixels) and scores, 133 joints."""

    def __init__(self, candidate, scores):
        super().__init__()
        self.candidate, self.scores, self.seen = candidate, scores, None

    def pose_estimation(self, image):
        self.seen = image.copy()
        return self.candidate, self.scores


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


@pytest.mark.parametrize(
    ("name", "expected"),
    [("/abs/folder", True), ("./folder", True), ("~/folder", True), ("~folder", True), ("a/b/c", True),
     ("org/repo", False), ("repo", True)],
)  # fmt: skip
def test_what_looks_like_a_local_path(name, expected, tmp_path, monkeypatch):
    """One rule for every "Hub id or folder" argument (`truepose._hub.is_local_path`): a Hub id is `org/name`."""
    from truepose._hub import is_local_path

    monkeypatch.chdir(tmp_path)
    assert is_local_path(name) is expected
    (tmp_path / "org").mkdir()
    assert is_local_path("org/repo") is True  # under an existing relative folder


def test_resolve_files_names_every_missing_file_and_the_hub_repo(tmp_path):
    with pytest.raises(OSError, match=r"^openpose: the folder .* lacks a\.pth, b\.pth\. Download a\.pth, b\.pth \(e"
                       r"\.g\. from https://huggingface\.co/lllyasviel/Annotators\) and put them in"):  # fmt: skip
        detector_module._resolve_files(tmp_path, ("a.pth", "b.pth"), None, False, "openpose")
    with pytest.raises(OSError, match=r"https://huggingface\.co/wanghaofan/dw-ll_ucoco_384\)"):
        detector_module._resolve_files(tmp_path, ("a.pth",), None, False, "dwpose")


def test_an_openpose_folder_without_the_body_model_names_the_openpose_hub_repo(tmp_path):
    with pytest.raises(OSError, match=r"^openpose: the folder .* lacks body_pose_model\.pth\. Download "
                       r"body_pose_model\.pth \(e\.g\. from https://huggingface\.co/lllyasviel/Annotators\)"):  # fmt: skip
        PoseDetector.from_pretrained(tmp_path)


def test_resolve_files_downloads_each_file_from_the_hub(monkeypatch):
    import huggingface_hub

    hub = RecordingHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    paths = detector_module._resolve_files("org/repo", ("a.pth", "b.pth"), "/my/cache", True, "openpose")
    assert paths == ["/cache/org/repo/a.pth", "/cache/org/repo/b.pth"]
    expected = {"cache_dir": "/my/cache", "local_files_only": True}
    assert hub.calls == [("org/repo", "a.pth", expected), ("org/repo", "b.pth", expected)]


@pytest.mark.parametrize(
    ("error", "described"),
    [(RuntimeError("first line.\nsecond line"), "RuntimeError: first line"), (RuntimeError(), "RuntimeError")],
)
def test_resolve_files_hub_failure_says_what_to_download(error, described, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", RecordingHub(error))
    message = (
        rf"^openpose: could not get 'a\.pth' from the Hub repo 'org/repo' \({described}\)\. Without "
        r"network, download a\.pth from https://huggingface\.co/org/repo and pass the folder holding them, e\.g\. "
        r"`PoseDetector\.from_pretrained\('/path/to/annotators'\)`\.$"
    )
    with pytest.raises(OSError, match=message):
        detector_module._resolve_files("org/repo", ("a.pth",), None, False, "openpose")


def test_mm_stack_is_available_only_with_all_three_packages(monkeypatch):
    import importlib.util

    installed = {"mmcv", "mmdet", "mmpose"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert detector_module._mm_stack_available() is True
    installed.remove("mmdet")
    assert detector_module._mm_stack_available() is False


def test_pose_detector_defaults_and_kind_check():
    detector = PoseDetector("a detector")
    assert (detector.detector, detector.kind, detector.detect_resolution) == ("a detector", "openpose", 512)
    assert repr(PoseDetector(None, kind="dwpose", detect_resolution=256)) == (
        "PoseDetector(kind='dwpose', detect_resolution=256)"
    )
    with pytest.raises(ValueError, match=r"^`kind` must be 'openpose' or 'dwpose', got 'mediapipe'\.$"):
        PoseDetector(None, kind="mediapipe")


def test_pose_detector_from_a_hub_repo_passes_the_download_options(monkeypatch):
    import huggingface_hub

    open_pose, _ = import_controlnet_aux_openpose()
    monkeypatch.setattr(open_pose, "Body", RecordingBody)
    hub = RecordingHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    detector = PoseDetector.from_pretrained("org/annotators")
    assert hub.calls == [("org/annotators", "body_pose_model.pth", {"cache_dir": None, "local_files_only": False})]
    assert detector.detector.body_estimation.path == "/cache/org/annotators/body_pose_model.pth"
    assert (detector.kind, detector.detect_resolution) == ("openpose", 512)
    assert detector.detector.body_estimation.devices == []  # no device given: not moved
    detector = PoseDetector.from_pretrained(
        "org/annotators", cache_dir="/c", local_files_only=True, device="meta", detect_resolution=256
    )
    assert hub.calls[-1][2] == {"cache_dir": "/c", "local_files_only": True}
    assert detector.detect_resolution == 256
    assert detector.detector.body_estimation.devices == ["meta"]


@pytest.mark.parametrize(
    ("error", "described"),
    [(RuntimeError("bad magic\nmore"), "RuntimeError: bad magic"), (RuntimeError(), "RuntimeError")],
)
def test_pose_detector_unreadable_body_model(error, described, tmp_path, monkeypatch):
    def failing_body(path):
        raise error

    open_pose, _ = import_controlnet_aux_openpose()
    monkeypatch.setattr(open_pose, "Body", failing_body)
    (tmp_path / "body_pose_model.pth").write_bytes(b"")
    message = rf"^openpose: '.*body_pose_model\.pth' is not a valid OpenPose body model \({described}\)\.$"
    with pytest.raises(OSError, match=message):
        PoseDetector.from_pretrained(tmp_path)


def test_dwpose_needs_the_openmmlab_stack(monkeypatch):
    monkeypatch.setattr(detector_module, "_mm_stack_available", lambda: False)
    message = (
        r"^kind='dwpose' needs the OpenMMLab stack: `pip install -U openmim && mim install mmengine 'mmcv>=2\.0\.1' "
        r"'mmdet>=3\.1\.0' 'mmpose>=1\.1\.0'`\. Use kind='openpose' otherwise\.$"
    )
    with pytest.raises(ImportError, match=message):
        PoseDetector.from_pretrained("x", kind="dwpose")


def test_dwpose_from_a_folder(fake_dwpose, tmp_path):
    (tmp_path / "dw-ll_ucoco_384.pth").write_bytes(b"")
    detector = PoseDetector.from_pretrained(tmp_path, kind="dwpose", detect_resolution=256)
    assert (detector.kind, detector.detect_resolution) == ("dwpose", 256)
    assert detector.detector.arguments == {
        "det_ckpt": None,  # no person detector file: controlnet_aux runs without one
        "pose_ckpt": str(tmp_path / "dw-ll_ucoco_384.pth"),
        "device": "cpu",
    }
    (tmp_path / "yolox_l_8x8_300e_coco.pth").write_bytes(b"")
    detector = PoseDetector.from_pretrained(tmp_path, kind="dwpose", device="cuda:1")
    assert detector.detector.arguments["det_ckpt"] == str(tmp_path / "yolox_l_8x8_300e_coco.pth")
    assert detector.detector.arguments["device"] == "cuda:1"
    assert detector.detector.devices == ["cuda:1"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match=r"^dwpose: the folder .* lacks dw-ll_ucoco_384\.pth\. .*wanghaofan"):
        PoseDetector.from_pretrained(tmp_path / "empty", kind="dwpose")


def test_dwpose_from_a_hub_repo_passes_the_download_options(fake_dwpose, monkeypatch):
    import huggingface_hub

    hub = RecordingHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    detector = PoseDetector.from_pretrained("org/dwpose", kind="dwpose", cache_dir="/c", local_files_only=True)
    assert hub.calls == [("org/dwpose", "dw-ll_ucoco_384.pth", {"cache_dir": "/c", "local_files_only": True})]
    assert detector.detector.arguments["pose_ckpt"] == "/cache/org/dwpose/dw-ll_ucoco_384.pth"
    hub.error = RuntimeError("offline")
    with pytest.raises(OSError, match=r"^dwpose: could not get 'dw-ll_ucoco_384\.pth' from the Hub repo 'org/dwpose'"):
        PoseDetector.from_pretrained("org/dwpose", kind="dwpose")


def test_to_moves_the_network_of_each_kind():
    body = RecordingBody("body.pth")
    openpose = PoseDetector(types.SimpleNamespace(body_estimation=body), kind="openpose")
    assert openpose.to("meta") is openpose and body.devices == ["meta"]
    dwpose = PoseDetector(RecordingDWpose(), kind="dwpose")
    assert dwpose.to("meta") is dwpose and dwpose.detector.devices == ["meta"]


def test_pose_detector_maps_back_to_the_image_frame():
    small = [(0.1 + 0.01 * i, 0.1 + 0.01 * i) for i in range(18)]
    large = [(0.2 + 0.04 * i, 0.05 + 0.05 * i) if i != 3 else (-1.0, -1.0) for i in range(18)]
    fake = FakeOpenpose([small, large])
    detector = PoseDetector(fake, kind="openpose", detect_resolution=128)
    image = PIL.Image.new("RGB", (100, 150))
    keypoints = detector(image)
    assert fake.seen_shape[:2] == (192, 128)  # controlnet_aux resized to multiples of 64
    assert keypoints.shape == (18, 3)
    np.testing.assert_array_equal(keypoints[3], [-1, -1, 0])
    i = np.array([0, 1, 2, 4, 17])
    # normalised x * 128 in the resized frame, mapped pixel-centre aligned back to width 100 (height 150 from 192)
    np.testing.assert_allclose(keypoints[i, 0], ((0.2 + 0.04 * i) * 128 + 0.5) * 100 / 128 - 0.5, atol=1e-3)
    np.testing.assert_allclose(keypoints[i, 1], ((0.05 + 0.05 * i) * 192 + 0.5) * 150 / 192 - 0.5, atol=1e-3)
    assert len(detector.detect(image)) == 2


def test_detect_marks_found_joints_with_confidence_1_and_names_the_image_argument():
    detector = PoseDetector(FakeOpenpose([box_person(0.1, 0.5, 0.1, 0.9)]), detect_resolution=64)
    (person,) = detector.detect(PIL.Image.new("RGB", (64, 64)))
    assert person.dtype == np.float32
    np.testing.assert_array_equal(person[:, 2], [0.0 if i == 5 else 1.0 for i in range(18)])
    with pytest.raises(TypeError, match=r"^`image` must be one image"):
        detector.detect("photo.jpg")


def test_the_largest_person_is_the_one_with_the_largest_keypoint_box():
    # Box areas in the 64x64 frame: A 25x25 = 625 (the largest), B 10x50, C 10x50. Sums of corners, or one
    # extreme over both axes, would pick B or C instead.
    a, b, c = box_person(0, 25, 0, 25), box_person(0, 10, 0, 50), box_person(40, 50, 0, 50)
    people = [[(x / 64, y / 64) if x >= 0 else (x, y) for x, y in person] for person in (b, a, c)]  # normalised
    detector = PoseDetector(FakeOpenpose(people), detect_resolution=64)
    largest = detector(PIL.Image.new("RGB", (64, 64)))
    np.testing.assert_allclose(largest[[0, 17], :2], [[0, 0], [25, 25]], atol=1e-4)
    with pytest.raises(ValueError, match=r"^no person found in the image by the openpose detector; pass the target "
                       r"pose as keypoints or a skeleton image instead\.$"):  # fmt: skip
        PoseDetector(FakeOpenpose([]), detect_resolution=64)(PIL.Image.new("RGB", (64, 64)))


def test_dwpose_detect_feeds_bgr_and_keeps_joints_scored_above_0_3():
    candidate = np.zeros((1, 133, 2), np.float32)
    candidate[0, :18] = np.stack([np.arange(18) + 10.0, np.arange(18) + 20.0], axis=1)
    scores = np.full((1, 133), 0.9, np.float32)
    scores[0, 3], scores[0, 4] = 0.3, 0.31  # 0.3 itself is below controlnet_aux's threshold
    fake = FakeDWposeEstimation(candidate, scores)
    detector = PoseDetector(fake, kind="dwpose", detect_resolution=64)
    photo = np.zeros((64, 64, 3), np.uint8)
    photo[..., 0] = 200  # red
    (person,) = detector.detect(photo)
    assert fake.seen.shape == (64, 64, 3) and (fake.seen[..., 2] == 200).all() and (fake.seen[..., :2] == 0).all()
    expected = np.concatenate([candidate[0, :18], scores[0, :18, None]], axis=1)
    expected[3] = (-1, -1, 0)
    np.testing.assert_allclose(person, expected, atol=1e-4)
