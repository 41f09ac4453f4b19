import hashlib

import numpy as np
import pytest
from PIL import Image

from truepose.data import (
    ATR_LABELS,
    SyntheticPoseDataset,
    check_pair_item,
    collate_pairs,
    random_appearance,
    random_pose,
    render_person,
    sample_pair_spec,
)


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


@pytest.fixture(scope="module")
def items():
    dataset = SyntheticPoseDataset(num_pairs=24, image_size=(64, 64), seed=3)
    return [dataset[i] for i in range(len(dataset))]


# sha256 of the items' pixels, parsing maps and keypoints, computed with the generator before it became a package
# (issue 25). The shipped demo model's held-out evaluation and every synthetic run depend on these exact data: a
# change to the generator (or a Pillow / NumPy upgrade that changes drawing) must be deliberate.
PINNED_DIGESTS = [
    ((64, 64), 3, 4, "2acda1da289bc3a01f40406441722863a52ba0db864c9d16c109290296313db8"),
    ((96, 64), 1000, 2, "f777e0edc282f200b78999d61619b729f6f9fd3b365e9d7e08048564b64d2f10"),
    ((256, 176), 5, 1, "07fb45f0dbd99e1e663683af8d85498b6b97cc575f9756e89b0491539d8d700c"),
]


def test_contract(items):
    for item in items:
        check_pair_item(item, (64, 64))
        assert item["label_map"] == "atr"
    assert len({item["name"] for item in items}) == len(items)
    batch = collate_pairs(items[:3])
    assert len(batch["source_image"]) == 3


def test_deterministic():
    a = SyntheticPoseDataset(10, (64, 48), seed=7)
    b = SyntheticPoseDataset(99, (64, 48), seed=7)  # item i depends on (seed, i) only
    for index in (0, 5, 9):
        x, y = a[index], b[index]
        for key in ("source_image", "target_image"):
            assert np.array_equal(np.asarray(x[key]), np.asarray(y[key]))
        for key in ("source_keypoints", "target_keypoints", "source_parsing", "target_parsing"):
            assert np.array_equal(x[key], y[key])
        assert x["name"] == y["name"]
    other = SyntheticPoseDataset(10, (64, 48), seed=8)[0]
    assert not np.array_equal(np.asarray(other["source_image"]), np.asarray(a[0]["source_image"]))


def test_keypoints_lie_on_the_figure(items):
    for item in items:
        for side in ("source", "target"):
            keypoints, parsing = item[f"{side}_keypoints"], item[f"{side}_parsing"]
            visible = keypoints[:, 2] > 0
            assert visible[1:14].all()  # body keypoints are always visible and inside the frame
            assert (keypoints[~visible] == [-1, -1, 0]).all()
            xs = np.round(keypoints[visible, 0]).astype(int)
            ys = np.round(keypoints[visible, 1]).astype(int)
            assert ((xs >= 0) & (xs < 64) & (ys >= 0) & (ys < 64)).all()
            assert (parsing[ys, xs] != 0).all(), item["name"]


def test_parsing_labels_are_atr(items):
    seen = set()
    for item in items:
        for side in ("source", "target"):
            labels = set(np.unique(item[f"{side}_parsing"]).tolist())
            assert labels <= set(ATR_LABELS)
            assert {0, 11}.issubset(labels)  # background and face always
            seen |= labels
    assert {2, 4, 9, 10, 11, 12, 13, 14, 15}.issubset(seen)
    assert seen & {5, 6, 7}  # skirt / pants / dress


def test_pair_shares_appearance_but_not_pose(items):
    for item in items:
        source, target = np.asarray(item["source_image"]), np.asarray(item["target_image"])
        sp, tp = item["source_parsing"], item["target_parsing"]
        # same background where both are background
        both_bg = _erode((sp == 0) & (tp == 0))  # away from the anti-aliased figure edges
        same = (np.abs(source[both_bg].astype(int) - target[both_bg].astype(int)) <= 2).all(axis=1)
        assert same.mean() > 0.97
        # same clothes: the main colour of the source's largest garment is a main colour of the target's too
        garment = max((4, 5, 6, 7), key=lambda label: (sp == label).sum())
        colours, counts = np.unique(source[sp == garment], axis=0, return_counts=True)
        main = colours[counts.argmax()]
        assert (target[tp == garment] == main).all(axis=1).mean() > 0.1, item["name"]
        # different pose
        kp_s, kp_t = item["source_keypoints"], item["target_keypoints"]
        both = (kp_s[:, 2] > 0) & (kp_t[:, 2] > 0)
        assert np.abs(kp_s[both, :2] - kp_t[both, :2]).mean() > 1.5
        assert not np.array_equal(sp, tp)


