# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""The progress bar of every evaluation loop (scoring, Inception features, generating test pairs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from diffusers.utils import logging


def progress_bar(iterable: Iterable[Any], desc: str, leave: bool = False, enabled: bool = True) -> Iterator[Any]:
    """`tqdm` over `iterable` named `desc`, removed when done unless `leave`; shown only when `enabled` (e.g. on the
    local main process) and while diffusers' progress bars are on (`diffusers.utils.logging.disable_progress_bar`)."""
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=desc, leave=leave, disable=not enabled or not logging.is_progress_bar_enabled()))
