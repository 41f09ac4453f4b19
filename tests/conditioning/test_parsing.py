"""Parsing maps (`truepose.conditioning.parsing`): their input forms, resizing and batches, the label-group, person
and region masks (exact, and the one implementation every caller uses), region crops and the parser."""

import re

import numpy as np
import PIL.Image
import pytest
import torch

from truepose.analysis import group_masks
from truepose.conditioning import (
    LABEL_MAPS,
    LabelMap,
    as_parsing_batch,
    as_parsing_map,
    check_person_present,
    get_label_map,
    label_group_masks,
    label_map_from_id2label,
    parse_images,
    person_mask,
    region_crops,
    region_masks,
)
from truepose.evaluation.regions import identity_region_masks
from truepose.testing import tiny_parser


def hand_made_parsing() -> np.ndarray:
    """A 40x30 ATR map: hair 2, face 11, upper clothes 4, left/right arm 14/15, pants 6."""
    parsing = np.zeros((40, 30), dtype=np.int64)
    parsing[2:6, 12:18] = 2  # hair: 4x6
    parsing[6:10, 12:18] = 11  # face: 4x6
    parsing[10:22, 10:20] = 4  # upper clothes: 12x10
    parsing[10:20, 7:10] = 14  # left arm
    parsing[10:20, 20:23] = 15  # right arm -> "arms" box 10x16
    parsing[22:38, 11:19] = 6  # pants: 16x8
    return parsing


def exactly(message: str) -> str:
    """`pytest.raises(match=...)` pattern for the whole message."""
    return "^" + re.escape(message) + "$"


def test_as_parsing_map_input_forms():
    parsing = hand_made_parsing()
    forms = [
        parsing,
        parsing.astype(np.uint8),
        parsing.astype(np.float32),
        parsing[None],
        parsing[..., None],
        torch.from_numpy(parsing),
        torch.from_numpy(parsing)[None, None],
        PIL.Image.fromarray(parsing.astype(np.uint8), mode="L"),
        PIL.Image.fromarray(parsing.astype(np.int32), mode="I"),
    ]
    palette_image = PIL.Image.fromarray(parsing.astype(np.uint8), mode="L").convert("P")
    palette_image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    forms.append(palette_image)
    for form in forms:
        out = as_parsing_map(form, 40, 30, "atr")
        assert out.dtype == np.int64 and out.shape == (40, 30)
        np.testing.assert_array_equal(out, parsing, err_msg=type(form).__name__)


def test_as_parsing_map_resizes_same_aspect_ratio():
    parsing = hand_made_parsing()
    out = as_parsing_map(parsing, 80, 60, "atr")  # e.g. 256x176 parsing for a 512x352 image
    np.testing.assert_array_equal(out, parsing.repeat(2, axis=0).repeat(2, axis=1))
    np.testing.assert_array_equal(as_parsing_map(out, 40, 30, "atr"), parsing)


def test_as_parsing_map_errors():
    parsing = hand_made_parsing()
    with pytest.raises(ValueError, match=r"`source_parsing` has size \(H, W\) = \(40, 30\).*\(40, 40\)"):
        as_parsing_map(parsing, 40, 40, "atr")
    bad = parsing.copy()
    bad[0, 0], bad[0, 1] = 18, 255
    with pytest.raises(ValueError, match=r"label ids \[18, 255\]"):
        as_parsing_map(bad, 40, 30, "atr")
    assert as_parsing_map(bad.clip(0, 19) * (bad != 255), 40, 30, "lip")[0, 0] == 18  # valid LIP id
    with pytest.raises(ValueError, match="mode 'RGB'"):
        as_parsing_map(PIL.Image.new("RGB", (30, 40), (255, 0, 0)), 40, 30)
    with pytest.raises(ValueError, match=r"shape \(3, 40, 30\)"):
        as_parsing_map(np.zeros((3, 40, 30), np.int64), 40, 30)
    with pytest.raises(ValueError, match="non-integer"):
        as_parsing_map(parsing + 0.5, 40, 30)
    with pytest.raises(TypeError, match="`source_parsing`"):
        as_parsing_map(parsing.tolist(), 40, 30)


