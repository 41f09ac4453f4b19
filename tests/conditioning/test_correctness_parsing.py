"""Correctness of the parsing label tables and masks against tables written out by hand (issue 14).

The group and region tables are copied here as explicit ids from the datasets' label lists, not derived from
the shipped code, so a label moved to the wrong HPFA group or CAA region fails.
"""

import re

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import (
    LABEL_MAPS,
    LabelMap,
    as_parsing_batch,
    as_parsing_map,
    check_person_present,
    get_label_map,
    label_map_from_id2label,
    parse_images,
    person_mask,
    region_crops,
    region_masks,
)

# id -> label, from each dataset's label list.
LABELS = {
    "atr": (
        "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt", "Left-shoe",
        "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
    ),
    "lip": (
        "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants",
        "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
        "Right-shoe",
    ),
    "cihp": (
        "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants",
        "Torso-skin", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
        "Right-shoe",
    ),
    "deepfashion": (
        "background", "top", "outer", "skirt", "dress", "pants", "leggings", "headwear", "eyeglass", "neckwear",
        "belt", "footwear", "bag", "hair", "face", "skin", "ring", "wrist wearing", "socks", "gloves", "necklace",
        "rompers", "earrings", "tie",
    ),
}  # fmt: skip

# HPFA groups: skin -> body, garments and accessories -> clothing, face and hair -> face.
GROUPS = {
    "atr": {"body": (12, 13, 14, 15), "clothing": (1, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17), "face": (2, 11)},
    "lip": {"body": (14, 15, 16, 17), "clothing": (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19), "face": (2, 13)},
    "cihp": {"body": (10, 14, 15, 16, 17), "clothing": (1, 3, 4, 5, 6, 7, 8, 9, 11, 12, 18, 19), "face": (2, 13)},
    "deepfashion": {
        "body": (15,),
        "clothing": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 21, 22, 23),
        "face": (13, 14),
    },
}

# CAA regions, in the order `region_masks` returns them: left/right parts merged.
REGIONS = {
    "atr": [
        ("hat", (1,)), ("hair", (2,)), ("sunglasses", (3,)), ("upper_clothes", (4,)), ("skirt", (5,)),
        ("pants", (6,)), ("dress", (7,)), ("belt", (8,)), ("shoes", (9, 10)), ("face", (11,)), ("legs", (12, 13)),
        ("arms", (14, 15)), ("bag", (16,)), ("scarf", (17,)),
    ],
    "lip": [
        ("hat", (1,)), ("hair", (2,)), ("gloves", (3,)), ("sunglasses", (4,)), ("upper_clothes", (5,)),
        ("dress", (6,)), ("coat", (7,)), ("socks", (8,)), ("pants", (9,)), ("jumpsuits", (10,)), ("scarf", (11,)),
        ("skirt", (12,)), ("face", (13,)), ("arms", (14, 15)), ("legs", (16, 17)), ("shoes", (18, 19)),
    ],
    "cihp": [
        ("hat", (1,)), ("hair", (2,)), ("gloves", (3,)), ("sunglasses", (4,)), ("upper_clothes", (5,)),
        ("dress", (6,)), ("coat", (7,)), ("socks", (8,)), ("pants", (9,)), ("torso_skin", (10,)), ("scarf", (11,)),
        ("skirt", (12,)), ("face", (13,)), ("arms", (14, 15)), ("legs", (16, 17)), ("shoes", (18, 19)),
    ],
    "deepfashion": [
        ("top", (1,)), ("outer", (2,)), ("skirt", (3,)), ("dress", (4,)), ("pants", (5,)), ("leggings", (6,)),
        ("headwear", (7,)), ("eyeglass", (8,)), ("neckwear", (9,)), ("belt", (10,)), ("footwear", (11,)),
        ("bag", (12,)), ("hair", (13,)), ("face", (14,)), ("skin", (15,)), ("ring", (16,)),
        ("wrist_wearing", (17,)), ("socks", (18,)), ("gloves", (19,)), ("necklace", (20,)), ("rompers", (21,)),
        ("earrings", (22,)), ("tie", (23,)),
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LABELS))
def test_label_table_is_the_hand_written_one(name):
    label_map = LABEL_MAPS[name]
    assert label_map.name == name
    assert label_map.labels == dict(enumerate(LABELS[name]))
    assert label_map.groups == GROUPS[name]
    assert list(label_map.regions.items()) == REGIONS[name]
    assert label_map.region_names == tuple(region for region, _ in REGIONS[name])
    assert label_map.person_ids == tuple(range(1, len(LABELS[name])))  # everything but background


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_label_alone_gives_its_group_and_region(name):
    """One pixel of each label: person mask iff not background, exactly its own region."""
    region_of = {i: region for region, ids in REGIONS[name] for i in ids}
    for label in range(len(LABELS[name])):
        parsing = np.zeros((3, 4), np.int64)
        parsing[1, 2] = label
        mask = person_mask(parsing, name, allow_empty=True)
        assert mask.sum() == (label != 0) and mask[1, 2] == (label != 0)
        names, masks = region_masks(parsing, name)
        assert names == ([region_of[label]] if label else [])
        if label:
            np.testing.assert_array_equal(masks[0], parsing == label)


