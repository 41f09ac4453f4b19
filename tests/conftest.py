import os

# Offline, always: the suite must never reach the Hub (set before huggingface_hub is imported).
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

from truepose.testing import TINY_KEYPOINTS, tiny_person  # noqa: E402


@pytest.fixture
def source():
    return tiny_person(0)


@pytest.fixture
def keypoints():
    return TINY_KEYPOINTS.copy()
