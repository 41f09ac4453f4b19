"""FID (`truepose.evaluation.fid`): running statistics and the Fréchet distance against independent computations, the
image-count rule, the pytorch-fid backbone's FID against pytorch-fid, and the cached real-set statistics."""

from __future__ import annotations

import hashlib
import json
import logging
import re

import numpy as np
import pytest
import torch
from evaluation_helpers import eig_frechet, pytorch_fid_reference_model, save_images
from PIL import Image

from truepose.evaluation import fid, metrics


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


@pytest.fixture
def real_folder(tmp_path):
    """Three 8x8 images and a stand-in Inception weight file."""

    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "weights.pth").write_bytes(b"1234")
    return folder


def test_running_statistics_equal_numpy():
    rng = np.random.default_rng(0)
    features = rng.normal(loc=5.0, size=(97, 16))
    stats = metrics.RunningStatistics()
    for chunk in np.array_split(features, 5):
        stats.update(torch.from_numpy(chunk).float())
    mu, sigma = stats.compute()
    features32 = features.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(mu, features32.mean(0), atol=1e-10)
    np.testing.assert_allclose(sigma, np.cov(features32, rowvar=False), atol=1e-10)


def test_running_statistics_need_two_images_and_2d_features():
    stats = metrics.RunningStatistics()
    stats.update(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=_exactly("FID needs at least 2 images per set, got 1.")):
        stats.compute()
    stats.update(np.array([[3.0, 6.0]]))
    mu, sigma = stats.compute()  # two images are enough
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, [[2.0, 4.0], [4.0, 8.0]])
    with pytest.raises(ValueError, match=_exactly("Expected features of shape (N, D), got (3,).")):
        stats.update(np.zeros(3))


def test_frechet_distance_equals_independent_computations():
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    b = rng.normal(loc=0.3, size=(300, 32)) @ rng.normal(size=(32, 32))
    mu1, sigma1 = metrics.feature_statistics(a)
    mu2, sigma2 = metrics.feature_statistics(b)
    ours = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    expected = _compute_fid(*(torch.from_numpy(x) for x in (mu1, sigma1, mu2, sigma2))).item()
    assert ours == pytest.approx(expected, rel=1e-8)
    assert ours == pytest.approx(eig_frechet(mu1, sigma1, mu2, sigma2), rel=1e-8)
    assert metrics.frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="do not match"):
        metrics.frechet_distance(mu1, sigma1, mu2[:3], sigma2)


def test_frechet_distance_computes_in_float64_and_checks_shapes():
    rng = np.random.default_rng(3)
    mu1, sigma1 = metrics.feature_statistics(rng.normal(size=(200, 64)))
    mu2, sigma2 = metrics.feature_statistics(rng.normal(loc=0.1, size=(150, 64)))
    as32 = [x.astype(np.float32) for x in (mu1, sigma1, mu2, sigma2)]
    expected = metrics.frechet_distance(*(x.astype(np.float64) for x in as32))
    assert metrics.frechet_distance(*as32) == pytest.approx(expected, rel=1e-13, abs=0)
    for args in [(mu1[:3], sigma1[:3, :3], mu2[:3], sigma2), (mu1[:3], sigma1, mu2[:3], sigma2)]:
        with pytest.raises(ValueError, match="^Statistics do not match: mu1"):
            metrics.frechet_distance(*args)


def test_frechet_distance_singular_product_adds_eps_to_the_diagonals(caplog):
    """sigma1 @ sigma2 = [[0, 1], [0, 0]] has no square root: pytorch-fid's fallback, written out."""
    from scipy import linalg

    mu = np.zeros(2)
    sigma1, sigma2 = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    with caplog.at_level(logging.WARNING):
        distance = metrics.frechet_distance(mu, sigma1, mu, sigma2)  # default eps 1e-6
    offset = np.eye(2) * 1e-6
    root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset)).real
    assert distance == pytest.approx(np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root), rel=1e-9)
    assert caplog.records[0].getMessage() == (
        "FID: sqrtm of the covariance product is singular; adding 1e-06 to the diagonals."
    )


def test_frechet_distance_silences_only_scipys_singular_matrix_warning(monkeypatch):
    """The `LinAlgWarning` of a singular product is handled (eps on the diagonals); any other warning of `sqrtm`
    still reaches the caller."""
    import warnings

    from scipy import linalg

    sqrtm = linalg.sqrtm

    def warning_sqrtm(matrix):
        warnings.warn("another sqrtm problem", RuntimeWarning, stacklevel=2)
        return sqrtm(matrix)

    monkeypatch.setattr(linalg, "sqrtm", warning_sqrtm)
    mu, sigma = np.zeros(2), np.eye(2)
    with pytest.warns(RuntimeWarning, match="another sqrtm problem"):
        assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("negative, warns", [(-0.25, True), (-1e-6, False), (-1e-8, False)])
