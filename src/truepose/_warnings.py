"""Warnings attributed to the user's line of code, not to a line inside TruePose or torch."""

import os
import sys
import warnings

import torch

# A warning raised under `pipe(...)` passes through TruePose's frames and torch's `no_grad` wrapper.
_LIBRARY_FOLDERS = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(torch.__file__) + os.sep)


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn(message, category)` with the `stacklevel` of the first frame outside TruePose and torch."""
    frame, stacklevel = sys._getframe(1), 2
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_LIBRARY_FOLDERS):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)
