"""Label maps (`truepose.conditioning.parsing.LabelMap`): the shipped ATR/LIP tables against tables written out by hand
from the datasets' label lists (so a label moved to the wrong HPFA group or CAA region fails), their forms, files
and validation messages."""

import numpy as np
import pytest

from truepose.conditioning import (
    GROUP_NAMES,
    LABEL_MAPS,
    LabelMap,
    get_label_map,
    label_map_from_id2label,
    person_mask,
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


ATR_NAMES = [
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt", "Left-shoe",
    "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
]  # fmt: skip


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
