"""Tests of `truepose.evaluation.metrics` against reference implementations (skimage, lpips, torchmetrics)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from truepose.evaluation import fid, images, metrics, weights

# ----------------------------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------------------------


def test_parse_size():
    assert metrics.parse_size("256x176") == (256, 176)
    assert metrics.parse_size((512, 352)) == (512, 352)
    with pytest.raises(ValueError, match="size"):
        metrics.parse_size("256")


def test_load_image_folder_sorted_bicubic_uint8(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {name: rng.integers(0, 256, (100, 70, 3), dtype=np.uint8) for name in ["b.png", "a.png", "c.jpg"]}
    for name, array in arrays.items():
        Image.fromarray(array).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    images = metrics.load_image_folder(tmp_path, (64, 48))
    assert images.shape == (3, 64, 48, 3) and images.dtype == np.uint8
    assert metrics.list_image_files(tmp_path) == ["a.png", "b.png", "c.jpg"]
    expected = np.asarray(Image.fromarray(arrays["a.png"]).resize((48, 64), Image.BICUBIC))
    np.testing.assert_array_equal(images[0], expected)
    # Already at size: read as is.
    np.testing.assert_array_equal(metrics.load_image_folder(tmp_path, (100, 70))[1], arrays["b.png"])


def test_resize_to_uint8_reads_each_array_kind_and_rejects_out_of_range_values():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (20, 14, 3), dtype=np.uint8)
    size = (10, 7)
    expected = np.asarray(Image.fromarray(pixels).resize((7, 10), Image.BICUBIC))
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels, size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels.astype(np.int64), size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels / 255.0, size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8((pixels / 255.0).astype(np.float32), size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(Image.fromarray(pixels), size), expected)
    np.testing.assert_array_equal(metrics.resize_to_uint8(pixels, (20, 14)), pixels)  # already at size: unchanged
    gray = metrics.resize_to_uint8(pixels[..., 0], (20, 14))
    assert gray.shape == (20, 14, 3) and (gray == pixels[..., :1]).all()
    # 0-255 floats and 16-bit values would be clipped to white or wrapped around: refused, naming the range.
    for bad in (
        pixels.astype(np.float32),
        pixels.astype(np.int32) * 256,
        -(pixels / 255.0),
        np.full((4, 4, 3), np.nan),
    ):
        with pytest.raises(ValueError, match=r"`image` of dtype .* must hold values in \["):
            metrics.resize_to_uint8(bad, size)
    for bad in (np.full((4, 4, 3), 256, np.int64), np.full((4, 4, 3), 1.5)):  # just above each range
        with pytest.raises(ValueError, match=r"must hold values in \["):
            metrics.resize_to_uint8(bad, size)
    rgba = np.dstack([pixels, np.full((20, 14), 255, np.uint8)])
    np.testing.assert_array_equal(metrics.resize_to_uint8(rgba, size), expected)  # alpha dropped
    for shape in [(1, 20, 14, 3), (20, 14, 2), (20, 14, 5)]:
        with pytest.raises(ValueError, match=r"`image` must be an \(H, W\)"):
            metrics.resize_to_uint8(np.zeros(shape, np.uint8), size)
    with pytest.raises(TypeError, match="`image` must be an integer or floating-point array"):
        metrics.resize_to_uint8(pixels > 128, size)


def test_pair_image_folders(tmp_path):
    for folder, names in {"real": ["x.jpg", "y.jpg", "z.jpg"], "fake": ["x.png", "y.png", "w.png"]}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("RGB", (8, 8)).save(tmp_path / folder / name)
    with pytest.raises(ValueError) as error:
        metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake")
    message = str(error.value)
    assert "missing in fake_dir: z" in message and "missing in real_dir: w" in message
    # With `names`, only those are paired and other files are ignored; a missing one is still reported.
    assert metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake", names=["y"]) == [("y.jpg", "y.png")]
    with pytest.raises(ValueError, match="missing in fake_dir: z"):
        metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake", names=["x", "z"])
    os.remove(tmp_path / "real" / "z.jpg")
    os.remove(tmp_path / "fake" / "w.png")
    assert metrics.pair_image_folders(tmp_path / "real", tmp_path / "fake") == [("x.jpg", "x.png"), ("y.jpg", "y.png")]
    with pytest.raises(ValueError, match="does not exist"):
        metrics.list_image_files(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------------------------------
# SSIM / PSNR
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------------------------


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


def test_missing_weights_raise_clear_errors(tmp_path, monkeypatch, alexnet_weights, no_weight_files):
    with pytest.raises(FileNotFoundError) as error:
        metrics.load_lpips()
    message = str(error.value)
    assert metrics.ALEXNET_FILENAME in message and metrics.ALEXNET_URL in message
    assert str(no_weight_files) in message
    with pytest.raises(FileNotFoundError) as error:
        metrics.load_inception(tmp_path / "missing.pth")
    message = str(error.value)
    assert metrics.INCEPTION_FILENAME in message and metrics.INCEPTION_URL in message and "missing.pth" in message

    # The env var, a folder holding the file, and the torch hub cache are all accepted.
    monkeypatch.setenv(metrics.ALEXNET_ENV, alexnet_weights)
    metrics.load_lpips()
    monkeypatch.delenv(metrics.ALEXNET_ENV)
    metrics.load_lpips(os.path.dirname(alexnet_weights))
    no_weight_files.mkdir(parents=True)
    shutil.copy(alexnet_weights, no_weight_files / metrics.ALEXNET_FILENAME)
    metrics.load_lpips()


def test_wrong_weight_file_is_rejected(tmp_path):
    path = tmp_path / metrics.ALEXNET_FILENAME
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        metrics.load_lpips(path)


# ----------------------------------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------------------------------


def _eig_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """Independent formula: Tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), all symmetric, float64."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(
        ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    )


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
    assert ours == pytest.approx(_eig_frechet(mu1, sigma1, mu2, sigma2), rel=1e-8)
    assert metrics.frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="do not match"):
        metrics.frechet_distance(mu1, sigma1, mu2[:3], sigma2)


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


