"""How TruePose names a library's exception inside the one-line error it raises in its place."""

import json
import os
from typing import Any


def describe_error(error: BaseException) -> str:
    """``"TypeName: first line of the message"`` (without a final full stop), or ``"TypeName"`` for no message."""
    message = str(error).strip()
    first_line = message.splitlines()[0].rstrip(".") if message else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def read_json(path: str | os.PathLike, description: str) -> Any:
    """The JSON content of the UTF-8 file ``path``; a ``ValueError`` ``"{description} is not valid JSON (...)."``
    where it is not (``OSError``s, a missing file included, pass through for the caller to name)."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{description} is not valid JSON ({error}).") from None
