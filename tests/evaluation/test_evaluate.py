"""Tests of `truepose evaluate` on a tiny DeepFashion fixture with the tiny random pipeline (CPU)."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from truepose.data import pair_seed
from truepose.evaluation import evaluate as ev
from truepose.evaluation import metrics, weights

SIZE = (64, 64)  # the tiny pipeline's native size; SSIM's 51x51 window still fits


class CountingPipeline:
    """Wraps a pipeline and records which pairs (by generator seed) it generated."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.seeds: list[int] = []
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.seeds += [g.initial_seed() for g in kwargs["generator"]]
        self.calls.append(kwargs)
        return self.pipeline(**kwargs)


@pytest.fixture(scope="module")
def tiny_pipe():
    from truepose.testing import tiny_pipeline

    return tiny_pipeline(seed=0)


def test_pair_seeds_are_stable_per_name_and_base_seed():
    from truepose.evaluation import seed_of

    assert seed_of is pair_seed  # one seed of a pair, for training and evaluation
    for key, seed in (("a___b", 0), ("a___b#1", 1)):  # base seed 0: the name's own seed
        digest = hashlib.sha256(key.encode()).digest()
        assert pair_seed("a___b", seed=seed) == int.from_bytes(digest[:8], "little") & (2**63 - 1)
    assert pair_seed("a___b") == pair_seed("a___b") != pair_seed("a___c")
    assert pair_seed("a___b", seed=1) != pair_seed("a___b")
    assert 0 <= pair_seed("x") < 2**63


