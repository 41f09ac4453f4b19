# Copyright 2025 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""Human-parsing conditioning: label maps, person mask (HPFA), regions and region crops (CAA).

A parsing map is an `(H, W)` array of label ids. A `LabelMap` says what the ids mean:

- `groups` ("body", "clothing", "face"): their union is the **person mask** whose source tokens HPFA weights by
  `1 + delta`; every id outside the groups is background.
- `regions`: the CAA regions, one per meaningful parsing category (left/right parts merged, e.g. "arms",
  "shoes"); background is never a region.

Tables shipped in `LABEL_MAPS` (`"atr"` is the default everywhere):

- `"atr"`: the 18-label ATR set of the clothes-segmentation Segformers (e.g. `mattmdjaga/segformer_b2_clothes`).
- `"lip"`: the 20-label LIP set (Self-Correction-Human-Parsing's LIP model).
- `"cihp"`: the 20-label CIHP set; as LIP, except that id 10 is "Torso-skin" (LIP: "Jumpsuits").
- `"deepfashion"`: the 24-label DeepFashion-MultiModal set (Text2Human, github.com/yumingj/DeepFashion-MultiModal,
  README "Human Parsing Label").

Every mask built from parsing labels (the person mask, the CAA regions, the identity regions of
`truepose.evaluation.regions`, the groups of `truepose.analysis`) comes from one builder, `label_group_masks`.

Empty person: `person_mask` raises `ValueError("no person found in source_parsing ...")` by default, because
HPFA would otherwise silently weight nothing (pass `allow_empty=True` to get the empty mask);
`check_person_present` does the same check for a mask built elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import logging

from .._errors import read_json
from .image import same_aspect_ratio

logger = logging.get_logger(__name__)

GROUP_NAMES: tuple[str, ...] = ("body", "clothing", "face")

DEFAULT_REGION_FILL: tuple[int, int, int] = (255, 255, 255)


@dataclass(frozen=True)
class LabelMap:
    """Meaning of the label ids of a parsing map.

    Args:
        name: short name, e.g. `"atr"`.
        labels: id -> label name (including background).
        groups: `"body"`, `"clothing"`, `"face"` -> ids; their union is the person mask.
        regions: CAA region name -> ids (each id at most once, all inside the groups).
    """

    name: str
    labels: dict[int, str]
    groups: dict[str, tuple[int, ...]]
    regions: dict[str, tuple[int, ...]]

    def __post_init__(self):
        if set(self.groups) != set(GROUP_NAMES):
            raise ValueError(
                f"LabelMap {self.name!r}: `groups` must have exactly the keys {GROUP_NAMES}, got {tuple(self.groups)}."
            )
        known = set(self.labels)
        seen: dict[int, str] = {}
        for kind, table in (("groups", self.groups), ("regions", self.regions)):
            for key, ids in table.items():
                unknown = sorted(set(ids) - known)
                if unknown:
                    raise ValueError(
                        f"LabelMap {self.name!r}: {kind}[{key!r}] uses ids {unknown} that are not in `labels`."
                    )
        person = self.person_ids
        for region, ids in self.regions.items():
            if not ids:
                raise ValueError(f"LabelMap {self.name!r}: region {region!r} has no ids.")
            outside = sorted(set(ids) - set(person))
            if outside:
                raise ValueError(
                    f"LabelMap {self.name!r}: region {region!r} uses ids {outside} outside the body/clothing/face "
                    "groups (background is never a region)."
                )
            for i in ids:
                if i in seen:
                    raise ValueError(f"LabelMap {self.name!r}: id {i} is in both regions {seen[i]!r} and {region!r}.")
                seen[i] = region

    @property
    def person_ids(self) -> tuple[int, ...]:
        """Sorted ids of the person mask (union of the groups)."""
        return tuple(sorted({i for ids in self.groups.values() for i in ids}))

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, accepted back by `get_label_map`."""
        return {
            "name": self.name,
            "labels": {str(k): v for k, v in self.labels.items()},
            "groups": {k: list(v) for k, v in self.groups.items()},
            "regions": {k: list(v) for k, v in self.regions.items()},
        }


def _make(
    name: str, names: Sequence[str], groups: dict[str, Sequence[str]], regions: dict[str, Sequence[str]]
) -> LabelMap:
    index = {label: i for i, label in enumerate(names)}
    return LabelMap(
        name=name,
        labels=dict(enumerate(names)),
        groups={k: tuple(sorted(index[n] for n in v)) for k, v in groups.items()},
        regions={k: tuple(index[n] for n in v) for k, v in regions.items()},
    )


_ATR = _make(
    "atr",
    [
        "Background",
        "Hat",
        "Hair",
        "Sunglasses",
        "Upper-clothes",
        "Skirt",
        "Pants",
        "Dress",
        "Belt",
        "Left-shoe",
        "Right-shoe",
        "Face",
        "Left-leg",
        "Right-leg",
        "Left-arm",
        "Right-arm",
        "Bag",
        "Scarf",
    ],  # fmt: skip
    groups={
        "body": ["Left-leg", "Right-leg", "Left-arm", "Right-arm"],
        "clothing": [
            "Hat",
            "Sunglasses",
            "Upper-clothes",
            "Skirt",
            "Pants",
            "Dress",
            "Belt",
            "Left-shoe",
            "Right-shoe",
            "Bag",
            "Scarf",
        ],  # fmt: skip
        "face": ["Face", "Hair"],
    },
    regions={
        "hat": ["Hat"],
        "hair": ["Hair"],
        "sunglasses": ["Sunglasses"],
        "upper_clothes": ["Upper-clothes"],
        "skirt": ["Skirt"],
        "pants": ["Pants"],
        "dress": ["Dress"],
        "belt": ["Belt"],
        "shoes": ["Left-shoe", "Right-shoe"],
        "face": ["Face"],
        "legs": ["Left-leg", "Right-leg"],
        "arms": ["Left-arm", "Right-arm"],
        "bag": ["Bag"],
        "scarf": ["Scarf"],
    },
)

_LIP_NAMES = [
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants",
    "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe",
    "Right-shoe",
]  # fmt: skip
_LIP_CLOTHING = [
    "Hat", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks", "Pants", "Scarf", "Skirt",
    "Left-shoe", "Right-shoe",
]  # fmt: skip
_LIP_REGIONS = {
    "hat": ["Hat"],
    "hair": ["Hair"],
    "gloves": ["Glove"],
    "sunglasses": ["Sunglasses"],
    "upper_clothes": ["Upper-clothes"],
    "dress": ["Dress"],
    "coat": ["Coat"],
    "socks": ["Socks"],
    "pants": ["Pants"],
    "jumpsuits": ["Jumpsuits"],
    "scarf": ["Scarf"],
    "skirt": ["Skirt"],
    "face": ["Face"],
    "arms": ["Left-arm", "Right-arm"],
    "legs": ["Left-leg", "Right-leg"],
    "shoes": ["Left-shoe", "Right-shoe"],
}
_LIP = _make(
    "lip",
    _LIP_NAMES,
    groups={
        "body": ["Left-arm", "Right-arm", "Left-leg", "Right-leg"],
        "clothing": _LIP_CLOTHING + ["Jumpsuits"],
        "face": ["Face", "Hair"],
    },
    regions=_LIP_REGIONS,
)
_CIHP_NAMES = [n if n != "Jumpsuits" else "Torso-skin" for n in _LIP_NAMES]
_CIHP = _make(
    "cihp",
    _CIHP_NAMES,
    groups={
        "body": ["Torso-skin", "Left-arm", "Right-arm", "Left-leg", "Right-leg"],
        "clothing": _LIP_CLOTHING,
        "face": ["Face", "Hair"],
    },
    regions={
        (k if k != "jumpsuits" else "torso_skin"): (v if v != ["Jumpsuits"] else ["Torso-skin"])
        for k, v in _LIP_REGIONS.items()
    },
)

_DEEPFASHION_NAMES = [
    "background", "top", "outer", "skirt", "dress", "pants", "leggings", "headwear", "eyeglass", "neckwear",
    "belt", "footwear", "bag", "hair", "face", "skin", "ring", "wrist wearing", "socks", "gloves", "necklace",
    "rompers", "earrings", "tie",
]  # fmt: skip
_DEEPFASHION = _make(
    "deepfashion",
    _DEEPFASHION_NAMES,
    groups={
        "body": ["skin"],
        "clothing": [n for n in _DEEPFASHION_NAMES[1:] if n not in ("hair", "face", "skin")],
        "face": ["face", "hair"],
    },
    regions={n.replace(" ", "_"): [n] for n in _DEEPFASHION_NAMES[1:]},
)

LABEL_MAPS: dict[str, LabelMap] = {m.name: m for m in (_ATR, _LIP, _CIHP, _DEEPFASHION)}
DEFAULT_LABEL_MAP = "atr"


def get_label_map(
    label_map: str | LabelMap | Mapping = DEFAULT_LABEL_MAP, argument_name: str = "label_map"
) -> LabelMap:
    """Resolves a label map given by name (`LABEL_MAPS` key), as a `LabelMap`, as a dict, or as the path of a JSON
    file holding the dict (`LabelMap.to_dict()`; any-case `.json` suffix).

    The dict form is `{"labels": {id: name}, "groups": {"body": [...], "clothing": [...], "face": [...]},
    "regions": {name: [...]}}` (optionally `"name"`); ids may be strings (JSON). `argument_name` is used in errors
    (with the file's name for a file).
    """
    if isinstance(label_map, LabelMap):
        return label_map
    if isinstance(label_map, os.PathLike) or isinstance(label_map, str) and label_map.lower().endswith(".json"):
        return _read_label_map_file(label_map, argument_name)
    if isinstance(label_map, str):
        key = label_map.lower()
        if key not in LABEL_MAPS:
            raise ValueError(f"Unknown `{argument_name}` {label_map!r}; known names are {sorted(LABEL_MAPS)}.")
        return LABEL_MAPS[key]
    if isinstance(label_map, Mapping):
        missing = [k for k in ("labels", "groups", "regions") if k not in label_map]
        if missing:
            raise ValueError(
                f"`{argument_name}` as a dict needs the keys 'labels', 'groups' and 'regions'; missing {missing}."
            )
        try:
            return LabelMap(
                name=str(label_map.get("name", "custom")),
                labels={int(k): str(v) for k, v in label_map["labels"].items()},
                groups={str(k): tuple(int(i) for i in v) for k, v in label_map["groups"].items()},
                regions={str(k): tuple(int(i) for i in v) for k, v in label_map["regions"].items()},
            )
        except (TypeError, AttributeError, ValueError) as error:
            raise ValueError(f"`{argument_name}` dict is malformed: {error}") from None
    raise TypeError(f"`{argument_name}` must be a name, a LabelMap or a dict, got {type(label_map).__name__}.")


def _read_label_map_file(path: str | os.PathLike, argument_name: str) -> LabelMap:
    """A label map from a JSON file of its dict form; every problem names the file."""
    path = os.fspath(path)
    try:
        content = read_json(path, f"`{argument_name}` file {path!r}")
    except FileNotFoundError:
        raise FileNotFoundError(f"`{argument_name}` file {path!r} does not exist.") from None
    except IsADirectoryError:
        raise ValueError(f"`{argument_name}` {path!r} is a folder; name a label-map .json file.") from None
    if not isinstance(content, Mapping):
        raise ValueError(
            f"`{argument_name}` file {path!r} must hold a JSON object with 'labels', 'groups' and 'regions', got a "
            f"JSON {type(content).__name__}."
        )
    return get_label_map(content, f"{argument_name} file {path!r}")


def _normalise_name(name: str) -> str:
    return "".join(c for c in str(name).lower() if c.isalnum())


def label_map_from_id2label(id2label: Mapping) -> LabelMap:
    """Finds the shipped label map whose labels match a model config's `id2label`.

    Names are compared case-, space-, dash- and underscore-insensitively ("Upper-clothes" == "upper_clothes").

    Raises:
        ValueError: no shipped table matches; pass a custom label map (`get_label_map(dict)`) instead.
    """
    try:
        given = {int(k): _normalise_name(v) for k, v in id2label.items()}
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"`id2label` must map integer ids to label names, got {id2label!r}.") from None
    for label_map in LABEL_MAPS.values():
        if given == {k: _normalise_name(v) for k, v in label_map.labels.items()}:
            return label_map
    raise ValueError(
        f"The labels {dict(sorted(id2label.items(), key=lambda kv: int(kv[0])))} match none of the shipped label maps "
        f"{sorted(LABEL_MAPS)}; pass a custom label map, e.g. "
        "`{'labels': {...}, 'groups': {'body': [...], 'clothing': [...], 'face': [...]}, 'regions': {...}}`."
    )


def _resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    src_h, src_w = array.shape
    rows = np.minimum(((np.arange(height) + 0.5) * src_h / height).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * src_w / width).astype(np.int64), src_w - 1)
    return array[rows[:, None], cols[None, :]]


def as_parsing_map(
    parsing: Any,
    height: int,
    width: int,
    label_map: str | LabelMap | Mapping = DEFAULT_LABEL_MAP,
    *,
    argument_name: str = "source_parsing",
    stretch: bool = False,
) -> np.ndarray:
    """Validates a parsing map and brings it to the image size.

    Args:
        parsing: label ids as `PIL.Image.Image` (mode "L", "P", "I" or "I;16"), `np.ndarray` or `torch.Tensor` of
            shape `(H, W)` (or `(1, H, W)`, `(H, W, 1)`, `(1, 1, H, W)`), integer-valued.
        height, width: the image size the map must cover.
        label_map: the label map the ids belong to.
        argument_name: name used in error messages.
        stretch: resize a map of another aspect ratio too (datasets that stretch their images to one size).

    Returns:
        `np.ndarray` int64 `(height, width)`. A map of another size with the same aspect ratio (within 1 %) is
        resized with nearest-neighbour sampling (e.g. 256x176 parsing for a 512x352 image); a different aspect
        ratio is a `ValueError` unless `stretch`.
    """
    label_map = get_label_map(label_map)
    if isinstance(parsing, PIL.Image.Image):
        if parsing.mode == "RGB" and _is_gray(np.asarray(parsing)):
            parsing = parsing.getchannel(0)  # label ids stored as a gray RGB picture
        if parsing.mode not in ("L", "P", "I", "I;16", "I;16L", "I;16B"):
            raise ValueError(
                f"`{argument_name}` must be a label-id image (PIL mode 'L', 'P' or 'I'), got mode {parsing.mode!r}; "
                "a colour visualisation of a parsing map cannot be read back into label ids."
            )
        array = np.asarray(parsing)
    elif isinstance(parsing, torch.Tensor):
        array = parsing.detach().cpu().numpy()
    elif isinstance(parsing, np.ndarray):
        array = parsing
    else:
        raise TypeError(
            f"`{argument_name}` must be a PIL image, np.ndarray or torch.Tensor of label ids, got {type(parsing).__name__}."
        )
    original_shape = tuple(array.shape)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"`{argument_name}` must have shape (H, W) of label ids, got shape {original_shape}.")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"`{argument_name}` must hold integer label ids, got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"`{argument_name}` must hold integer label ids, got non-integer values.")
    array = array.astype(np.int64)

    unknown = sorted(set(np.unique(array).tolist()) - set(label_map.labels))
    if unknown:
        raise ValueError(
            f"`{argument_name}` holds label ids {unknown} that the label map {label_map.name!r} does not define "
            f"(its ids: {min(label_map.labels)}..{max(label_map.labels)}); pass the matching `label_map`."
        )

    src_h, src_w = array.shape
    if (src_h, src_w) != (height, width):
        if not stretch and not same_aspect_ratio((src_h, src_w), (height, width)):
            raise ValueError(
                f"`{argument_name}` has size (H, W) = ({src_h}, {src_w}) but the image is ({height}, {width}); the "
                "aspect ratios differ, so the map cannot be resized to the image. Pass a parsing map of the image."
            )
        array = _resize_nearest(array, height, width)
    return array


def _is_gray(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def as_parsing_batch(source_parsing: Any, argument_name: str = "source_parsing") -> list:
    """Splits `source_parsing` into one map per source image (the batching table of docs/inputs.md).

    A list/tuple holds one map per source; an array/tensor `(N, H, W)` with `N > 1` (not `(H, W, 1)`) or
    `(N, 1, H, W)` holds `N` maps; anything else (a PIL image, `(H, W)`, `(1, H, W)`, `(H, W, 1)`, `(1, 1, H, W)`)
    is one map.

    Raises:
        ValueError: an empty list.
    """
    if isinstance(source_parsing, (list, tuple)):
        if len(source_parsing) == 0:
            raise ValueError(f"`{argument_name}` is an empty list; pass one parsing map per source image.")
        return list(source_parsing)
    if isinstance(source_parsing, (np.ndarray, torch.Tensor)):
        shape = tuple(source_parsing.shape)
        if len(shape) == 3 and shape[0] > 1 and shape[-1] > 1 or len(shape) == 4 and shape[0] > 1:
            return list(source_parsing)
    return [source_parsing]


def check_person_present(mask: np.ndarray, argument_name: str = "source_parsing") -> None:
    """Raises `ValueError` when a person mask is empty (HPFA would silently weight nothing)."""
    if not np.asarray(mask).any():
        raise ValueError(
            f"no person found in {argument_name}: none of its pixels has a body, clothing or face label. Check that "
            "the parsing map and its `label_map` match the image."
        )


def label_group_masks(
    parsing: Any, groups: Mapping[str, Sequence[int]], *, drop_empty: bool = False
) -> dict[str, np.ndarray]:
    """Boolean masks of groups of label ids: TruePose's one builder of masks from parsing labels.

    Args:
        parsing: `(H, W)` integer label ids.
        groups: group name -> label ids (an empty group gives an all-False mask).
        drop_empty: leave out the groups none of whose ids is present.

    Returns:
        `{name: (H, W) bool}` in the order of `groups`: `True` where the label is one of the group's ids.
    """
    parsing = np.asarray(parsing)
    if parsing.ndim != 2:
        raise ValueError(f"`parsing` must have shape (H, W), got shape {tuple(parsing.shape)}.")
    masks = {name: np.isin(parsing, ids) for name, ids in groups.items()}
    return {name: mask for name, mask in masks.items() if mask.any()} if drop_empty else masks


def person_mask(
    parsing: np.ndarray,
    label_map: str | LabelMap | Mapping = DEFAULT_LABEL_MAP,
    *,
    allow_empty: bool = False,
    argument_name: str = "source_parsing",
) -> np.ndarray:
    """Person mask of a parsing map: the union of the body, clothing and face labels.

    Args:
        parsing: `(H, W)` integer label ids (see `as_parsing_map`).
        label_map: the label map the ids belong to.
        allow_empty: return an all-False mask instead of raising when no person label is present.
        argument_name: name used in error messages.

    Returns:
        `np.ndarray` bool `(H, W)`.
    """
    label_map = get_label_map(label_map)
    mask = label_group_masks(parsing, {"person": label_map.person_ids})["person"]
    if not allow_empty:
        check_person_present(mask, argument_name)
    return mask


def region_masks(
    parsing: np.ndarray, label_map: str | LabelMap | Mapping = DEFAULT_LABEL_MAP
) -> tuple[list[str], np.ndarray]:
    """Masks of the CAA regions present in a parsing map.

    Args:
        parsing: `(H, W)` integer label ids.
        label_map: the label map the ids belong to.

    Returns:
        `(names, masks)`: the names of the non-empty regions in the label map's region order, and their masks as a
        bool array `(R, H, W)` (`R` may be 0).
    """
    label_map = get_label_map(label_map)
    masks = label_group_masks(parsing, label_map.regions, drop_empty=True)
    stacked = np.stack(list(masks.values())) if masks else np.zeros((0, *np.shape(parsing)), dtype=bool)
    return list(masks), stacked


def region_crops(
    image: PIL.Image.Image | np.ndarray,
    masks: np.ndarray,
    fill: tuple[int, int, int] = DEFAULT_REGION_FILL,
) -> list[PIL.Image.Image]:
    """Cuts out one square picture per region, for the CLIP image encoder.

    For each mask: pixels outside the mask are set to `fill`, the image is cropped to the mask's bounding box and
    padded (centred) with `fill` to a square. The default fill is white, the background of DeepFashion's product
    shots, so a garment looks like a catalogue picture to CLIP. CLIP preprocessing (resize, normalisation) is left
    to the pipeline's `CLIPImageProcessor`.

    Args:
        image: the source image, `PIL.Image.Image` or `np.ndarray` `(H, W, 3)` uint8.
        masks: bool `(R, H, W)` (or one `(H, W)` mask), each non-empty.
        fill: RGB fill colour.

    Returns:
        list of `R` RGB `PIL.Image.Image`, each square.
    """
    if isinstance(image, PIL.Image.Image):
        rgb = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
        rgb = image
    else:
        raise TypeError("`image` must be a PIL image or an (H, W, 3) uint8 np.ndarray.")
    masks = np.asarray(masks).astype(bool)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != rgb.shape[:2]:
        raise ValueError(
            f"`masks` must have shape (R, H, W) with (H, W) = {rgb.shape[:2]} (the image size), got {tuple(masks.shape)}."
        )
    if len(fill) != 3:
        raise ValueError(f"`fill` must be an RGB triple, got {fill!r}.")
    fill_array = np.asarray(fill, dtype=np.uint8)
    crops = []
    for index, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            raise ValueError(f"`masks[{index}]` is empty; region masks must be non-empty.")
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = np.where(mask[y0:y1, x0:x1, None], rgb[y0:y1, x0:x1], fill_array)
        h, w = crop.shape[:2]
        side = max(h, w)
        square = np.empty((side, side, 3), dtype=np.uint8)
        square[:] = fill_array
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = crop
        crops.append(PIL.Image.fromarray(square, mode="RGB"))
    return crops


def parse_images(model: Any, processor: Any, images: Sequence[PIL.Image.Image] | PIL.Image.Image) -> list[np.ndarray]:
    """Runs a Segformer human parser and returns full-size label maps.

    Args:
        model: a `transformers.SegformerForSemanticSegmentation` (or any semantic-segmentation model with
            `logits`); it runs without gradients on its own device and dtype.
        processor: its `SegformerImageProcessor`; `post_process_semantic_segmentation` upsamples the 1/4-size
            logits to each image's size before the arg-max.
        images: RGB `PIL.Image.Image`s (a single image is accepted too).

    Returns:
        list of `np.ndarray` int64 `(H_i, W_i)` label maps, one per image, of the images' own sizes.
    """
    if isinstance(images, PIL.Image.Image):
        images = [images]
    images = list(images)
    if not images or not all(isinstance(im, PIL.Image.Image) for im in images):
        raise TypeError("`images` must be a non-empty list of PIL images.")
    images = [im.convert("RGB") for im in images]
    parameter = next(model.parameters())
    inputs = processor(images=images, return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(device=parameter.device, dtype=parameter.dtype)
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values)
    outputs.logits = outputs.logits.float()
    maps = processor.post_process_semantic_segmentation(outputs, target_sizes=[(im.height, im.width) for im in images])
    return [m.detach().cpu().numpy().astype(np.int64) for m in maps]
