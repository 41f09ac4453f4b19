"""What TruePose prints of its own: warnings attributed to the user's line of code (not to a line inside TruePose or
torch), and no transformers progress bars inside TruePose's loads."""

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

import torch

# A warning raised under `pipe(...)` passes through TruePose's frames and torch's `no_grad` wrapper.
_LIBRARY_FOLDERS = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(torch.__file__) + os.sep)


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn(message, category)` with the `stacklevel` of the first frame outside TruePose and torch."""
    frame, stacklevel = sys._getframe(1), 2
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_FOLDERS):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)


@contextlib.contextmanager
def transformers_bars_off() -> Iterator[None]:
    """transformers' weight loading/writing bars off for the block (they would nest inside the pipeline's own bar, or
    print for a command's load), restored after."""
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()
