"""Arguments that take "a Hub id or a local folder": which of the two a string names, and what to say when a Hub id
cannot be loaded.

One rule for every such argument (pipeline checkpoints, ``--parser``, ``--detector``, ``truepose preprocess``): a
Hub id has the form ``org/name``; a string that exists on disk, or cannot be such an id (an absolute path, ``./x``,
``../x``, ``~/x``, a bare ``name`` without ``org/``, ``a/b/c``), or whose first part is an existing folder
(``runs/final`` while ``runs/`` exists) is a local path, and a local path that does not exist is refused at once
instead of being retried on the Hub.
"""

import os
import re

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")

# Ids TruePose's docs use as stand-ins: nothing is published under them.
_PLACEHOLDER_ID = re.compile(r"org/truepose[\w.-]*")


def is_local_path(name: str | os.PathLike) -> bool:
    """Whether ``name`` (a "Hub id or folder" argument) names a local path (see the module docstring)."""
    name = os.fspath(name)
    if os.path.exists(name) or not _HUB_ID.fullmatch(name) or name.startswith((".", "~")):
        return True
    return os.path.isdir(name.split("/")[0])


def is_placeholder_id(name: str) -> bool:
    """Whether ``name`` is one of the stand-in ids of TruePose's docs (``org/truepose``, ``org/truepose-...``)."""
    return bool(_PLACEHOLDER_ID.fullmatch(name))


def placeholder_note() -> str:
    """What to say about a placeholder id: nothing is published under it, and what to use instead."""
    return (
        "it is a placeholder id from TruePose's docs: no checkpoint is published under it (no trained "
        "real-person TruePose checkpoint exists yet). Use the model shipped with the package "
        "(`truepose.demo.load_shipped_model()`, or leave out --model), train one (docs/training.md), or pass the "
        "folder or Hub id of a checkpoint you have."
    )
