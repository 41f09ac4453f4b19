"""The metrics' input/output code case by case: where the FID cache lives, which device scores, the parsing maps a
run needs, the files a run writes and the options `truepose metrics` passes on."""

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from truepose.evaluation import fid, images, metrics, progress, weights
from truepose.evaluation.report import format_region_markdown


def test_the_fid_cache_is_under_home_unless_the_environment_names_a_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert metrics.default_cache_dir() == tmp_path / ".cache" / "truepose" / "fid_stats"
    monkeypatch.setenv(metrics.CACHE_ENV, "~/elsewhere")
    assert metrics.default_cache_dir() == tmp_path / "elsewhere" / "fid_stats"


@pytest.mark.parametrize(("cuda", "device"), [(True, "cuda"), (False, "cpu")])
def test_the_default_device_is_cuda_when_there_is_one(cuda, device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert metrics._default_device() == device


def test_target_parsing_files_lists_the_missing_maps(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"`parsing_dir` {str(tmp_path / 'no')!r} is not a")):
        metrics.target_parsing_files(tmp_path / "no", ["a.jpg"])
    (tmp_path / "a.png").write_bytes(b"")
    assert metrics.target_parsing_files(tmp_path, ["a.jpg"]) == [tmp_path / "a.png"]
    names = [f"{i:02d}.jpg" for i in range(11)]
    listed = ", ".join(f"{i:02d}.png" for i in range(10))
    message = f"`parsing_dir` {str(tmp_path)!r} has no parsing map for: {listed}"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}, \\.\\.\\. \\(11 in all\\)\\.$"):
        metrics.target_parsing_files(tmp_path, names)
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}\\.$"):  # ten: all shown, no count
        metrics.target_parsing_files(tmp_path, names[:10])


def test_write_results_writes_the_json_and_the_table_beside_it(tmp_path):
    results = {"TruePose": {"ssim": 0.5, "fid": math.nan}}
    json_path, markdown_path = metrics.write_results(results, tmp_path / "new" / "folder" / "scores.json")
    assert (json_path, markdown_path) == (tmp_path / "new/folder/scores.json", tmp_path / "new/folder/scores.md")
    payload = {"results": results, "paper": metrics.PAPER_RESULTS}
    assert json_path.read_text() == json.dumps(payload, indent=2, allow_nan=True) + "\n"  # NaN: not computed
    assert markdown_path.read_text() == metrics.format_markdown(results, name="This run")
    metrics.write_results(results, json_path, name="Ours")
    assert markdown_path.read_text() == metrics.format_markdown(results, name="Ours")


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


@pytest.fixture
def real_folder(tmp_path):
    """Three 8x8 images and a stand-in Inception weight file."""
    from PIL import Image

    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "weights.pth").write_bytes(b"1234")
    return folder


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


def test_the_markdown_table_written_out():
    results = {"size": "256x176", "fid": 6.37149, "fid_backbone": "torchvision", "fid_dims": 2048, "lpips": 0.123456,
               "ssim": 0.7, "ssim_256": 0.812345, "psnr": float("inf"), "num_images": 12}  # fmt: skip
    assert metrics.format_markdown(results, name="Ours", include_paper=False) == (
        "| Method | Size | FID ↓ | LPIPS ↓ | SSIM ↑ | SSIM_256 σ=1.5 ↑ | PSNR ↑ |\n"
        "|---|---|---|---|---|---|---|\n"
        "| Ours | 256x176 | 6.371 (torchvision) | 0.1235 | 0.7000 | 0.8123 | inf |\n"
        "\n"
        "12 image pairs; SSIM: win 51 on [0,1]; SSIM_256: gaussian σ=1.5 on 0-255. FID backbones: torchvision = "
        "torchvision Inception-v3 IMAGENET1K_V1 (CFLD's evaluation), pytorch-fid = TF-Inception pt_inception-2015-12-05 "
        "(PIDM, PCDMs, GFLA scripts); FIDs of different backbones are not comparable.\n"
    )
    forced = {"fid": 1.0, "fid_backbone": None, "fid_dims": 64, "fid_reliable": False, "ssim_256_sigma": 1.2,
              "fid_real_set": "train", "fid_real_dir": "/data/train"}  # fmt: skip
    table = metrics.format_markdown(forced)
    lines = table.splitlines()
    assert lines[0] == "| Method | Size | FID ↓ | LPIPS ↓ | SSIM ↑ | SSIM_256 σ=1.2 ↑ | PSNR ↑ |"
    assert lines[2] == "| This run | n/a | 1.000 (backbone unknown, 64-d) | n/a | n/a | n/a | n/a |"
    assert lines[3] == "| TruePose (paper) | 512x352 | n/a | 0.1510 | 0.7440 | n/a | 17.627 |"
    assert lines[5].startswith(
        "? image pairs; SSIM: win 51 on [0,1]; SSIM_256: gaussian σ=1.2 on 0-255. FID backbones"
    )
    assert lines[5].endswith(
        " FID real set: train (/data/train). FID forced on fewer than 65 images per set: not meaningful."
    )
    assert len(lines) == 6 and table.endswith("\n")
    no_fid = metrics.format_markdown({"num_images": 3}, include_paper=False)
    assert no_fid.splitlines()[-1] == "3 image pairs; SSIM: win 51 on [0,1]; SSIM_256: gaussian σ=1.5 on 0-255."

    regions = {"upper_clothes": {"num_images": 2, "area": 0.25, "ssim": 0.5, "psnr": 20.0, "lpips": None}}
    with_regions = metrics.format_markdown({**results, "regions": regions}, name="Ours", include_paper=False)
    expected = metrics.format_markdown(results, name="Ours", include_paper=False)
    assert with_regions == expected + "\n" + format_region_markdown(regions)