def test_frechet_distance_warns_above_1e_3_imaginary_part(caplog, negative, warns):
    """sqrtm(diag(negative, 1)) = diag(i sqrt(-negative), 1): imaginary parts 0.5, exactly 1e-3, 1e-4."""
    mu = np.zeros(2)
    with caplog.at_level(logging.WARNING):
        distance = metrics.frechet_distance(mu, np.eye(2), mu, np.diag([negative, 1.0]))
    assert distance == pytest.approx(1 + negative, abs=1e-12)  # 2 + (1 + negative) - 2 tr(diag(0, 1))
    messages = [r.getMessage() for r in caplog.records]
    if warns:
        assert messages == [
            "FID: sqrtm has an imaginary component of 0.5 (too few images for the feature dimension?); "
            "using the real part."
        ]
    else:
        assert messages == []


def test_fid_image_count_boundaries_and_messages(caplog):
    minimum = metrics.min_fid_images(8)
    assert minimum == 9
    assert metrics.check_fid_image_counts(minimum, minimum, dims=8) is True
    message = (
        "FID with 8-d features needs at least 9 images per set (the covariance of N images has rank at most N - 1, "
        "so it is singular below 9 and the distance is meaningless); got {} real and {} generated images."
    )
    for real, fake in [(minimum - 1, minimum), (minimum, minimum - 1)]:
        with pytest.raises(ValueError) as error:
            metrics.check_fid_image_counts(real, fake, dims=8)  # not forced by default
        assert str(error.value) == message.format(real, fake) + (
            " Skip FID (`compute_fid=False`, --no-fid), use more images, or force it (`force_fid=True`, --force-fid) "
            "for a number that is not comparable with anything."
        )
    with caplog.at_level(logging.WARNING):
        assert metrics.check_fid_image_counts(3, 4, dims=8, force=True) is False
    assert [r.getMessage() for r in caplog.records] == [
        message.format(3, 4) + " Computing it anyway (forced); the value is not comparable with anything."
    ]


def test_fid_with_pytorch_fid_backbone_equals_pytorch_fid(pytorch_fid_weights, tmp_path, monkeypatch):
    """The whole chain (folders -> features -> statistics -> distance) against pytorch-fid's own functions.

    Kept cheap: pytorch-fid's 64-d features (its first block) on 10 pairs, so the FID has to be forced (a meaningful
    one needs 65 images per set); both sides then take the same eps-regularised sqrtm path and agree to ~1e-9. The
    2048-d features are compared above; a 2048x2048 sqrtm alone takes ~30 s on this CPU.
    """
    from pytorch_fid.fid_score import calculate_activation_statistics, calculate_frechet_distance

    rng = np.random.default_rng(3)
    gradient = np.linspace(0, 255, 64)[None, :, None]
    real = [np.clip(gradient * rng.uniform(0.2, 1, 3) + rng.normal(0, 30, (64, 64, 3)), 0, 255) for _ in range(10)]
    fake = [np.clip(image[::-1] + rng.normal(0, 40, image.shape), 0, 255) for image in real]
    real, fake = ([image.round().astype(np.uint8) for image in images] for images in (real, fake))
    real_files = save_images(tmp_path / "real", real)
    fake_files = save_images(tmp_path / "fake", fake)

    reference = pytorch_fid_reference_model(pytorch_fid_weights, 64, tmp_path, monkeypatch)
    statistics = [
        calculate_activation_statistics(files, reference, batch_size=5, dims=64, device="cpu", num_workers=0)
        for files in (real_files, fake_files)
    ]
    expected = calculate_frechet_distance(*statistics[0], *statistics[1])

    results = metrics.compute_metrics(
        tmp_path / "real",
        tmp_path / "fake",
        size=(64, 64),
        device="cpu",
        batch_size=5,
        compute_lpips=False,
        fid_backbone="pytorch-fid",
        fid_dims=64,
        force_fid=True,
        inception_weights_path=pytorch_fid_weights,
    )
    assert results["fid"] == pytest.approx(expected, rel=1e-6) and results["fid"] > 0
    assert results["fid_backbone"] == "pytorch-fid" and results["fid_dims"] == 64
    assert results["fid_reliable"] is False and results["lpips"] is None
    # Our Fréchet distance is pytorch-fid's on the same statistics.
    assert metrics.frechet_distance(*statistics[0], *statistics[1]) == pytest.approx(expected, rel=1e-8)
    markdown = metrics.format_markdown(results)
    assert f"{results['fid']:.3f} (pytorch-fid, 64-d)" in markdown and "FIDs of different backbones" in markdown