def test_round_trip_and_dict_forms():
    for label_map in LABEL_MAPS.values():
        as_dict = label_map.to_dict()
        assert as_dict["labels"] == {str(i): n for i, n in enumerate(LABELS[label_map.name])}
        assert as_dict["groups"] == {k: list(v) for k, v in GROUPS[label_map.name].items()}
        assert get_label_map(as_dict) == label_map
    assert get_label_map("ATR") is LABEL_MAPS["atr"] and get_label_map() is LABEL_MAPS["atr"]
    custom = get_label_map({"labels": {"0": "bg", "1": "x"}, "groups": {"body": ["1"], "clothing": [], "face": []},
                            "regions": {"r": [1]}})  # fmt: skip
    assert custom.name == "custom" and custom.labels == {0: "bg", 1: "x"} and custom.groups["body"] == (1,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"groups": {"body": (1,), "clothing": ()}}, r"exactly the keys \('body', 'clothing', 'face'\)"),
        ({"groups": {"body": (5,), "clothing": (), "face": ()}}, r"groups\['body'\] uses ids \[5\]"),
        ({"regions": {"r": (7,)}}, r"regions\['r'\] uses ids \[7\]"),
        ({"regions": {"r": ()}}, "region 'r' has no ids"),
        ({"regions": {"r": (0,)}}, r"region 'r' uses ids \[0\] outside"),
        ({"regions": {"r": (1,), "s": (1, 2)}}, "id 1 is in both regions 'r' and 's'"),
    ],
)
def test_label_map_validation_messages(kwargs, message):
    fields = {"labels": {0: "bg", 1: "a", 2: "b"}, "groups": {"body": (1,), "clothing": (2,), "face": ()}}
    fields["regions"] = {"a": (1,)}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LabelMap(name="t", **fields)


def test_get_label_map_errors():
    with pytest.raises(ValueError, match=r"Unknown `label_map` 'nope'; known names are \['atr', 'cihp'"):
        get_label_map("nope")
    with pytest.raises(ValueError, match=r"needs the keys .* missing \['groups', 'regions'\]"):
        get_label_map({"labels": {}})
    with pytest.raises(ValueError, match="`label_map` dict is malformed"):
        get_label_map({"labels": {0: "bg"}, "groups": None, "regions": {}})
    with pytest.raises(TypeError, match="must be a name, a LabelMap or a dict, got int"):
        get_label_map(3)


def test_label_map_from_id2label_normalises_names():
    id2label = {str(i): n.upper().replace("-", " ") for i, n in enumerate(LABELS["cihp"])}
    assert label_map_from_id2label(id2label) is LABEL_MAPS["cihp"]
    id2label = {i: n.replace(" ", "_") for i, n in enumerate(LABELS["deepfashion"])}
    assert label_map_from_id2label(id2label) is LABEL_MAPS["deepfashion"]
    with pytest.raises(ValueError, match="must map integer ids to label names"):
        label_map_from_id2label({"x": "a"})
    with pytest.raises(ValueError, match=r"match none of the shipped label maps \['atr'"):
        label_map_from_id2label({1: "b", 0: "a"})