def test_pair_is_one_appearance_in_two_poses():
    dataset = SyntheticPoseDataset(4, (64, 64), seed=1)
    appearance, source_keypoints, target_keypoints = dataset.pair_spec(2)
    item = dataset[2]
    image, parsing = render_person(appearance, target_keypoints, (64, 64))
    assert np.array_equal(np.asarray(image), np.asarray(item["target_image"]))
    assert np.array_equal(parsing, item["target_parsing"])
    assert np.array_equal(source_keypoints, item["source_keypoints"])
    spec = sample_pair_spec(1, 2, (64, 64))  # the dataset's pair spec is a function of (seed, index) only
    assert spec[0] == appearance and np.array_equal(spec[2], target_keypoints)


@pytest.mark.parametrize("image_size, seed, num_pairs, expected", PINNED_DIGESTS)
def test_generated_data_are_pinned(image_size, seed, num_pairs, expected):
    dataset = SyntheticPoseDataset(num_pairs, image_size, seed=seed)
    digest = hashlib.sha256()
    for index in range(num_pairs):
        item = dataset[index]
        for side in ("source", "target"):
            digest.update(np.ascontiguousarray(np.asarray(item[f"{side}_image"]), dtype=np.uint8).tobytes())
            digest.update(np.ascontiguousarray(item[f"{side}_parsing"], dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(item[f"{side}_keypoints"], dtype=np.float32).tobytes())
    assert digest.hexdigest() == expected


def test_render_person_api_and_missing_keypoints():
    rng = np.random.default_rng(0)
    appearance = random_appearance(rng)
    keypoints = random_pose(rng, (128, 96), appearance)
    assert keypoints.shape == (18, 3) and keypoints.dtype == np.float32
    image, parsing = render_person(appearance, keypoints, (128, 96))
    assert isinstance(image, Image.Image) and image.size == (96, 128) and image.mode == "RGB"
    assert parsing.shape == (128, 96) and parsing.dtype == np.int64
    # Keypoints from a real annotation may miss legs and face points: still renders, without those limbs.
    partial = keypoints.copy()
    partial[[0, 9, 10, 12, 13, 14, 15, 16, 17]] = (-1, -1, 0)
    _, parsing = render_person(appearance, partial, (128, 96))
    assert not np.isin(parsing, [9, 10]).any()  # no shoes without ankles
    with pytest.raises(ValueError, match="keypoints"):
        render_person(appearance, np.full((18, 3), -1.0), (64, 64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_pairs"):
        SyntheticPoseDataset(-1)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticPoseDataset(1, image_size=(0, 64))
    with pytest.raises(IndexError):
        SyntheticPoseDataset(2)[2]


def test_studio_backgrounds_change_only_the_background():
    varied = SyntheticPoseDataset(8, (64, 48), seed=7)
    studio = SyntheticPoseDataset(8, (64, 48), seed=7, backgrounds="studio")
    for index in range(8):
        x, y = varied[index], studio[index]
        for key in ("source_keypoints", "target_keypoints", "source_parsing", "target_parsing"):
            assert np.array_equal(x[key], y[key])
        assert x["name"] == y["name"]
        for side in ("source", "target"):
            inside = _erode(_erode(x[f"{side}_parsing"] != 0))  # away from the anti-aliased outline
            image_x, image_y = np.asarray(x[f"{side}_image"]), np.asarray(y[f"{side}_image"])
            same = (image_x[inside] == image_y[inside]).all(axis=1)
            assert same.mean() > 0.95  # the rest: gaps between limbs narrower than a pixel show the background
            background = image_y[_erode(_erode(y[f"{side}_parsing"] == 0))].astype(np.float32) / 255
            value, saturation = background.max(axis=1), np.ptp(background, axis=1) / background.max(axis=1)
            assert value.min() > 0.6 and saturation.max() < 0.12, (index, value.min(), saturation.max())
    assert varied.pair_spec(0)[0].background_seed == studio.pair_spec(0)[0].background_seed


def test_varied_backgrounds_include_dark_and_saturated_ones():
    dataset = SyntheticPoseDataset(40, (64, 48), seed=7)
    colours = np.array([dataset.pair_spec(i)[0].background_colors[0] for i in range(40)], dtype=np.float32) / 255
    assert (colours.max(axis=1) < 0.6).any() and (np.ptp(colours, axis=1) / colours.max(axis=1) > 0.3).any()


@pytest.mark.parametrize("call", [
    lambda: SyntheticPoseDataset(4, (64, 48), backgrounds="white"),
    lambda: random_appearance(np.random.default_rng(0), backgrounds="plain"),
])  # fmt: skip
def test_unknown_backgrounds_are_refused(call):
    with pytest.raises(ValueError, match="`backgrounds` must be one of"):
        call()