def test_person_mask_exact():
    parsing = hand_made_parsing()
    mask = person_mask(parsing, "atr")
    assert mask.dtype == bool and mask.shape == (40, 30)
    np.testing.assert_array_equal(mask, parsing > 0)
    # The same id means different things in different tables.
    lip_map = np.zeros((4, 4), np.int64)
    lip_map[1, 1] = 10  # Jumpsuits in LIP (clothing), Torso-skin in CIHP (body)
    assert person_mask(lip_map, "lip").sum() == 1 and person_mask(lip_map, "cihp").sum() == 1


def test_empty_person_is_an_error():
    background = np.zeros((8, 8), np.int64)
    with pytest.raises(ValueError, match="no person found in source_parsing"):
        person_mask(background)
    assert not person_mask(background, allow_empty=True).any()
    with pytest.raises(ValueError, match="no person found in my_map"):
        check_person_present(np.zeros((2, 2), bool), "my_map")
    check_person_present(np.ones((2, 2), bool))


def test_region_masks_exact():
    parsing = hand_made_parsing()
    names, masks = region_masks(parsing, "atr")
    assert names == ["hair", "upper_clothes", "pants", "face", "arms"]  # the label map's region order
    assert masks.dtype == bool and masks.shape == (5, 40, 30)
    for name, mask in zip(names, masks):
        np.testing.assert_array_equal(mask, np.isin(parsing, LABEL_MAPS["atr"].regions[name]))
    names, masks = region_masks(np.zeros((40, 30), np.int64))
    assert names == [] and masks.shape == (0, 40, 30) and masks.dtype == bool


def test_region_crops_sizes_squareness_and_fill():
    parsing = hand_made_parsing()
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 250, size=(40, 30, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels)
    names, masks = region_masks(parsing)
    crops = region_crops(image, masks)
    sides = {"hair": 6, "upper_clothes": 12, "pants": 16, "face": 6, "arms": 16}
    for name, crop in zip(names, crops):
        assert crop.mode == "RGB" and crop.size == (sides[name], sides[name])
    # pants: box 16 rows x 8 cols -> centred in 16x16, white columns 0-3 and 12-15
    pants = np.asarray(crops[names.index("pants")])
    np.testing.assert_array_equal(pants[:, 4:12], pixels[22:38, 11:19])
    assert (pants[:, :4] == 255).all() and (pants[:, 12:] == 255).all()
    # arms: box rows 10-19, cols 7-22 (10x16); inside the box, the upper clothes (not an arm) are filled
    arms = np.asarray(crops[names.index("arms")])
    np.testing.assert_array_equal(arms[3:13, 0:3], pixels[10:20, 7:10])
    assert (arms[3:13, 3:13] == 255).all() and (arms[:3] == 255).all() and (arms[13:] == 255).all()
    # another fill colour, and a single (H, W) mask
    (black,) = region_crops(np.asarray(image), masks[names.index("pants")], fill=(0, 0, 0))
    assert (np.asarray(black)[:, :4] == 0).all()


def test_region_crops_errors():
    image = PIL.Image.new("RGB", (30, 40))
    with pytest.raises(ValueError, match=r"`masks` must have shape \(R, H, W\)"):
        region_crops(image, np.ones((1, 30, 40), bool))
    with pytest.raises(ValueError, match=r"`masks\[0\]` is empty"):
        region_crops(image, np.zeros((1, 40, 30), bool))
    with pytest.raises(TypeError, match="`image`"):
        region_crops("image.png", np.ones((1, 40, 30), bool))


def test_parse_images_with_a_tiny_segformer():
    model, processor = tiny_parser()
    assert label_map_from_id2label(model.config.id2label) is LABEL_MAPS["atr"]
    images = [PIL.Image.new("RGB", (30, 40), (200, 10, 10)), PIL.Image.new("L", (50, 20), 90)]
    maps = parse_images(model, processor, images)
    assert [m.shape for m in maps] == [(40, 30), (20, 50)]
    for m in maps:
        assert m.dtype == np.int64 and m.min() >= 0 and m.max() < 18
        as_parsing_map(m, *m.shape, "atr")
    (single,) = parse_images(model, processor, images[0])
    np.testing.assert_array_equal(single, maps[0])


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
