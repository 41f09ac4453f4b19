"""Tests of `truepose.evaluation.regions`: identity metrics per parsing region, on fixtures with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from truepose.conditioning import get_label_map
from truepose.data.common import save_parsing
from truepose.evaluation import images, metrics, regions, report

ATR = get_label_map("atr")


ATR_IDS = {name: i for i, name in ATR.labels.items()}


FACE, UPPER, PANTS, LEFT_ARM = (ATR_IDS[name] for name in ("Face", "Upper-clothes", "Pants", "Left-arm"))


def person_fixture(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(real, fake, parsing)` at 64x64: a textured image whose face region (rows 4-19) is identical in `fake`, and
    whose upper clothes (rows 24-43) are replaced by noise; an arm (rows 24-43, columns 0-7) changes slightly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64]
    real = np.stack([(x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256], axis=-1).astype(np.uint8)
    real = np.clip(real + rng.normal(0, 10, real.shape), 0, 255).astype(np.uint8)
    parsing = np.zeros((64, 64), np.int64)
    parsing[4:20, 20:44] = FACE
    parsing[24:44, 12:52] = UPPER
    parsing[24:44, 0:8] = LEFT_ARM
    fake = real.copy()
    upper = parsing == UPPER
    fake[upper] = rng.integers(0, 256, (int(upper.sum()), 3), dtype=np.uint8)
    arm = parsing == LEFT_ARM
    fake[arm] = np.clip(real[arm].astype(int) + 3, 0, 255).astype(np.uint8)
    fake[50:, :] = 255 - real[50:, :]  # background changes too: it must not leak into any region
    return real, fake, parsing


def assert_same_regions(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for region, values in expected.items():
        assert list(actual[region]) == list(values)
        for key, value in values.items():
            assert actual[region][key] == (value if value is None else pytest.approx(value, rel=1e-6)), (region, key)


@pytest.fixture(scope="module")
def spatial_lpips(alexnet_weights):
    return metrics.load_lpips(alexnet_weights, spatial=True)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of `(..., 3)` sRGB values in [0, 1], written out from the standard's formulas (the reference
    the metric is checked against; the metric itself uses skimage)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (
        linear
        @ np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]).T
    )
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def test_identity_region_masks_follow_the_label_map():
    _, _, parsing = person_fixture()
    masks = regions.identity_region_masks(parsing, "atr")
    assert list(masks) == ["face", "upper_clothes", "arms_legs"]  # no lower clothes in the fixture
    np.testing.assert_array_equal(masks["face"], parsing == FACE)
    np.testing.assert_array_equal(masks["arms_legs"], parsing == LEFT_ARM)
    parsing[50:, 12:52] = PANTS
    assert regions.identity_region_masks(parsing, "atr")["lower_clothes"].sum() == 14 * 40
    # Other label maps name their regions differently: DeepFashion-MultiModal's "top" is upper clothes.
    deepfashion = get_label_map("deepfashion")
    top = next(i for i, n in deepfashion.labels.items() if n == "top")
    assert list(regions.identity_region_masks(np.full((4, 4), top), deepfashion)) == ["upper_clothes"]


def test_region_metrics_known_answer(spatial_lpips):
    real, fake, parsing = person_fixture()
    scores = regions.RegionScores("atr", lpips_model=spatial_lpips)
    per_image = scores.update(real, fake, parsing)

    # Identical region: perfect scores, although the clothes right below and the background differ.
    assert per_image["face"]["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert per_image["face"]["psnr"] == math.inf
    assert per_image["face"]["lpips"] == 0.0

    # Replaced region: PSNR is the explicit formula on its pixels; SSIM and LPIPS see the change.
    upper = parsing == UPPER
    mse = np.mean((real[upper] / 255.0 - fake[upper] / 255.0) ** 2)
    assert per_image["upper_clothes"]["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    assert per_image["upper_clothes"]["ssim"] < 0.5
    assert per_image["upper_clothes"]["lpips"] > 0.1
    # A slight change scores in between.
    assert per_image["upper_clothes"]["psnr"] < per_image["arms_legs"]["psnr"] < math.inf
    assert per_image["upper_clothes"]["ssim"] < per_image["arms_legs"]["ssim"] < 1
    assert 0 < per_image["arms_legs"]["lpips"] < per_image["upper_clothes"]["lpips"]
    assert per_image["face"]["area"] == pytest.approx(16 * 24 / 64**2)

    # SSIM is skimage's SSIM_256 map of the ground truth and the pasted image, averaged over the region.
    pasted = np.where(upper[..., None], fake, real)
    _, ssim_map = structural_similarity(
        real.astype(float),
        pasted.astype(float),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=2,
        full=True,
    )
    assert per_image["upper_clothes"]["ssim"] == pytest.approx(ssim_map.mean(-1)[upper].mean(), abs=1e-12)
    # LPIPS is the lpips spatial map of the same pair, averaged over the region.
    to_tensor = lambda a: images.to_float(a[None])  # noqa: E731
    expected_map = spatial_lpips(to_tensor(real), to_tensor(pasted), normalize=True)[0, 0].double().numpy()
    assert per_image["upper_clothes"]["lpips"] == pytest.approx(expected_map[upper].mean(), rel=1e-6)

    # Means over the pairs where a region is present; absent regions report None.
    real2, fake2, parsing2 = person_fixture(seed=1)
    second = scores.update(real2, real2.copy(), parsing2)
    results = scores.compute()
    assert results["face"]["num_images"] == 2 and results["lower_clothes"] == {
        "ssim": None,
        "psnr": None,
        "lpips": None,
        "area": None,
        "num_images": 0,
    }
    assert results["upper_clothes"]["ssim"] == pytest.approx(
        (per_image["upper_clothes"]["ssim"] + second["upper_clothes"]["ssim"]) / 2
    )
    assert second["upper_clothes"]["ssim"] == pytest.approx(1.0)
    again = regions.score_regions([real, real2], [fake, real2], [parsing, parsing2], lpips_model=spatial_lpips)
    assert_same_regions(again, results)
    table = report.format_region_markdown(results)
    assert "beyond the protocol" in table and "| face | 2 | 9.4 | 1.0000 | inf | 0.0000 |" in table
    assert "| lower_clothes | 0 | n/a | n/a | n/a | n/a |" in table


def test_region_metrics_reject_bad_input(spatial_lpips, alexnet_weights):
    real, fake, parsing = person_fixture()
    with pytest.raises(ValueError, match="empty"):
        regions.region_psnr(real, fake, np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="mask"):
        regions.region_ssim(real, fake, np.ones((32, 32), bool))
    with pytest.raises(ValueError, match="spatial=True"):
        regions.region_lpips(metrics.load_lpips(alexnet_weights), real, fake, np.ones((1, 64, 64), bool))
    with pytest.raises(ValueError, match="same length"):
        regions.score_regions([real], [fake, fake], [parsing])
    with pytest.raises(ValueError, match="parsing"):
        regions.RegionScores().update(real, fake, parsing[:32])


def test_compute_metrics_reports_regions(alexnet_weights, tmp_path):
    """`truepose metrics --parsing-dir` adds the region table to the JSON and the Markdown report."""
    for folder in ("real", "fake", "parsing"):
        (tmp_path / folder).mkdir()
    pairs = [person_fixture(seed) for seed in range(2)]
    for i, (real, fake, parsing) in enumerate(pairs):
        Image.fromarray(real).save(tmp_path / "real" / f"p{i}.jpg")
        Image.fromarray(fake).save(tmp_path / "fake" / f"p{i}.png")
        save_parsing(parsing, tmp_path / "parsing" / f"p{i}.png")
    out = tmp_path / "metrics.json"
    argv = [str(tmp_path / "real"), str(tmp_path / "fake"), "--size", "64x64", "--no-fid", "--device", "cpu"]
    argv += ["--lpips-backbone", alexnet_weights, "--parsing-dir", str(tmp_path / "parsing"), "--json", str(out)]
    assert metrics.main(argv) == 0
    results = json.loads(out.read_text())["results"]
    # The ground truth went through JPEG: recompute the expected scores from the files as read.
    real = metrics.load_image_folder(tmp_path / "real", (64, 64))
    expected = regions.score_regions(
        real,
        [f for _, f, _ in pairs],
        [p for _, _, p in pairs],
        lpips_model=metrics.load_lpips(alexnet_weights, spatial=True),
    )
    assert_same_regions(results["regions"], expected)
    assert results["regions_label_map"] == "atr"
    assert "| upper_clothes | 2 |" in out.with_suffix(".md").read_text()

    (tmp_path / "parsing" / "p1.png").unlink()
    with pytest.raises(FileNotFoundError, match="no parsing map for: p1.png"):
        metrics.compute_metrics(
            tmp_path / "real",
            tmp_path / "fake",
            size=(64, 64),
            compute_fid=False,
            compute_lpips=False,
            parsing_dir=tmp_path / "parsing",
        )


def test_region_color_difference_is_cie76_between_mean_lab_colours():
    real, fake, parsing = person_fixture()
    upper = parsing == UPPER
    # Published CIELAB of pure red and pure green: (53.24, 80.09, 67.20) and (87.73, -86.18, 83.18).
    red, green = np.zeros_like(real), np.zeros_like(real)
    red[...] = (255, 0, 0)
    green[...] = (0, 255, 0)
    assert regions.region_color_difference(red, green, upper) == pytest.approx(170.58, abs=0.05)
    # A region of two colours: the mean of the pixels' Lab colours, compared with the hand-written conversion.
    expected_real = srgb_to_lab(real[upper] / 255.0).mean(axis=0)
    expected_fake = srgb_to_lab(fake[upper] / 255.0).mean(axis=0)
    expected = float(np.linalg.norm(expected_real - expected_fake))
    assert regions.region_color_difference(real, fake, upper) == pytest.approx(expected, rel=1e-3)
    # The region's own pixels only: the fixture's face is identical, its background changed.
    assert regions.region_color_difference(real, fake, parsing == FACE) == 0.0
    with pytest.raises(ValueError, match="empty"):
        regions.region_color_difference(real, fake, np.zeros_like(upper))


def test_region_edge_ssim_sees_where_the_pattern_is():
    y, x = np.mgrid[0:64, 0:64]
    stripes = np.where((y // 4) % 2 == 0, 200, 40).astype(np.uint8)[..., None].repeat(3, axis=-1)
    half_period = np.where(((y + 4) // 4) % 2 == 0, 200, 40).astype(np.uint8)[..., None].repeat(3, axis=-1)
    quarter_period = np.where(((y + 2) // 4) % 2 == 0, 200, 40).astype(np.uint8)[..., None].repeat(3, axis=-1)
    flat = np.full_like(stripes, 120)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    outside_changed = np.where(mask[..., None], stripes, 255 - stripes)
    assert regions.region_edge_ssim(stripes, outside_changed, mask) == pytest.approx(1.0)
    # Colours swapped, edges in the same rows: high (the pasted region's side borders add edges of their own).
    assert regions.region_edge_ssim(stripes, half_period, mask) > 0.75
    # Edges between the true ones: anti-correlated edge maps.
    assert regions.region_edge_ssim(stripes, quarter_period, mask) < -0.5
    # No pattern, or the pattern turned 90 degrees: near 0.
    assert abs(regions.region_edge_ssim(stripes, flat, mask)) < 0.15
    assert abs(regions.region_edge_ssim(stripes, stripes.transpose(1, 0, 2), mask)) < 0.15