def test_image_folders_read_the_given_names_or_all(tmp_path, pooled_colour):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (6, 4), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    assert metrics.load_image_folder(tmp_path, (4, 6)).shape == (3, 4, 6, 3)
    chosen = metrics.load_image_folder(tmp_path, (4, 6), names=["2.png"])
    assert chosen.shape == (1, 4, 6, 3) and chosen[0, 0, 0, 0] == 160
    empty = metrics.load_image_folder(tmp_path, (4, 6), names=[])
    assert empty.shape == (0, 4, 6, 3) and empty.dtype == np.uint8

    mu, _, count = metrics.folder_statistics(tmp_path, pooled_colour, (4, 6), names=["0.png", "2.png"])
    assert count == 2 and mu.shape == (4,)
    assert metrics.folder_statistics(tmp_path, pooled_colour, (4, 6))[2] == 3


def test_fid_backbones_load_frozen_and_name_a_file_that_is_not_a_state_dict(
    inception_weights, pytorch_fid_weights, tmp_path
):
    torchvision_model = metrics.load_inception(inception_weights, device="meta")
    pytorch_fid_model = metrics.load_pytorch_fid_inception(pytorch_fid_weights, dims=64, device="meta")
    assert pytorch_fid_model.feature_dim == 64
    for model in (torchvision_model, pytorch_fid_model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert {p.device.type for p in model.parameters()} == {"meta"}  # on the requested device
    not_a_dict = tmp_path / "weights.pth"
    torch.save(torch.zeros(1), not_a_dict)
    with pytest.raises(ValueError, match=rf"^Inception-v3: {re.escape(repr(str(not_a_dict)))} is not a state dict"):
        metrics.load_inception(not_a_dict)
    with pytest.raises(ValueError, match=r"^pytorch-fid Inception: '.*weights\.pth' is not a state dict \(got Tensor"):
        metrics.load_pytorch_fid_inception(not_a_dict)
    with pytest.raises(ValueError, match=r"^`fid_dims` must be one of \(64, 192, 768, 2048\) with pytorch-fid"):
        metrics.load_pytorch_fid_inception(pytorch_fid_weights, dims=100)
    wrong_keys = tmp_path / "other.pth"
    torch.save({"x": torch.zeros(1)}, wrong_keys)
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(str(wrong_keys)))} is not a torchvision Inception-v3"):
        metrics.load_inception(wrong_keys)
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(str(wrong_keys)))} is not pytorch-fid's TF-Inception"):
        metrics.load_pytorch_fid_inception(wrong_keys)


