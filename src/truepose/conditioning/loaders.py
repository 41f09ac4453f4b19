"""Human parsers and pose detectors named by Hub id or local folder (``--parser``, ``--detector``), checked before
anything loads: a local path that does not exist is refused at once (`truepose._hub.is_local_path`), a parser whose
labels match none of the shipped label tables is refused with the table it has.

Attach a parser to any loaded pipeline with ``pipe.parser, pipe.parser_processor = load_human_parser(name)`` (both
are optional components: `save_pretrained` saves them with the pipeline); pass a detector to a call as
``pose_detector=load_pose_detector(name)``.
"""

from __future__ import annotations

import os
from typing import Any

from .._errors import describe_error
from .._hub import is_local_path
from .._warnings import transformers_bars_off
from .detector import OPENPOSE_HUB_REPO, PoseDetector
from .parsing import LabelMap, label_map_from_id2label

# A public human parser with the ATR label table (`LABEL_MAPS["atr"]`), known to work with `load_human_parser`.
PARSER_HUB_REPO = "mattmdjaga/segformer_b2_clothes"


def check_folder_exists(name: str | os.PathLike, argument: str, example: str) -> None:
    """Refuses at once a "Hub id or folder" argument that is a local path (see `truepose._hub`) that does not exist
    or is a file, naming ``argument``; ``example`` is a Hub id the message shows."""
    path = os.fspath(name)
    if not is_local_path(path) or os.path.isdir(path):
        return
    if os.path.exists(path):
        raise FileNotFoundError(f"{argument} {path!r} is a file; name the folder that holds the checkpoint.")
    raise FileNotFoundError(
        f"{argument} {path!r}: this folder does not exist (a Hub id has the form org/name, e.g. {example!r})."
    )


def load_human_parser(
    name: str | os.PathLike, device: Any = None, argument: str = "parser"
) -> tuple[Any, Any, LabelMap]:
    """A transformers semantic-segmentation human parser (e.g. a Segformer such as ``mattmdjaga/segformer_b2_clothes``)
    from a folder or Hub id, with its processor and the shipped label table its ``id2label`` matches.

    Returns:
        ``(model, processor, label_map)``: the model in eval mode (on ``device`` if given), its image processor and
        its [`LabelMap`].

    Raises:
        FileNotFoundError: a local folder that does not exist. OSError: a folder without a loadable checkpoint, or a
            Hub id that cannot be reached (the message says how to download it). ValueError: labels that match no
            shipped table.
    """
    path = os.fspath(name)
    check_folder_exists(path, argument, PARSER_HUB_REPO)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise OSError(
            f"{argument} {path!r} has no config.json: it is not a transformers segmentation checkpoint (a human "
            f"parser such as {PARSER_HUB_REPO!r}, downloaded with `hf download {PARSER_HUB_REPO} --local-dir DIR`)."
        )
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    try:
        with transformers_bars_off():
            model = AutoModelForSemanticSegmentation.from_pretrained(path).eval()
            processor = AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as error:
        if os.path.isdir(path):
            raise OSError(
                f"{argument} {path!r} could not be loaded as a segmentation checkpoint ({describe_error(error)})."
            ) from None
        raise OSError(
            f"{argument}: could not load {path!r} from the Hugging Face Hub ({type(error).__name__}). Without network "
            f"access, download it elsewhere (`hf download {path} --local-dir parser`), copy the folder here and pass "
            "its path."
        ) from None
    try:
        label_map = label_map_from_id2label(model.config.id2label)
    except ValueError as error:
        raise ValueError(f"{argument} {path!r}: {error}") from None
    if device is not None:
        model.to(device)
    return model, processor, label_map


def load_pose_detector(
    name: str | os.PathLike, device: Any = None, argument: str = "detector", kind: str = "openpose"
) -> PoseDetector:
    """A [`PoseDetector`] (OpenPose body model, or DWpose) from a folder or Hub id (``lllyasviel/Annotators``), the
    folder checked first."""
    check_folder_exists(name, argument, OPENPOSE_HUB_REPO)
    return PoseDetector.from_pretrained(name, kind=kind, device=device)
