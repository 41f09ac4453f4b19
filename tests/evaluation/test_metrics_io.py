"""The metrics' input/output code case by case: where the FID cache lives, which device scores, the parsing maps a
run needs, the files a run writes and the options `truepose metrics` passes on."""

import json
import math
import re

import pytest
import torch

from truepose.evaluation import metrics


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