def test_nearest_resize_samples_pixel_centres():
    """Output pixel (i, j) takes the source pixel under its centre: row floor((i + 0.5) * H_src / H), up and down."""
    rng = np.random.default_rng(0)
    parsing = rng.integers(0, 18, size=(20, 14))
    for height, width in [(40, 28), (10, 7), (30, 21)]:
        expected = np.array(
            [[parsing[int((i + 0.5) * 20 / height), int((j + 0.5) * 14 / width)] for j in range(width)]
             for i in range(height)]
        )  # fmt: skip
        np.testing.assert_array_equal(as_parsing_map(parsing, height, width), expected)
    # Under 1 % aspect-ratio difference is resized, more is refused.
    assert as_parsing_map(np.zeros((200, 200), np.int64), 200, 201).shape == (200, 201)
    with pytest.raises(ValueError, match=r"has size \(H, W\) = \(100, 100\) but the image is \(100, 98\)"):
        as_parsing_map(np.zeros((100, 100), np.int64), 100, 98)


def test_as_parsing_map_shapes_dtypes_and_messages():
    parsing = np.arange(12).reshape(3, 4) % 18
    for form in (parsing[None], parsing[..., None], parsing[None, None], torch.from_numpy(parsing)):
        out = as_parsing_map(form, 3, 4)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, parsing)
    np.testing.assert_array_equal(as_parsing_map(parsing.astype(np.float32), 3, 4), parsing)
    with pytest.raises(ValueError, match=r"`seg` must have shape \(H, W\) of label ids, got shape \(2, 3, 4\)"):
        as_parsing_map(np.stack([parsing, parsing]), 3, 4, argument_name="seg")
    with pytest.raises(ValueError, match="`source_parsing` must hold integer label ids, got dtype bool"):
        as_parsing_map(parsing > 3, 3, 4)
    with pytest.raises(ValueError, match="non-integer values"):
        as_parsing_map(parsing + 0.5, 3, 4)
    with pytest.raises(ValueError, match="non-integer values"):
        as_parsing_map(np.full((3, 4), np.inf), 3, 4)
    with pytest.raises(ValueError, match=r"holds label ids \[18, 30\] that the label map 'atr' does not define \(its ids: 0..17\)"):  # fmt: skip
        as_parsing_map(np.array([[18, 30]]), 1, 2)
    with pytest.raises(ValueError, match="PIL mode 'L', 'P' or 'I'"):
        as_parsing_map(PIL.Image.new("RGB", (4, 3), (200, 10, 30)), 3, 4)  # a colour visualisation
    with pytest.raises(TypeError, match="got list"):
        as_parsing_map([[0]], 1, 1)
    image = PIL.Image.fromarray(parsing.astype(np.uint8), mode="L")
    np.testing.assert_array_equal(as_parsing_map(image, 3, 4), parsing)


def test_region_crops_exact_pixels():
    """A 2x3 region in a 6x6 image: crop = its bounding box, fill outside the mask, centred in a 3x3 square."""
    rgb = np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3)
    mask = np.zeros((6, 6), bool)
    mask[2, 1:4] = True
    mask[3, 1] = True
    (crop,) = region_crops(rgb, mask, fill=(1, 2, 3))
    expected = np.empty((3, 3, 3), np.uint8)
    expected[:] = (1, 2, 3)
    expected[0, :] = rgb[2, 1:4]
    expected[1, 0] = rgb[3, 1]
    np.testing.assert_array_equal(np.asarray(crop), expected)
    # A tall region is padded left and right: 3 rows x 1 column -> column 1 of a 3x3 square.
    tall = np.zeros((6, 6), bool)
    tall[1:4, 5] = True
    (crop,) = region_crops(PIL.Image.fromarray(rgb), tall[None])
    expected = np.full((3, 3, 3), 255, np.uint8)
    expected[:, 1] = rgb[1:4, 5]
    np.testing.assert_array_equal(np.asarray(crop), expected)
    with pytest.raises(ValueError, match=r"`masks\[1\]` is empty"):
        region_crops(rgb, np.stack([mask, np.zeros_like(mask)]))
    with pytest.raises(ValueError, match=r"with \(H, W\) = \(6, 6\) \(the image size\), got \(1, 5, 6\)"):
        region_crops(rgb, np.zeros((1, 5, 6), bool))
    with pytest.raises(ValueError, match="must be an RGB triple"):
        region_crops(rgb, mask, fill=(1, 2))
    with pytest.raises(TypeError, match="PIL image or an \\(H, W, 3\\) uint8"):
        region_crops(rgb.astype(np.float32), mask)