def test_inception_features_follow_torchvision(inception_weights, image_pairs):
    from torchvision.models import inception_v3

    extractor = metrics.load_inception(inception_weights)
    images = np.stack([r for r, _ in image_pairs[:2]])
    features = extractor(torch.from_numpy(images))
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and features.std() > 0

    reference = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    reference.load_state_dict(torch.load(inception_weights, weights_only=True))
    reference.fc = torch.nn.Identity()
    reference.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", antialias=True)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        expected = reference((x - mean) / std)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)


def test_compute_metrics_end_to_end(
    image_folders, image_pairs, alexnet_weights, inception_weights, pooled_colour, tmp_path, monkeypatch
):
    real_dir, fake_dir = image_folders
    size = (128, 96)
    calls = []
    original = metrics.folder_statistics

    def counting_statistics(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(fid, "folder_statistics", counting_statistics)  # the training set's, in `real_statistics`
    monkeypatch.setattr(metrics, "folder_statistics", counting_statistics)  # the ground truths', in `compute_metrics`
    monkeypatch.setattr(weights, "load_inception", lambda *args, **kwargs: pooled_colour)
    kwargs = dict(
        size=size,
        fid_real_dir=real_dir,
        device="cpu",
        batch_size=2,
        inception_weights_path=inception_weights,
        lpips_backbone_path=alexnet_weights,
        fid_cache_dir=tmp_path / "cache",
        force_fid=True,  # 5 images: far fewer than the 2049 a 2048-d FID needs; the arithmetic is checked here
    )
    results = metrics.compute_metrics(real_dir, fake_dir, **kwargs)
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("*.npz"))) == 1

    # Scores are the per-pair means of the functions above on images resized to `size` as uint8.
    real = metrics.load_image_folder(real_dir, size)
    fake = metrics.load_image_folder(fake_dir, size)
    assert results["num_images"] == len(image_pairs) and results["size"] == "128x96"
    assert results["ssim"] == pytest.approx(np.mean([metrics.ssim(r, f) for r, f in zip(real, fake)]), abs=1e-12)
    assert results["ssim_256"] == pytest.approx(
        np.mean([metrics.ssim_256(r, f) for r, f in zip(real, fake)]), abs=1e-12
    )
    assert results["ssim_256_sigma"] == 1.5
    assert results["psnr"] == pytest.approx(np.mean([metrics.psnr(r, f) for r, f in zip(real, fake)]), abs=1e-12)
    lpips_model = metrics.load_lpips(alexnet_weights)
    assert results["lpips"] == pytest.approx(metrics.lpips_distance(lpips_model, real, fake).mean(), rel=1e-5)

    # FID is the Fréchet distance of the feature statistics of both sets.
    stats_real = metrics.feature_statistics(pooled_colour(torch.from_numpy(real)))
    stats_fake = metrics.feature_statistics(pooled_colour(torch.from_numpy(fake)))
    assert results["fid"] == pytest.approx(_eig_frechet(*stats_real, *stats_fake), rel=1e-6)
    assert results["fid"] > 0 and results["fid_real_set"] == "training images"

    # A second call reuses the cached real-set statistics; a set against itself gives FID ~0.
    same = metrics.compute_metrics(real_dir, real_dir, **kwargs)
    assert len(calls) == 1
    assert abs(same["fid"]) < 1e-8
    assert same["lpips"] == 0.0 and same["ssim"] == pytest.approx(1.0) and same["psnr"] == float("inf")

    # Another size is another cache entry; without a training folder the ground truth is the real set.
    metrics.compute_metrics(real_dir, fake_dir, **{**kwargs, "size": (96, 64), "fid_real_dir": None})
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    other = metrics.compute_metrics(real_dir, fake_dir, **{**kwargs, "size": (112, 80)})
    assert len(calls) == 3 and len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert other["fid_real_set"] == "training images"
    no_train = metrics.compute_metrics(real_dir, fake_dir, **{**kwargs, "fid_real_dir": None})
    assert no_train["fid_real_set"] == "ground-truth test images" and no_train["fid"] == pytest.approx(results["fid"])