def test_check_weight_files_finds_both_by_default_and_lists_every_missing_one(
    alexnet_weights, inception_weights, no_weight_files, tmp_path
):
    found = metrics.check_weight_files(lpips_backbone_path=alexnet_weights, inception_weights_path=inception_weights)
    assert found == {"lpips": Path(alexnet_weights), "fid": Path(inception_weights)}
    with pytest.raises(FileNotFoundError) as one:
        metrics.check_weight_files(compute_lpips=False, inception_weights_path=tmp_path / "none.pth")
    assert str(one.value).startswith("FID (torchvision Inception-v3) needs the weight file")
    with pytest.raises(FileNotFoundError) as both:
        metrics.check_weight_files(lpips_backbone_path=tmp_path / "a.pth", inception_weights_path=tmp_path / "b.pth")
    message = str(both.value)
    assert message.startswith("2 weight files are missing:\n- LPIPS (AlexNet backbone) needs the weight file")
    assert "\n- FID (torchvision Inception-v3) needs the weight file" in message


def test_load_fid_backbone_loads_the_given_file_of_the_given_backbone(
    inception_weights, pytorch_fid_weights, no_weight_files
):
    assert isinstance(metrics.load_fid_backbone("torchvision", inception_weights), metrics.InceptionFeatureExtractor)
    pytorch_fid = metrics.load_fid_backbone("pytorch-fid", pytorch_fid_weights, dims=192)
    assert isinstance(pytorch_fid, metrics.PytorchFIDFeatureExtractor) and pytorch_fid.feature_dim == 192
    with pytest.raises(ValueError, match=r"^`fid_dims` must be 2048 with the torchvision backbone, got 64\.$"):
        metrics.load_fid_backbone("torchvision", inception_weights, dims=64)


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
        "regions", "regions_label_map", "size", "ssim", "ssim_256", "ssim_256_sigma",
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


def test_the_pair_loader_keeps_file_order_in_batches_of_the_given_size():
    """Pairs must come in file order: the parsing maps are matched to them by position."""
    batches = [batch.tolist() for batch in images.image_loader(list(range(10)), 4, 0)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert images.image_loader(list(range(10)), 4, 1).num_workers == 1


def test_progress_bars_are_named_transient_and_follow_diffusers_setting(monkeypatch):
    import tqdm.auto
    from diffusers.utils import logging

    made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda iterable, **kwargs: made.append(kwargs) or iterable)
    was_enabled = logging.is_progress_bar_enabled()
    try:
        logging.enable_progress_bar()
        assert list(progress.progress_bar([1, 2], "Scoring pairs")) == [1, 2]
        logging.disable_progress_bar()
        progress.progress_bar([], "Real-set features")
    finally:
        (logging.enable_progress_bar if was_enabled else logging.disable_progress_bar)()
    assert made == [
        {"desc": "Scoring pairs", "leave": False, "disable": False},
        {"desc": "Real-set features", "leave": False, "disable": True},
    ]


def test_load_fid_backbone_passes_the_file_size_and_device_on(monkeypatch):
    monkeypatch.setattr(weights, "load_inception", lambda path, device: ("torchvision", path, device))
    monkeypatch.setattr(
        weights, "load_pytorch_fid_inception", lambda path, dims, device: ("pytorch-fid", path, dims, device)
    )
    assert metrics.load_fid_backbone("torchvision", "a.pth", device="meta") == ("torchvision", "a.pth", "meta")
    assert metrics.load_fid_backbone("pytorch-fid", "b.pth", dims=192, device="meta") == (
        "pytorch-fid",
        "b.pth",
        192,
        "meta",
    )