def exactly(message: str) -> str:
    """`pytest.raises(match=...)` pattern for the whole message."""
    return "^" + re.escape(message) + "$"


def test_full_error_messages():
    with pytest.raises(ValueError, match=exactly(
        "no person found in source_parsing: none of its pixels has a body, clothing or face label. Check that the "
        "parsing map and its `label_map` match the image."
    )):  # fmt: skip
        check_person_present(np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match=exactly(
        "LabelMap 't': region 'r' uses ids [0] outside the body/clothing/face groups (background is never a region)."
    )):  # fmt: skip
        LabelMap("t", {0: "bg", 1: "a"}, {"body": (1,), "clothing": (), "face": ()}, {"r": (0,)})
    with pytest.raises(TypeError, match=exactly("`image` must be a PIL image or an (H, W, 3) uint8 np.ndarray.")):
        region_crops(np.zeros((2, 2), np.uint8), np.ones((2, 2), bool))


def test_parse_images_refuses_anything_but_pil_images():
    message = exactly("`images` must be a non-empty list of PIL images.")
    for images in ([], ["person.png"], [PIL.Image.new("RGB", (4, 4)), np.zeros((4, 4, 3), np.uint8)]):
        with pytest.raises(TypeError, match=message):
            parse_images(None, None, images)


def test_region_crops_of_a_gray_pil_image_are_rgb():
    gray = np.arange(36, dtype=np.uint8).reshape(6, 6)
    mask = np.zeros((6, 6), bool)
    mask[1:3, 2:4] = True
    (crop,) = region_crops(PIL.Image.fromarray(gray, mode="L"), mask)
    assert crop.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(crop), np.repeat(gray[1:3, 2:4, None], 3, axis=2))


def test_gray_rgb_parsing_image_is_read_as_label_ids():
    """Label ids saved as a gray RGB picture are read back; a colour picture (channels differ) is refused."""
    parsing = np.array([[0, 4, 11], [2, 6, 17]], dtype=np.uint8)
    gray = PIL.Image.fromarray(np.repeat(parsing[..., None], 3, axis=2), mode="RGB")
    np.testing.assert_array_equal(as_parsing_map(gray, 2, 3), parsing)
    red_equals_green = np.repeat(parsing[..., None], 3, axis=2)
    red_equals_green[0, 1, 2] = 5  # blue differs in one pixel
    with pytest.raises(ValueError, match="got mode 'RGB'"):
        as_parsing_map(PIL.Image.fromarray(red_equals_green, mode="RGB"), 2, 3)


@pytest.mark.parametrize(
    "shape, count",
    [
        ((5, 4), 1), ((1, 5, 4), 1), ((5, 4, 1), 1), ((2, 5, 1), 1), ((1, 1, 5, 4), 1),
        ((2, 5, 4), 2), ((3, 1, 4), 3), ((2, 5, 2), 2), ((2, 1, 5, 4), 2), ((3, 1, 5, 4), 3),
    ],
)  # fmt: skip
def test_as_parsing_batch_splits_batches_only(shape, count):
    for batch in (np.zeros(shape, np.int64), torch.zeros(shape, dtype=torch.long)):
        maps = as_parsing_batch(batch)
        assert isinstance(maps, list) and len(maps) == count
        if count == 1:
            assert maps[0] is batch
        else:
            assert all(tuple(m.shape) == shape[1:] for m in maps)


