import os

# Offline, always: the suite must never reach the Hub (set before huggingface_hub is imported).
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from truepose.data import make_deepfashion_fixture  # noqa: E402
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny pipeline saved to a folder, for the commands and the demo to load and for training to start from."""
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_pipeline(seed=0).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def deepfashion_root(tmp_path_factory):
    """A tiny DeepFashion set in the PIDM/CFLD format (4 images per split, 256x176 JPEGs, ATR parsing maps)."""
    return make_deepfashion_fixture(tmp_path_factory.mktemp("fashion"), num_images=4, image_size=(256, 176))


@pytest.fixture
def source():
    return tiny_person(0)


@pytest.fixture
def keypoints():
    return TINY_KEYPOINTS.copy()


class DistributedWrapper(torch.nn.Module):
    """What accelerate's `prepare` hands back under DDP: the model in `.module`, forward passed through."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


@pytest.fixture
def wrap_like_ddp():
    """Wraps a model the way DDP does (`.module`), without a process group."""
    return DistributedWrapper
