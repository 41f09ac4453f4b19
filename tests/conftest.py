import os

# Offline, always: the suite must never reach the Hub (set before huggingface_hub is imported).
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import pytest  # noqa: E402

SIZE = 64

# A stick person in the 64x64 frame, COCO-18 order [x, y, confidence]; the ears are missing.
KEYPOINTS = np.array(
    [
        [32, 10, 1], [32, 18, 1], [24, 19, 1], [20, 29, 1], [18, 38, 1], [40, 19, 1], [44, 29, 1], [46, 38, 1],
        [27, 38, 1], [26, 48, 1], [26, 58, 1], [37, 38, 1], [38, 48, 1], [38, 58, 1], [30, 8, 1], [34, 8, 1],
        [-1, -1, 0], [-1, -1, 0],
    ],
    dtype=np.float32,
)  # fmt: skip


def make_source(seed: int = 0) -> tuple[PIL.Image.Image, np.ndarray]:
    """A 64x64 RGB 'person' and its ATR parsing map (hair 2, face 11, upper clothes 4, pants 6, arms 14/15)."""
    rng = np.random.default_rng(seed)
    parsing = np.zeros((SIZE, SIZE), dtype=np.int64)
    parsing[2:8, 26:38] = 2
    parsing[8:18, 27:37] = 11
    parsing[18:38, 22:42] = 4
    parsing[38:60, 24:40] = 6
    parsing[19:40, 16:22] = 15
    parsing[19:40, 42:48] = 14
    palette = rng.integers(0, 256, size=(18, 3))
    image = palette[parsing] + rng.integers(-20, 20, size=(SIZE, SIZE, 3))
    return PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), parsing


@pytest.fixture
def source():
    return make_source(0)


@pytest.fixture
def keypoints():
    return KEYPOINTS.copy()