def test_as_parsing_batch_lists_and_single_maps():
    a, b = np.zeros((5, 4), np.int64), np.ones((5, 4), np.int64)
    assert as_parsing_batch([a]) == [a] and as_parsing_batch((a, b)) == [a, b]
    image = PIL.Image.new("L", (4, 5))
    assert as_parsing_batch(image) == [image]
    with pytest.raises(ValueError, match=exactly("`maps` is an empty list; pass one parsing map per source image.")):
        as_parsing_batch([], argument_name="maps")
    with pytest.raises(ValueError, match="^`source_parsing` is an empty list"):
        as_parsing_batch([])


@pytest.mark.parametrize("mode", ["L", "P", "I", "I;16", "I;16L", "I;16B"])
def test_every_label_id_image_mode_is_read(mode):
    parsing = np.array([[0, 2, 11], [4, 6, 17]])
    if mode.startswith("I;16"):
        dtype = ">u2" if mode.endswith("B") else "<u2"
        image = PIL.Image.frombytes(mode, (3, 2), parsing.astype(dtype).tobytes())
    else:
        image = PIL.Image.fromarray(parsing.astype(np.int32 if mode == "I" else np.uint8)).convert(mode)
    assert image.mode == mode
    np.testing.assert_array_equal(as_parsing_map(image, 2, 3), parsing)


def test_more_full_error_messages():
    with pytest.raises(ValueError, match=exactly(
        "`source_parsing` must be a label-id image (PIL mode 'L', 'P' or 'I'), got mode 'RGBA'; a colour "
        "visualisation of a parsing map cannot be read back into label ids."
    )):  # fmt: skip
        as_parsing_map(PIL.Image.new("RGBA", (3, 2)), 2, 3)
    with pytest.raises(ValueError, match=exactly("`parsing` must have shape (H, W), got shape (1, 2, 3).")):
        region_masks(np.zeros((1, 2, 3), np.int64))
    with pytest.raises(ValueError, match="^no person found in target_parsing: "):
        person_mask(np.zeros((2, 2), np.int64), argument_name="target_parsing")
    # The labels are listed in id order (string ids compared as numbers) with the custom-table hint.
    with pytest.raises(ValueError, match=exactly(
        "The labels {'2': 'b', '10': 'a'} match none of the shipped label maps ['atr', 'cihp', 'deepfashion', 'lip']; "
        "pass a custom label map, e.g. `{'labels': {...}, 'groups': {'body': [...], 'clothing': [...], 'face': [...]}, "
        "'regions': {...}}`."
    )):  # fmt: skip
        label_map_from_id2label({"10": "a", "2": "b"})


def test_non_numeric_and_float32_maps_are_refused():
    with pytest.raises(ValueError, match=exactly("`source_parsing` must hold integer label ids, got dtype <U1.")):
        as_parsing_map(np.array([["a", "b"]]), 1, 2)
    with pytest.raises(ValueError, match=exactly("`source_parsing` must hold integer label ids, got non-integer values.")):  # fmt: skip
        as_parsing_map(np.array([[0.5, 1.0]], dtype=np.float32), 1, 2)
    with pytest.raises(ValueError, match=exactly(
        "`source_parsing` has size (H, W) = (4, 4) but the image is (4, 8); the aspect ratios differ, so the map "
        "cannot be resized to the image. Pass a parsing map of the image."
    )):  # fmt: skip
        as_parsing_map(np.zeros((4, 4), np.int64), 4, 8)


def test_parse_images_feeds_the_model_its_own_dtype():
    from truepose.testing import tiny_parser

    model, processor = tiny_parser()
    model.double()
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 12, 3), dtype=np.uint8))
    (parsing,) = parse_images(model, processor, image)
    assert parsing.shape == (20, 12) and parsing.dtype == np.int64 and parsing.max() < 18
