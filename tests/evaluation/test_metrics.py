"""`compute_metrics` and `truepose metrics` (`truepose.evaluation.metrics`): end to end on small folders, which model
gets which file and device, what is skipped, the training-set statistics, the FID checks before any work, and the
options the command passes on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluation_helpers import eig_frechet

from truepose.evaluation import fid, metrics, weights


class MeanDistance(torch.nn.Module):
    """A stand-in LPIPS model: the mean absolute difference per image (per pixel with `spatial`)."""

    def __init__(self, spatial: bool):
        super().__init__()
        self.spatial = spatial
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # `lpips_distance` reads the device off a parameter

    def forward(self, real, fake, normalize):
        distance = (real - fake).abs().mean(1, keepdim=True)
        return distance if self.spatial else distance.mean((2, 3), keepdim=True)


@pytest.fixture
def scoring_folders(tmp_path):
    """65 pairs `p00`..`p64` of 24x16 images with their parsing maps (two garments of other heights in each), and a
    pair `q` outside the named set (scored at 56x52: SSIM needs 51x51)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for folder in ("real", "fake", "parsing"):
        (tmp_path / folder).mkdir()
    for i, stem in enumerate([f"p{i:02d}" for i in range(65)] + ["q"]):
        parsing = np.zeros((24, 16), np.uint8)
        parsing[4 : 6 + i % 12, 4:12] = 4  # ATR upper clothes (LIP: sunglasses)
        parsing[18 - i % 4 :, 2:14] = 5  # ATR skirt (LIP: upper clothes)
        real = rng.integers(0, 256, (24, 16, 3), dtype=np.uint8)
        Image.fromarray(real).save(tmp_path / "real" / f"{stem}.png")
        Image.fromarray(255 - real).save(tmp_path / "fake" / f"{stem}.png")
        Image.fromarray(parsing).save(tmp_path / "parsing" / f"{stem}.png")
    return tmp_path


@pytest.fixture
def recorded_models(monkeypatch, pooled_colour):
    """Replaces the LPIPS and FID loaders with stand-ins that record what they were asked to load, and where."""
    loaded = []

    def load_lpips(path, device=None, spatial=False):
        loaded.append(("lpips", path, device, spatial))
        return MeanDistance(spatial)

    def load_fid_backbone(backbone, path=None, dims=None, device=None):
        loaded.append((backbone, path, dims, device))
        return pooled_colour

    monkeypatch.setattr(metrics, "load_lpips", load_lpips)
    monkeypatch.setattr(metrics, "load_fid_backbone", load_fid_backbone)
    return loaded


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
    assert results["fid"] == pytest.approx(eig_frechet(*stats_real, *stats_fake), rel=1e-6)
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


@pytest.mark.parametrize(("cuda", "device"), [(True, "cuda"), (False, "cpu")])
def test_the_default_device_is_cuda_when_there_is_one(cuda, device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert metrics._default_device() == device


def test_compute_metrics_gives_each_model_its_file_and_device_and_scores_the_named_pairs(
    scoring_folders, recorded_models, alexnet_weights, pytorch_fid_weights, pooled_colour, caplog, monkeypatch
):
    import logging

    import tqdm.auto

    bars = []
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda iterable, desc, **kwargs: bars.append(desc) or iterable)
    names = [f"p{i:02d}" for i in range(65)]
    with caplog.at_level(logging.WARNING):
        results = metrics.compute_metrics(
            scoring_folders / "real",
            scoring_folders / "fake",
            size=(56, 52),
            device="cpu",
            names=names,
            lpips_backbone_path=alexnet_weights,
            inception_weights_path=pytorch_fid_weights,
            fid_backbone="pytorch-fid",
            fid_dims=64,
            parsing_dir=scoring_folders / "parsing",
            ssim_256_sigma=0.8,
        )
    cpu = torch.device("cpu")
    assert recorded_models == [
        ("lpips", Path(alexnet_weights), cpu, False),
        ("pytorch-fid", Path(pytorch_fid_weights), 64, cpu),
        ("lpips", Path(alexnet_weights), cpu, True),  # LPIPS maps for the regions
    ]
    assert [record.getMessage() for record in caplog.records] == [
        "Evaluating at 56x52; the protocol's sizes are 256x176 and 512x352.",
        "FID: no `fid_real_dir` given, so the real set is the ground-truth test images; the protocol uses all "
        "training images (pass --fid-real-dir) and numbers are not comparable to papers.",
    ]
    assert results["fid_real_dir"] == str(scoring_folders / "real")
    assert results["fid_real_set"] == "ground-truth test images" and results["fid_backbone"] == "pytorch-fid"
    assert results["num_images"] == 65  # `q` is not among the names
    assert results["fid_reliable"] is True  # 65 images per set are enough for 64-d features (not for 2048)
    assert results["regions_label_map"] == "atr"  # the default label map
    assert results["regions"]["upper_clothes"]["lpips"] == pytest.approx(results["lpips"], rel=0.2)
    real = metrics.load_image_folder(scoring_folders / "real", (56, 52), [f"{name}.png" for name in names])
    fake = metrics.load_image_folder(scoring_folders / "fake", (56, 52), [f"{name}.png" for name in names])
    assert results["ssim_256_sigma"] == 0.8
    # FID of the named pairs' stand-in features, the real set being their ground truths
    real_stats = metrics.feature_statistics(pooled_colour(torch.from_numpy(real)))
    fake_stats = metrics.feature_statistics(pooled_colour(torch.from_numpy(fake)))
    assert results["fid"] == pytest.approx(metrics.frechet_distance(*real_stats, *fake_stats), rel=1e-9)
    assert results["ssim_256"] == pytest.approx(
        np.mean([metrics.ssim_256(r, f, sigma=0.8) for r, f in zip(real, fake)])
    )
    assert bars == ["Scoring pairs", f"Inception features of {scoring_folders / 'real'}"]


