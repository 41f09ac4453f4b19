"""Fixtures of the pipeline tests (`source` and `keypoints` are in tests/conftest.py)."""

import contextlib
import logging
from collections.abc import Iterator

import pytest

from truepose.testing import tiny_pipeline


@pytest.fixture
def pipe():
    """A tiny pipeline whose CAA and pose encoder are random (neither is the identity); a fresh one per test, which
    may change it."""
    return tiny_pipeline(seed=0, randomize_new_layers=True)


@contextlib.contextmanager
def _recorded_logs(name: str) -> Iterator[list[logging.LogRecord]]:
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger(name).addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture
def recorded_logs():
    """`with recorded_logs(name) as records:` gives the records of warnings and above that logger `name` (and those
    below it) emit inside the block."""
    return _recorded_logs
