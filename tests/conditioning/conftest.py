import numpy as np
import pytest
import torch

from truepose.conditioning.skeleton import import_controlnet_aux_openpose

H, W = 256, 176

# A standing person in the 256x176 DeepFashion frame, COCO-18 order [x, y].
SKELETON = np.array(
    [
        [88, 30], [88, 60], [60, 60], [50, 100], [45, 140], [116, 60], [126, 100], [131, 140], [70, 130],
        [70, 180], [70, 230], [106, 130], [106, 180], [106, 230], [82, 25], [94, 25], [76, 28], [100, 28],
    ],
    dtype=np.float32,
)  # fmt: skip


@pytest.fixture
def skeleton() -> np.ndarray:
    return SKELETON.copy()


@pytest.fixture(scope="session")
def openpose_dir(tmp_path_factory) -> str:
    """A folder laid out like lllyasviel/Annotators with a randomly initialised OpenPose body model.

    The file is stored like the real one (keys without the first module prefix, see controlnet_aux's
    `util.transfer`), in float16 to halve the 200 MB.
    """
    import_controlnet_aux_openpose()  # the library's quiet import of the noisy controlnet_aux package, first
    from controlnet_aux.open_pose.model import bodypose_model

    folder = tmp_path_factory.mktemp("annotators")
    torch.manual_seed(0)
    state = bodypose_model().state_dict()
    torch.save({".".join(k.split(".")[1:]): v.half() for k, v in state.items()}, folder / "body_pose_model.pth")
    return str(folder)