def test_the_fid_cache_is_under_home_unless_the_environment_names_a_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert metrics.default_cache_dir() == tmp_path / ".cache" / "truepose" / "fid_stats"
    monkeypatch.setenv(metrics.CACHE_ENV, "~/elsewhere")
    assert metrics.default_cache_dir() == tmp_path / "elsewhere" / "fid_stats"


def test_the_real_statistics_key_names_everything_the_statistics_depend_on(real_folder):
    weights = real_folder.parent / "weights.pth"
    key = fid._real_statistics_key(real_folder, (8, 6), ["0.png", "1.png"], weights, "torchvision", 2048)
    assert key == {
        "folder": str(real_folder.resolve()),
        "size": [8, 6],
        "num_images": 2,
        "names_sha1": hashlib.sha1(b"0.png\n1.png").hexdigest(),
        "fid_backbone": "torchvision",
        "fid_dims": 2048,
        "inception_weights": ["weights.pth", 4, int(weights.stat().st_mtime)],
    }


def test_real_statistics_loads_the_backbone_computes_once_and_caches_by_key(real_folder, monkeypatch):
    weights = real_folder.parent / "weights.pth"
    calls, logged = [], []
    model = object()
    mu, sigma = np.arange(3.0), np.eye(3)

    def load_fid_backbone(backbone, weights_path, dims, device):
        calls.append(("load", backbone, weights_path, dims, device))
        return model

    def folder_statistics(folder, used_model, size, names, batch_size, num_workers):
        calls.append(("statistics", folder, used_model is model, size, names, batch_size, num_workers))
        return mu, sigma, len(names)

    monkeypatch.setattr(fid, "load_fid_backbone", load_fid_backbone)  # where `real_statistics` looks them up
    monkeypatch.setattr(fid, "folder_statistics", folder_statistics)
    monkeypatch.setattr(fid.logger, "info", logged.append)
    monkeypatch.setenv("HOME", str(real_folder.parent))
    monkeypatch.delenv(metrics.CACHE_ENV, raising=False)
    got = metrics.real_statistics(real_folder, "8x6", inception_weights_path=weights)
    assert calls == [
        ("load", "torchvision", weights, 2048, "cpu"),
        ("statistics", real_folder, True, (8, 6), ["0.png", "1.png", "2.png"], 32, 0),
    ]
    key = fid._real_statistics_key(real_folder, (8, 6), ["0.png", "1.png", "2.png"], weights, "torchvision", 2048)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = real_folder.parent / ".cache/truepose/fid_stats" / f"train_8x6_{digest}.npz"  # folders created
    assert [path.name for path in cache_file.parent.iterdir()] == [cache_file.name]
    with np.load(cache_file) as cached:
        assert str(cached["key"]) == json.dumps(key, sort_keys=True)
        np.testing.assert_array_equal(cached["mu"], mu)
    np.testing.assert_array_equal(got[1], sigma)
    assert logged == [f"FID: cached real-set statistics in {cache_file}"]
    calls.clear()
    again = metrics.real_statistics(real_folder, "8x6", inception_weights_path=weights, device="meta", batch_size=2)
    assert calls == [] and logged[-1] == f"FID: reusing real-set statistics from {cache_file}"
    np.testing.assert_array_equal(again[0], mu)
    other_cache = real_folder.parent / "my" / "cache"
    metrics.real_statistics(real_folder, "8x6", inception_weights_path=weights, cache_dir=other_cache,
                            device="meta", batch_size=2, num_workers=1)  # fmt: skip
    assert calls == [
        ("load", "torchvision", weights, 2048, "meta"),
        ("statistics", real_folder, True, (8, 6), ["0.png", "1.png", "2.png"], 2, 1),
    ]
    assert (other_cache / cache_file.name).is_file()
    with pytest.raises(ValueError, match=r"^`fid_dims` must be 2048 with the torchvision backbone, got 64\.$"):
        metrics.real_statistics(real_folder, "8x6", inception_weights_path=weights, fid_dims=64)