def test_save_image_atomic(tmp_path):
    path = tmp_path / "x.png"
    ev.save_image_atomic(np.full((4, 4, 3), 7, np.uint8), path)
    assert os.listdir(tmp_path) == ["x.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(path)), 7)


def test_evaluate_resumes_and_is_deterministic(
    deepfashion_root, tiny_pipe, alexnet_weights, inception_weights, pooled_colour, tmp_path, monkeypatch
):
    from truepose.data import DeepFashionDataset

    dataset = DeepFashionDataset(deepfashion_root, split="test", image_size=SIZE)
    names = ev._pair_names(dataset)
    assert names == [dataset[i]["name"] for i in range(len(dataset))]
    assert len(names) == 4
    out = tmp_path / "run"
    common = dict(
        size=SIZE,
        num_inference_steps=1,
        guidance_scale=2.0,
        lpips_backbone_path=alexnet_weights,
        inception_weights_path=inception_weights,
        fid_cache_dir=tmp_path / "cache",
    )

    # An interrupted run: only the first 2 pairs.
    pipe = CountingPipeline(tiny_pipe)
    first = ev.evaluate(pipe, deepfashion_root, out, limit=2, batch_size=2, compute_fid=False, **common)
    assert first["num_images"] == 2 and first["fid"] is None
    assert sorted(pipe.seeds) == sorted(pair_seed(n) for n in names[:2])
    call = pipe.calls[0]
    assert call["height"] == call["width"] == 64 and call["num_inference_steps"] == 1
    assert call["source_parsing"] is not None and call["parsing_label_map"] == "atr"  # DATA_ROOT/parsing by default
    assert call["target_pose"][0].shape == (18, 3)
    generated = out / ev.GENERATED_DIRNAME
    mtimes = {p.name: p.stat().st_mtime_ns for p in generated.iterdir()}
    assert sorted(mtimes) == sorted(ev.image_filename(n) for n in names[:2])

    # The full run generates only the missing pairs, then scores all of them (FID against DATA_ROOT/train_highres,
    # forced: 4 images are far fewer than a meaningful 2048-d FID needs).
    monkeypatch.setattr(weights, "load_inception", lambda *args, **kwargs: pooled_colour)
    pipe = CountingPipeline(tiny_pipe)
    results = ev.evaluate(pipe, deepfashion_root, out, batch_size=2, force_fid=True, **common)
    assert sorted(pipe.seeds) == sorted(pair_seed(n) for n in names[2:])
    assert {name: (generated / name).stat().st_mtime_ns for name in mtimes} == mtimes
    assert results["num_images"] == 4 and results["fid"] is not None
    assert results["fid_real_set"] == "training images" and results["fid_real_dir"].endswith("train_highres")
    assert results["fid_backbone"] == "torchvision" and results["fid_reliable"] is False
    for key in ("lpips", "ssim", "ssim_256", "psnr"):
        assert np.isfinite(results[key])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["results"]["lpips"] == results["lpips"]
    assert "The paper's numbers at 512x352 are not shown" in (out / "metrics.md").read_text()

    # Ground-truth copies are the target images at the evaluation size, with their parsing maps (DATA_ROOT/parsing);
    # the identity metrics per region are scored on them.
    gt = np.asarray(Image.open(out / ev.GROUND_TRUTH_DIRNAME / ev.image_filename(names[0])))
    np.testing.assert_array_equal(gt, metrics.resize_to_uint8(dataset[0]["target_image"], SIZE))
    with_parsing = DeepFashionDataset(
        deepfashion_root, split="test", image_size=SIZE, parsing_dir=deepfashion_root / "parsing"
    )
    for i, name in enumerate(names):
        parsing = np.asarray(Image.open(out / ev.GROUND_TRUTH_PARSING_DIRNAME / ev.image_filename(name)))
        np.testing.assert_array_equal(parsing, with_parsing[i]["target_parsing"])
    assert results["regions_label_map"] == "atr" and results["regions"]["face"]["num_images"] == 4
    assert "| face | 4 |" in (out / "metrics.md").read_text()

    # Nothing left to do: no pipeline call at all.
    pipe = CountingPipeline(tiny_pipe)
    ev.evaluate(pipe, deepfashion_root, out, compute_fid=False, **common)
    assert pipe.calls == []

    # Per-pair seeds: another batch size gives the same images.
    other = tmp_path / "other"
    ev.evaluate(tiny_pipe, deepfashion_root, other, limit=2, batch_size=1, compute_fid=False, **common)
    for name in mtimes:
        a = np.asarray(Image.open(generated / name), dtype=np.int16)
        b = np.asarray(Image.open(other / ev.GENERATED_DIRNAME / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1

    # Resuming with other generation settings is refused.
    with pytest.raises(ValueError, match="num_inference_steps"):
        ev.evaluate(tiny_pipe, deepfashion_root, out, **{**common, "num_inference_steps": 3})
    with pytest.raises(ValueError, match="limit"):
        ev.evaluate(tiny_pipe, deepfashion_root, out, limit=0, **common)


def test_evaluate_checks_weights_and_fid_size_before_generating(
    deepfashion_root, tiny_pipe, alexnet_weights, inception_weights, no_weight_files, tmp_path
):
    pipe = CountingPipeline(tiny_pipe)
    common = dict(size=SIZE, num_inference_steps=1, fid_cache_dir=tmp_path / "cache")
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError) as error:
        ev.evaluate(pipe, deepfashion_root, out, fid_backbone="pytorch-fid", **common)
    assert metrics.ALEXNET_FILENAME in str(error.value) and metrics.PYTORCH_FID_FILENAME in str(error.value)
    with pytest.raises(FileNotFoundError, match=metrics.INCEPTION_FILENAME):
        ev.evaluate(pipe, deepfashion_root, out, lpips_backbone_path=alexnet_weights, **common)
    # All weights there, but 4 test pairs cannot give a meaningful FID: refused, still before generating.
    weights = dict(lpips_backbone_path=alexnet_weights, inception_weights_path=inception_weights)
    with pytest.raises(ValueError, match="at least 2049 images per set"):
        ev.evaluate(pipe, deepfashion_root, out, **weights, **common)
    assert pipe.calls == [] and not (out / ev.GENERATED_DIRNAME).exists()


def test_evaluate_parses_targets_with_the_pipeline_parser(deepfashion_root, tmp_path):
    """Without target parsing maps in the data set, the pipeline's parser makes them for the region metrics."""
    from truepose.conditioning import parse_images
    from truepose.data import DeepFashionDataset
    from truepose.testing import tiny_pipeline

    pipe = tiny_pipeline(seed=0, with_parser=True)
    dataset = DeepFashionDataset(deepfashion_root, split="test", image_size=SIZE)  # no parsing_dir
    assert dataset[0]["target_parsing"] is None
    out = tmp_path / "run"
    common = dict(size=SIZE, num_inference_steps=1, compute_fid=False, compute_lpips=False, dataset=dataset)
    results = ev.evaluate(pipe, deepfashion_root, out, limit=2, **common)
    assert results["regions_label_map"] == "atr" and results["regions"] is not None
    for name in ev._pair_names(dataset)[:2]:
        gt = Image.open(out / ev.GROUND_TRUTH_DIRNAME / ev.image_filename(name)).convert("RGB")
        parsing = np.asarray(Image.open(out / ev.GROUND_TRUTH_PARSING_DIRNAME / ev.image_filename(name)))
        np.testing.assert_array_equal(parsing, parse_images(pipe.parser, pipe.parser_processor, [gt])[0])
    # Neither a parsing map nor a parser: the region metrics are skipped, the rest is scored.
    other = ev.evaluate(CountingPipeline(pipe), deepfashion_root, tmp_path / "other", limit=1, **common)
    assert other["regions"] is None and not (tmp_path / "other" / ev.GROUND_TRUTH_PARSING_DIRNAME).exists()


def test_evaluate_cli_loads_a_saved_pipeline(deepfashion_root, tiny_pipe, alexnet_weights, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_pipe.save_pretrained(model_dir)
    out = tmp_path / "cli"
    argv = ["--model", str(model_dir), "--data-root", str(deepfashion_root), "--output-dir", str(out)]
    argv += ["--size", "64x64", "--steps", "1", "--limit", "1", "--no-fid", "--lpips-backbone", alexnet_weights]
    assert ev.main(argv) == 0
    assert len(list((out / ev.GENERATED_DIRNAME).glob("*.png"))) == 1
    assert json.loads((out / "metrics.json").read_text())["results"]["num_images"] == 1
    assert "The paper's numbers at 512x352 are not shown: this run is at 64x64" in capsys.readouterr().out
