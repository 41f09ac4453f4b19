"""Helpers several evaluation test modules share (imported by name: pytest puts this folder on the path): an
independent Fréchet distance, pytorch-fid's own model, and image folders written from arrays."""

import shutil

import numpy as np
from PIL import Image

from truepose.evaluation import metrics


def eig_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """Independent formula: Tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), all symmetric, float64."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(
        ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    )


def pytorch_fid_reference_model(weights: str, dims: int, tmp_path, monkeypatch):
    """pytorch-fid's `InceptionV3` built the package's own way: its weight file in the torch hub cache."""
    from pytorch_fid.inception import InceptionV3

    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weights, hub / metrics.PYTORCH_FID_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()


def save_images(folder, images) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"img_{i:03d}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths
