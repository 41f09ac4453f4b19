"""What a metrics run shows and writes (`truepose.evaluation.report`, `progress`): the Markdown table, the JSON and
table files, the progress bars."""

import json
import math

from truepose.evaluation import metrics, progress
from truepose.evaluation.report import format_region_markdown


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
              "fid_real_set": "train", "fid_real_dir": "/data/train", "size": "512x352"}  # fmt: skip
    table = metrics.format_markdown(forced)
    lines = table.splitlines()
    assert lines[0] == "| Method | Size | FID ↓ | LPIPS ↓ | SSIM ↑ | SSIM_256 σ=1.2 ↑ | PSNR ↑ |"
    assert lines[2] == "| This run | 512x352 | 1.000 (backbone unknown, 64-d) | n/a | n/a | n/a | n/a |"
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


def test_write_results_writes_the_json_and_the_table_beside_it(tmp_path):
    results = {"TruePose": {"ssim": 0.5, "fid": math.nan}}
    json_path, markdown_path = metrics.write_results(results, tmp_path / "new" / "folder" / "scores.json")
    assert (json_path, markdown_path) == (tmp_path / "new/folder/scores.json", tmp_path / "new/folder/scores.md")
    payload = {"results": results, "paper": metrics.PAPER_RESULTS}
    assert json_path.read_text() == json.dumps(payload, indent=2, allow_nan=True) + "\n"  # NaN: not computed
    assert markdown_path.read_text() == metrics.format_markdown(results, name="This run")
    metrics.write_results(results, json_path, name="Ours")
    assert markdown_path.read_text() == metrics.format_markdown(results, name="Ours")


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


def test_the_paper_row_only_at_its_size_and_resized_inputs_are_named():
    """At 256x176 the paper's 512x352 numbers are left out with a note (not comparable), and the inputs that were
    resized are named with their sizes."""
    results = {"size": "256x176", "num_images": 3, "ssim": 0.5, "resized_from": {"generated": {"96x64": 3}}}
    table = metrics.format_markdown(results)
    assert "TruePose (paper)" not in table and len(table.split("\n\n")[0].splitlines()) == 3
    assert "Resized (bicubic) to 256x176 before scoring: generated images 3 at 96x64." in table
    assert (
        "The paper's numbers at 512x352 are not shown: this run is at 256x176, and scores at different sizes" in table
    )
    at_paper_size = metrics.format_markdown({**results, "size": "512x352", "resized_from": {}})
    assert "| TruePose (paper) | 512x352 |" in at_paper_size and "Resized" not in at_paper_size
    assert "not shown" not in at_paper_size
