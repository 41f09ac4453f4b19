"""SSIM, PSNR and LPIPS (`truepose.evaluation.scores`) against reference implementations (skimage, torchmetrics, the
lpips package), and the sizes and shapes they refuse."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from truepose.evaluation import metrics


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_ssim_and_psnr_equal_skimage(image_pairs):
    for real, fake in image_pairs:
        r, f = real / 255.0, fake / 255.0
        assert metrics.ssim(real, fake) == pytest.approx(
            structural_similarity(r, f, win_size=51, data_range=1, channel_axis=2), abs=1e-12
        )
        for sigma in (1.5, 1.2):
            expected = structural_similarity(
                real.astype(np.float64),
                fake.astype(np.float64),
                gaussian_weights=True,
                sigma=sigma,
                use_sample_covariance=False,
                data_range=255,
                channel_axis=2,
            )
            assert metrics.ssim_256(real, fake, sigma=sigma) == pytest.approx(expected, abs=1e-12)
        assert metrics.psnr(real, fake) == pytest.approx(peak_signal_noise_ratio(r, f, data_range=1), abs=1e-12)
    real = image_pairs[0][0]
    assert metrics.ssim(real, real) == pytest.approx(1.0)
    assert metrics.psnr(real, real) == float("inf")


def test_psnr_and_ssim_256_equal_torchmetrics(image_pairs):
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    for real, fake in image_pairs:
        r = torch.from_numpy(real).permute(2, 0, 1)[None].double()
        f = torch.from_numpy(fake).permute(2, 0, 1)[None].double()
        assert metrics.psnr(real, fake) == pytest.approx(tm_psnr(f / 255, r / 255, data_range=1.0).item(), abs=1e-5)
        # torchmetrics averages the SSIM map over the whole (reflect-padded) image, skimage drops a border of the
        # kernel's radius (5 for the 11-tap sigma=1.5 gaussian); on the same pixels they agree exactly.
        _, full = tm_ssim(
            f, r, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=255.0, return_full_image=True
        )
        assert metrics.ssim_256(real, fake, sigma=1.5) == pytest.approx(full[..., 5:-5, 5:-5].mean().item(), abs=1e-10)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="51"):
        metrics.ssim(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(np.zeros((60, 60, 3), np.uint8), np.zeros((60, 61, 3), np.uint8))


def test_ssim_accepts_51x51_and_names_the_size_it_refuses():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (51, 51, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    small = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    message = "SSIM uses win_size=51: images must be at least 51x51, got (50, 60)."
    with pytest.raises(ValueError, match=_exactly(message)):
        metrics.ssim(small, small)


def test_lpips_equals_lpips_package(alexnet_weights, image_pairs, monkeypatch):
    import lpips
    import torchvision

    model = metrics.load_lpips(alexnet_weights)

    # Independent path: lpips builds its backbone through `torchvision.models.alexnet(pretrained=True)`; make that
    # return our local weights and construct `lpips.LPIPS(net="alex")` the ordinary way.
    torchvision_alexnet = torchvision.models.alexnet

    def local_alexnet(pretrained: bool = False, **kwargs):
        net = torchvision_alexnet(weights=None)
        net.load_state_dict(torch.load(alexnet_weights, weights_only=True))
        return net

    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", local_alexnet)
    reference = lpips.LPIPS(net="alex", verbose=False)

    real = np.stack([r for r, _ in image_pairs])
    fake = np.stack([f for _, f in image_pairs])
    ours = metrics.lpips_distance(model, real, fake)
    to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    with torch.no_grad():
        expected = reference(to_tensor(real), to_tensor(fake), normalize=True).flatten().double().numpy()
    assert ours.shape == (len(image_pairs),)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    assert np.all(ours > 0)
    np.testing.assert_array_equal(metrics.lpips_distance(model, real, real), 0.0)


def test_lpips_distance_shape_message(alexnet_weights):
    model = metrics.load_lpips(alexnet_weights)
    real, fake = np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 64, 48, 3), np.uint8)
    with pytest.raises(
        ValueError,
        match=_exactly("`real` and `fake` must have the same shape, got (1, 3, 64, 64) and (1, 3, 64, 48)."),
    ):
        metrics.lpips_distance(model, real, fake)