def test_metrics_cli_writes_json_and_markdown(image_folders, alexnet_weights, tmp_path, capsys):
    real_dir, fake_dir = image_folders
    out = tmp_path / "out" / "metrics.json"
    argv = [real_dir, fake_dir, "--size", "128x96", "--no-fid", "--lpips-backbone", alexnet_weights]
    assert metrics.main(argv + ["--json", str(out), "--device", "cpu", "--ssim-256-sigma", "1.2"]) == 0
    payload = json.loads(out.read_text())
    assert payload["results"]["fid"] is None and payload["results"]["ssim_256_sigma"] == 1.2
    assert payload["paper"]["TruePose (paper)"]["lpips"] == 0.151
    markdown = out.with_suffix(".md").read_text()
    assert (
        "SSIM_256 σ=1.2" in markdown
        and "| TruePose (paper) | 512x352 | n/a | 0.1510 | 0.7440 | n/a | 17.627 |" in markdown
    )
    assert markdown.splitlines()[0] in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------------
# FID with pytorch-fid's backbone, against pytorch-fid itself
# ----------------------------------------------------------------------------------------------------------------------


def _pytorch_fid_reference_model(weights: str, dims: int, tmp_path, monkeypatch):
    """pytorch-fid's `InceptionV3` built the package's own way: its weight file in the torch hub cache."""
    from pytorch_fid.inception import InceptionV3

    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weights, hub / metrics.PYTORCH_FID_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()


def _save_images(folder, images) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"img_{i:03d}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def test_pytorch_fid_features_equal_pytorch_fid(pytorch_fid_weights, image_pairs, tmp_path, monkeypatch):
    from pytorch_fid.fid_score import get_activations

    images = np.stack([real for real, _ in image_pairs[:4]])
    files = _save_images(tmp_path / "images", images)
    reference = _pytorch_fid_reference_model(pytorch_fid_weights, 2048, tmp_path, monkeypatch)
    expected = get_activations(files, reference, batch_size=2, dims=2048, device="cpu", num_workers=0)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))  # ours reads the explicit path only
    extractor = metrics.load_fid_backbone("pytorch-fid", pytorch_fid_weights)
    assert extractor.feature_dim == 2048
    features = extractor(torch.from_numpy(images)).double().numpy()
    assert features.shape == (4, 2048) and features.std() > 0
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


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
    real_files = _save_images(tmp_path / "real", real)
    fake_files = _save_images(tmp_path / "fake", fake)

    reference = _pytorch_fid_reference_model(pytorch_fid_weights, 64, tmp_path, monkeypatch)
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


def test_fid_backbone_arguments_are_checked(pytorch_fid_weights, inception_weights):
    with pytest.raises(ValueError, match="fid_backbone"):
        metrics.check_fid_backbone("clean-fid")
    with pytest.raises(ValueError, match="fid_dims"):
        metrics.check_fid_backbone("torchvision", 64)
    with pytest.raises(ValueError, match="fid_dims"):
        metrics.check_fid_backbone("pytorch-fid", 100)
    # Each backbone refuses the other's weight file.
    with pytest.raises(ValueError, match="not pytorch-fid's TF-Inception"):
        metrics.load_pytorch_fid_inception(inception_weights)
    with pytest.raises(ValueError, match="not a torchvision Inception-v3"):
        metrics.load_inception(pytorch_fid_weights)


# ----------------------------------------------------------------------------------------------------------------------
# Checks before work
# ----------------------------------------------------------------------------------------------------------------------


