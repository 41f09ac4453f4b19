import pytest

from truepose.data import make_deepfashion_fixture


@pytest.fixture(scope="session")
def deepfashion_root(tmp_path_factory):
    """A tiny DeepFashion set in the PIDM/CFLD format (4 images per split, 256x176 JPEGs, ATR parsing maps)."""
    return make_deepfashion_fixture(tmp_path_factory.mktemp("fashion"), num_images=4, image_size=(256, 176))