def test_compute_metrics_loads_nothing_it_was_told_to_skip(scoring_folders, recorded_models):
    from truepose.data.common import load_parsing
    from truepose.evaluation.regions import score_regions

    results = metrics.compute_metrics(
        scoring_folders / "real",
        scoring_folders / "fake",
        size=(56, 52),
        compute_lpips=False,
        compute_fid=False,
        parsing_dir=scoring_folders / "parsing",
        label_map="lip",
    )
    assert recorded_models == []  # not even the region LPIPS
    assert results["lpips"] is None and results["regions_label_map"] == "lip"
    assert sorted(results) == [
        "fid", "fid_backbone", "fid_dims", "fid_real_dir", "fid_real_set", "fid_reliable", "lpips", "num_images", "psnr",
        "regions", "regions_label_map", "resized_from", "size", "ssim", "ssim_256", "ssim_256_sigma",
    ]  # fmt: skip
    assert results["fid_backbone"] is None and results["fid_real_dir"] is None and results["fid_real_set"] is None
    # each pair scored with its own parsing map, read in the given label map
    real = metrics.load_image_folder(scoring_folders / "real", (56, 52))
    fake = metrics.load_image_folder(scoring_folders / "fake", (56, 52))
    parsings = [load_parsing(path, "lip", (56, 52)) for path in sorted((scoring_folders / "parsing").iterdir())]
    assert results["regions"] == score_regions(real, fake, parsings, label_map="lip")
    assert results["fid"] is None and results["fid_reliable"] is None and results["fid_dims"] is None
    assert results["num_images"] == 66


def test_compute_metrics_takes_the_training_set_statistics_with_every_setting(
    scoring_folders, recorded_models, pytorch_fid_weights, monkeypatch
):
    calls = []

    def real_statistics(folder, size, **kwargs):
        calls.append((folder, size, kwargs))
        return np.zeros(4), np.eye(4)  # the statistics of 4-d PooledColour features

    monkeypatch.setattr(metrics, "real_statistics", real_statistics)
    names = [f"p{i:02d}" for i in range(65)]
    results = metrics.compute_metrics(
        scoring_folders / "real", scoring_folders / "fake", size=(56, 52), names=names, fid_real_dir=scoring_folders / "real",
        compute_lpips=False, fid_backbone="pytorch-fid", fid_dims=64, inception_weights_path=pytorch_fid_weights,
        fid_cache_dir=scoring_folders / "cache", batch_size=5, num_workers=0,
    )  # fmt: skip
    (backbone,) = recorded_models
    assert calls == [
        (
            scoring_folders / "real",
            (56, 52),
            {
                "inception_weights_path": Path(pytorch_fid_weights), "model": calls[0][2]["model"],
                "cache_dir": scoring_folders / "cache", "batch_size": 5, "num_workers": 0,
                "fid_backbone": "pytorch-fid", "fid_dims": 64,
            },
        )
    ]  # fmt: skip
    assert calls[0][2]["model"] is not None and backbone == (
        "pytorch-fid",
        Path(pytorch_fid_weights),
        64,
        torch.device("cpu"),
    )
    assert results["fid_real_dir"] == str(scoring_folders / "real") and results["fid_real_set"] == "training images"