def test_all_missing_weight_files_are_listed_at_once(image_folders, no_weight_files, tmp_path):
    real_dir, fake_dir = image_folders
    for backbone, filename in (
        ("torchvision", metrics.INCEPTION_FILENAME),
        ("pytorch-fid", metrics.PYTORCH_FID_FILENAME),
    ):
        with pytest.raises(FileNotFoundError) as error:
            metrics.main([real_dir, fake_dir, "--size", "128x96", "--fid-backbone", backbone])
        message = str(error.value)
        assert message.startswith("2 weight files are missing")
        assert metrics.ALEXNET_FILENAME in message and filename in message
    # Only what is asked for is needed: --no-lpips and --no-fid need no weight file at all.
    out = tmp_path / "metrics.json"
    assert metrics.main([real_dir, fake_dir, "--size", "128x96", "--no-lpips", "--no-fid", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["lpips"] is None and results["fid"] is None and 0 < results["ssim"] < 1


def test_fid_refuses_too_few_images_unless_forced(
    image_folders, alexnet_weights, inception_weights, pooled_colour, monkeypatch
):
    real_dir, fake_dir = image_folders
    assert metrics.min_fid_images(2048) == 2049 and metrics.min_fid_images(64) == 65
    kwargs = dict(size=(128, 96), device="cpu", inception_weights_path=inception_weights, compute_lpips=False)
    scored = []
    monkeypatch.setattr(metrics, "ssim", lambda *args: scored.append(1))
    with pytest.raises(ValueError, match="at least 2049 images per set") as error:
        metrics.compute_metrics(real_dir, fake_dir, **kwargs)
    assert "got 5 real and 5 generated" in str(error.value) and scored == []  # refused before scoring
    monkeypatch.undo()

    monkeypatch.setattr(metrics, "load_fid_backbone", lambda *args, **kw: pooled_colour)
    forced = metrics.compute_metrics(real_dir, fake_dir, force_fid=True, **kwargs)
    assert forced["fid_reliable"] is False and np.isfinite(forced["fid"])
    assert "FID forced on fewer than 2049 images per set: not meaningful." in metrics.format_markdown(forced)


# ----------------------------------------------------------------------------------------------------------------------
# Added for the mutants `benchmarks/mutation.sh metrics` left (docs/testing.md)
# ----------------------------------------------------------------------------------------------------------------------


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


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


def test_inception_extractor_resizes_with_antialiasing_and_accepts_float64(inception_weights):
    """Downsampling (a 320 x 400 image to 299 x 299) is where antialiasing matters; the normalisation buffers are
    not part of the state dict (the checkpoint is torchvision's, unchanged)."""
    extractor = metrics.load_inception(inception_weights)
    assert not any(key in extractor.state_dict() for key in ("mean", "std"))
    assert set(extractor.state_dict()) == {f"inception.{k}" for k in extractor.inception.state_dict()}
    image = torch.rand(1, 3, 320, 400, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(image, size=(299, 299), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = extractor.inception((resized - mean) / std)
        features = extractor(image)
        torch.testing.assert_close(features, expected)
        torch.testing.assert_close(extractor(image.double()), features)


def test_pytorch_fid_extractor_accepts_float64(pytorch_fid_weights):
    extractor = metrics.load_pytorch_fid_inception(pytorch_fid_weights, dims=64)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(extractor(image.double()), extractor(image))


def test_lpips_distance_shape_message(alexnet_weights):
    model = metrics.load_lpips(alexnet_weights)
    real, fake = np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 64, 48, 3), np.uint8)
    with pytest.raises(
        ValueError,
        match=_exactly("`real` and `fake` must have the same shape, got (1, 3, 64, 64) and (1, 3, 64, 48)."),
    ):
        metrics.lpips_distance(model, real, fake)


def test_image_checks_need_every_condition():
    with pytest.raises(ValueError, match=_exactly("Expected images of shape (N, H, W, 3), got (1, 8, 8, 4).")):
        images.to_float(np.zeros((1, 8, 8, 4), np.uint8))  # 4-D but not RGB
    with pytest.raises(ValueError, match=_exactly("Expected images of shape (N, H, W, 3), got (8, 8, 3).")):
        images.to_float(np.zeros((8, 8, 3), np.uint8))  # RGB but not a batch
    with pytest.raises(
        ValueError, match=_exactly("Expected uint8 images (the protocol scores uint8), got torch.float32.")
    ):
        images.to_float(np.zeros((1, 8, 8, 3), np.float32))
    real = np.zeros((64, 64, 3), np.uint8)
    for fake in (real.astype(np.float64), real.astype(np.int16)):  # one of the two not uint8 is enough
        message = f"`real` and `fake` must be uint8 (H, W, 3) images, got uint8 and {fake.dtype}."
        with pytest.raises(ValueError, match=_exactly(message)):
            metrics.ssim(real, fake)


def test_ssim_accepts_51x51_and_names_the_size_it_refuses():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (51, 51, 3), dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    small = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    message = "SSIM uses win_size=51: images must be at least 51x51, got (50, 60)."
    with pytest.raises(ValueError, match=_exactly(message)):
        metrics.ssim(small, small)
