import numpy as np
import PIL.Image
import pytest
import torch

from truepose.conditioning import (
    GROUP_NAMES,
    LABEL_MAPS,
    LabelMap,
    as_parsing_map,
    check_person_present,
    get_label_map,
    label_map_from_id2label,
    parse_images,
    person_mask,
    region_crops,
    region_masks,
)
from truepose.testing import tiny_parser

ATR_NAMES = [
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt", "Left-shoe",
    "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
]  # fmt: skip


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


# --- label maps -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LABEL_MAPS))
def test_shipped_label_maps_are_consistent(name):
    label_map = LABEL_MAPS[name]
    assert label_map.name == name
    assert tuple(label_map.groups) == GROUP_NAMES
    ids = set(label_map.labels)
    assert ids == set(range(len(ids)))
    person = set(label_map.person_ids)
    assert person <= ids and 0 not in person  # background (0) is never part of the person
    assert all(set(g) <= ids for g in label_map.groups.values())
    region_ids = [i for r in label_map.regions.values() for i in r]
    assert len(region_ids) == len(set(region_ids)) and set(region_ids) <= person
    assert set(region_ids) == person  # every person label belongs to one region


def test_shipped_tables():
    assert [LABEL_MAPS["atr"].labels[i] for i in range(18)] == ATR_NAMES
    assert len(LABEL_MAPS["lip"].labels) == 20 and LABEL_MAPS["lip"].labels[10] == "Jumpsuits"
    assert LABEL_MAPS["cihp"].labels[10] == "Torso-skin"
    assert {k: v for k, v in LABEL_MAPS["cihp"].labels.items() if k != 10} == {
        k: v for k, v in LABEL_MAPS["lip"].labels.items() if k != 10
    }
    assert len(LABEL_MAPS["deepfashion"].labels) == 24 and LABEL_MAPS["deepfashion"].labels[15] == "skin"
    assert LABEL_MAPS["atr"].regions["shoes"] == (9, 10) and LABEL_MAPS["atr"].regions["arms"] == (14, 15)


def test_get_label_map_forms():
    atr = LABEL_MAPS["atr"]
    assert get_label_map() is atr and get_label_map("ATR") is atr and get_label_map(atr) is atr
    custom = get_label_map(atr.to_dict())  # JSON form: string ids
    assert custom == atr
    with pytest.raises(ValueError, match=r"known names are \['atr', 'cihp', 'deepfashion', 'lip'\]"):
        get_label_map("pascal")
    with pytest.raises(ValueError, match="'regions'"):
        get_label_map({"labels": {0: "bg"}, "groups": {}})
    with pytest.raises(TypeError, match="`label_map`"):
        get_label_map(3)


def test_label_map_validation():
    with pytest.raises(ValueError, match="exactly the keys"):
        LabelMap("x", {0: "bg", 1: "a"}, {"body": (1,)}, {})
    with pytest.raises(ValueError, match=r"ids \[7\]"):
        LabelMap("x", {0: "bg", 1: "a"}, {"body": (1,), "clothing": (7,), "face": ()}, {})
    with pytest.raises(ValueError, match="background is never a region"):
        LabelMap("x", {0: "bg", 1: "a"}, {"body": (1,), "clothing": (), "face": ()}, {"bg": (0,)})


def test_label_map_from_id2label():
    assert label_map_from_id2label(dict(enumerate(ATR_NAMES))) is LABEL_MAPS["atr"]
    # Segformer configs saved to JSON have string keys; spelling varies.
    relaxed = {str(i): n.lower().replace("-", "_") for i, n in enumerate(ATR_NAMES)}
    relaxed["4"] = "Upper Clothes"
    assert label_map_from_id2label(relaxed) is LABEL_MAPS["atr"]
    assert label_map_from_id2label(LABEL_MAPS["lip"].labels) is LABEL_MAPS["lip"]
    assert label_map_from_id2label(LABEL_MAPS["cihp"].labels) is LABEL_MAPS["cihp"]
    with pytest.raises(ValueError, match="match none of the shipped label maps"):
        label_map_from_id2label({0: "background", 1: "person"})


# --- parsing maps ---------------------------------------------------------------------------------------------


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


# --- masks, regions, crops ------------------------------------------------------------------------------------


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


# --- parser ---------------------------------------------------------------------------------------------------


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