def test_compute_metrics_refuses_a_bad_fid_setup_before_reading_anything(
    scoring_folders, recorded_models, pytorch_fid_weights
):
    kwargs = dict(size=(56, 52), compute_lpips=False, fid_backbone="pytorch-fid", fid_dims=100)
    with pytest.raises(ValueError, match=r"^`fid_dims` must be one of \(64, 192, 768, 2048\) with pytorch-fid"):
        metrics.compute_metrics(scoring_folders / "no real folder", scoring_folders / "fake", **kwargs)
    few = scoring_folders / "train"
    few.mkdir()
    for i in range(3):
        (few / f"{i}.png").write_bytes((scoring_folders / "real" / "p00.png").read_bytes())
    kwargs.update(fid_dims=64, fid_real_dir=few, inception_weights_path=pytorch_fid_weights)
    names = [f"p{i:02d}" for i in range(65)]
    with pytest.raises(ValueError, match="got 3 real and 65 generated images"):  # the training set counts
        metrics.compute_metrics(scoring_folders / "real", scoring_folders / "fake", names=names, **kwargs)
    assert recorded_models == []


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


def test_metrics_cli_writes_json_and_markdown(image_folders, alexnet_weights, tmp_path, capsys):
    real_dir, fake_dir = image_folders
    out = tmp_path / "out" / "metrics.json"
    argv = [real_dir, fake_dir, "--size", "128x96", "--no-fid", "--lpips-backbone", alexnet_weights]
    assert metrics.main(argv + ["--json", str(out), "--device", "cpu", "--ssim-256-sigma", "1.2"]) == 0
    payload = json.loads(out.read_text())
    assert payload["results"]["fid"] is None and payload["results"]["ssim_256_sigma"] == 1.2
    assert payload["paper"]["TruePose (paper)"]["lpips"] == 0.151
    markdown = out.with_suffix(".md").read_text()
    assert "SSIM_256 σ=1.2" in markdown and "| TruePose (paper) |" not in markdown
    count = payload["results"]["num_images"]
    assert payload["results"]["resized_from"] == {"generated": {"160x120": count}}  # the real ones are 128x96
    assert f"Resized (bicubic) to 128x96 before scoring: generated images {count} at 160x120." in markdown
    assert "The paper's numbers at 512x352 are not shown: this run is at 128x96" in markdown
    assert markdown.splitlines()[0] in capsys.readouterr().out


def test_truepose_metrics_passes_every_option_on(tmp_path, monkeypatch, capsys):
    calls = {}

    def compute_metrics(real_dir, fake_dir, **kwargs):
        calls["compute_metrics"] = (real_dir, fake_dir, kwargs)
        return {"TruePose": {}}

    monkeypatch.setattr(metrics, "compute_metrics", compute_metrics)
    monkeypatch.setattr(metrics, "write_results", lambda results, path: calls.setdefault("write", (results, path)))
    monkeypatch.setattr(metrics, "format_markdown", lambda results: f"table of {sorted(results)}")
    argv = ["real", "fake", "--size", "512x352", "--fid-real-dir", "train", "--device", "meta", "--batch-size", "3",
            "--num-workers", "2", "--parsing-dir", "parsing", "--label-map", "lip", "--no-lpips", "--fid-backbone",
            "pytorch-fid", "--fid-dims", "768", "--force-fid", "--inception-weights", "w.pth", "--lpips-backbone",
            "a.pth", "--ssim-256-sigma", "1.2", "--fid-cache-dir", "cache", "--json", "out.json"]  # fmt: skip
    assert metrics.main(argv) == 0
    assert calls["compute_metrics"] == (
        "real",
        "fake",
        {
            "size": "512x352", "fid_real_dir": "train", "device": "meta", "batch_size": 3, "num_workers": 2,
            "parsing_dir": "parsing", "label_map": "lip", "compute_fid": True, "compute_lpips": False,
            "fid_backbone": "pytorch-fid", "fid_dims": 768, "force_fid": True, "inception_weights_path": "w.pth",
            "lpips_backbone_path": "a.pth", "ssim_256_sigma": 1.2, "fid_cache_dir": "cache",
        },
    )  # fmt: skip
    assert calls["write"] == ({"TruePose": {}}, "out.json")
    assert capsys.readouterr().out == "table of ['TruePose']\n"
    del calls["write"]
    metrics.main(["real", "fake"])  # no --json: nothing written
    assert "write" not in calls and calls["compute_metrics"][2]["size"] == "256x176"
