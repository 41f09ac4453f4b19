"""Fixtures of the evaluation tests: random (locally made) backbone weights and small image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from truepose.evaluation import metrics


@pytest.fixture
def no_weight_files(tmp_path, monkeypatch) -> Path:
    """No weight file is found but at the paths a test passes: the weight variables unset, the torch hub cache an
    empty `tmp_path/torch_home`. Returns that cache's `hub/checkpoints` folder (not created)."""
    for variable in (metrics.ALEXNET_ENV, metrics.INCEPTION_ENV, metrics.PYTORCH_FID_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


class PooledColour(nn.Module):
    """A cheap stand-in for Inception on `(N, H, W, 3)` uint8 batches: 4-d features (channel means + grey std), so the
    real scipy sqrtm path runs fast (a 2048x2048 sqrtm takes about a minute on a 2-core CPU)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).double() / 255
        return torch.cat([x.mean((2, 3)), x.mean(1).flatten(1).std(1, keepdim=True)], dim=1)


@pytest.fixture
def pooled_colour() -> nn.Module:
    """A `PooledColour` FID backbone stand-in (Inception itself is checked in test_weights.py)."""
    return PooledColour()


@pytest.fixture(scope="session")
def alexnet_weights(tmp_path_factory) -> str:
    """A random-init torchvision AlexNet state dict saved under its real file name (stands in for the ImageNet one)."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("alexnet") / metrics.ALEXNET_FILENAME
    torch.save(alexnet(weights=None).state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> str:
    """A random torchvision Inception-v3 state dict (He-initialised so features neither vanish nor explode)."""
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / metrics.INCEPTION_FILENAME
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def pytorch_fid_weights(tmp_path_factory) -> str:
    """Random weights of pytorch-fid's TF-Inception (`fid_inception_v3`) saved under the real file name.

    `fid_inception_v3` is torchvision's Inception-v3 with 1008 classes, no aux head and patched blocks
    (`FIDInceptionA/C/E_1/E_2`) whose parameters are those of the blocks they patch, so its state dict is that of
    `inception_v3(num_classes=1008, aux_logits=False)`; pytorch-fid's strict `load_state_dict` checks it.
    """
    from torchvision.models import inception_v3

    torch.manual_seed(1)
    model = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("pytorch_fid") / metrics.PYTORCH_FID_FILENAME
    torch.save(model.state_dict(), path)
    return str(path)


def structured_image(height: int, width: int, kind: int, rng: np.random.Generator) -> np.ndarray:
    """Deterministic (H, W, 3) uint8 test images: gradients, checkerboards, blobs, plain noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == 0:
        image = np.stack([x / width, y / height, (x + y) / (height + width)], axis=-1)
    elif kind == 1:
        image = (((x // 8) + (y // 8)) % 2)[..., None].repeat(3, axis=-1) * np.array([0.9, 0.5, 0.2])
    elif kind == 2:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (min(height, width) / 4) ** 2))
        image = blob[..., None] * rng.uniform(0.3, 1.0, size=3)
    else:
        image = rng.uniform(size=(height, width, 3))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def perturb(image: np.ndarray, rng: np.random.Generator, noise: float = 20.0) -> np.ndarray:
    return np.clip(image.astype(np.float64) + rng.normal(0, noise, image.shape), 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def image_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(real, fake) uint8 pairs at 128x96: structured images and noisy versions, plus purely random pairs."""
    rng = np.random.default_rng(0)
    pairs = []
    for kind in range(4):
        real = structured_image(128, 96, kind, rng)
        pairs.append((real, perturb(real, rng)))
    pairs.append((structured_image(128, 96, 3, rng), structured_image(128, 96, 3, rng)))
    return pairs


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory, image_pairs) -> tuple[str, str]:
    """`real/` (JPEG-free PNGs) and `fake/` folders of the pairs, fake saved at another size (resized when scored)."""
    root = tmp_path_factory.mktemp("folders")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    for i, (real, fake) in enumerate(image_pairs):
        Image.fromarray(real).save(root / "real" / f"pair_{i:02d}.png")
        Image.fromarray(fake).resize((120, 160), Image.BICUBIC).save(root / "fake" / f"pair_{i:02d}.png")
    return str(root / "real"), str(root / "fake")