def test_sizes_parse_in_every_written_form_and_say_what_is_wrong():
    for size in ("256x176", "256,176", "256X176", " 256 x 176 ", (256, 176), [256, 176]):
        assert metrics.parse_size(size) == (256, 176)
    assert metrics.parse_size((1, 1)) == (1, 1)
    for size, message in [
        ("256", "`size` must look like 'HxW' (e.g. '256x176'), got '256'."),
        ((256,), "`size` must be (height, width), got (256,)."),
        ("8x0", "`size` must be positive, got (8, 0)."),
        ((0, 8), "`size` must be positive, got (0, 8)."),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            metrics.parse_size(size)


def test_image_folder_errors_name_the_folders_and_list_the_names(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    message = f"Image folder {str(tmp_path / 'empty')!r} contains no images (expected files ending in "
    with pytest.raises(ValueError, match=f"^{re.escape(message + str(metrics.IMAGE_EXTENSIONS))}\\)\\.$"):
        metrics.list_image_files(tmp_path / "empty")
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    for i in range(12):
        Image.new("RGB", (4, 4)).save(real / f"{i:02d}.png")
    for i in range(10, 21):
        Image.new("RGB", (4, 4)).save(fake / f"{i:02d}.png")
    expected = "\n".join([
        f"Cannot pair {str(real)!r} (real) with {str(fake)!r} (fake) by file name:",
        "  missing in fake_dir: 00, 01, 02, 03, 04, 05, 06, 07, 08, 09",  # ten: all shown
        "  missing in real_dir: 12, 13, 14, 15, 16, 17, 18, 19, 20",
    ])  # fmt: skip
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        metrics.pair_image_folders(real, fake)
    Image.new("RGB", (4, 4)).save(real / "21.png")  # 11 missing in fake_dir: the first ten, then the count
    expected = expected.replace("08, 09\n", "08, 09, ... (11 in all)\n")
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        metrics.pair_image_folders(real, fake)
    Image.new("RGB", (4, 4)).save(real / "00.jpg")
    message = f"Folder {str(real)!r} holds two images named '00': '00.jpg' and '00.png'."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.pair_image_folders(real, fake)


def test_a_missing_weight_file_says_where_it_was_looked_for(no_weight_files, tmp_path, monkeypatch):
    spec = metrics.WEIGHT_FILES["lpips"]
    advice = (
        f"Nothing is downloaded at evaluation time: fetch it once from {metrics.ALEXNET_URL} and either put it at "
        f"{str(no_weight_files / metrics.ALEXNET_FILENAME)!r} (the torch hub cache), set "
        f"${metrics.ALEXNET_ENV}=/path/to/{metrics.ALEXNET_FILENAME}, or pass `lpips_backbone_path / --lpips-backbone`."
    )
    start = f"LPIPS (AlexNet backbone) needs the weight file '{metrics.ALEXNET_FILENAME}', which was not found at"
    for path, looked_in, where in [
        (None, "the torch hub cache", no_weight_files / metrics.ALEXNET_FILENAME),
        (tmp_path / "mine.pth", "`lpips_backbone_path / --lpips-backbone`", tmp_path / "mine.pth"),
        (tmp_path, "`lpips_backbone_path / --lpips-backbone`", tmp_path / metrics.ALEXNET_FILENAME),
    ]:
        message = f"{start} {str(where)!r} (looked in {looked_in}). {advice}"
        with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
            metrics.resolve_weights_file(path, **spec)
    monkeypatch.setenv(metrics.ALEXNET_ENV, str(tmp_path / "env.pth"))
    message = f"{start} {str(tmp_path / 'env.pth')!r} (looked in ${metrics.ALEXNET_ENV}). {advice}"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        metrics.resolve_weights_file(None, **spec)


def test_pytorch_fid_backbone_without_the_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pytorch_fid" else find_spec(name, *a)
    )
    message = (
        "`fid_backbone='pytorch-fid'` needs the pytorch-fid package: `pip install pytorch-fid` (or "
        "`pip install truepose[eval]`)."
    )
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        metrics.check_fid_backbone("pytorch-fid", 2048)


def test_lpips_loads_quietly_onto_the_device_and_names_a_wrong_file(alexnet_weights, tmp_path, capsys):
    model = metrics.load_lpips(alexnet_weights, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert capsys.readouterr() == ("", "")  # lpips' "Setting up [LPIPS] ..." lines stay off
    torch.save(torch.zeros(1), tmp_path / "tensor.pth")
    message = f"LPIPS backbone: {str(tmp_path / 'tensor.pth')!r} is not a state dict (got Tensor)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.load_lpips(tmp_path / "tensor.pth")
    torch.save({"classifier.1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    message = (
        f"{str(tmp_path / 'other.pth')!r} is not a torchvision AlexNet state dict: key 'features.0.weight' is missing "
        f"(expected the file from {metrics.ALEXNET_URL})."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.load_lpips(tmp_path / "other.pth")


class RunsCode:
    """A pickle that would call `print` when unpickled with arbitrary objects allowed."""

    def __reduce__(self):
        return print, ("unpickling ran code",)


def test_weight_files_are_unpickled_as_tensors_only(tmp_path, capsys):
    import pickle

    torch.save({"weight": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        metrics.load_inception(tmp_path / "evil.pth")
    assert "unpickling ran code" not in capsys.readouterr().out
