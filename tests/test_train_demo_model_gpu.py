"""examples/train_demo_model_gpu.py: its --dry_run on CPU runs every stage (VAE probe and training, the evaluation
probe, the timed first `truepose train` launch and its resumed second one, shipping, the evaluation) and writes a
loadable shipped folder, results.json and the figure."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import torch

from truepose import TruePosePipeline

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_demo_model_gpu.py"
ROWS = [
    "VAE reconstruction of the target (ceiling)",
    "copy the source image",
    "TruePose (guidance 2.0)",
    "HPFA off at inference (sigma 1, delta 0)",
]
COLUMNS = {"ssim", "psnr", "person_ssim", "person_psnr", "garment_delta_e", "garment_edge_ssim"}
STAGES = {"start_up", "vae_probe", "vae", "eval_pairs_drawn", "eval_probe", "unet_probe", "unet", "ship", "evaluation"}
RATES = {"vae_s_per_step", "eval_s_per_batch", "eval_score_s_per_pair", "eval_estimate_s", "unet_s_per_step"}


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT), *arguments], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    """The output folder of a `--dry_run`."""
    output = tmp_path_factory.mktemp("gpu") / "run"
    run = run_script("--output_dir", str(output), "--dry_run")
    assert run.returncode == 0, run.stderr[-3000:]
    return output


def test_dry_run_on_cpu(dry_run):
    output = dry_run

    pipe = TruePosePipeline.from_pretrained(output / "shipped")
    assert pipe.vae.config.latent_channels == 8
    assert tuple(pipe.target_unet.config.block_out_channels) == (16, 32, 32)
    card = (output / "shipped" / "README.md").read_text()
    assert "--vae_steps 4 --train_steps 5" in card and "--dry_run\n" in card  # a flag, not "--dry_run True"

    results = json.loads((output / "results.json").read_text())
    assert results["device"].startswith("CPU") and results["torch"] and results["within_budget"] is True
    assert results["budget_s"] == 480
    assert results["recipe"]["unet_launches"] == [3, 2]  # the timed launch, then the resumed one
    assert (results["recipe"]["vae_steps"], results["recipe"]["train_steps"]) == (4, 5)
    assert set(results["wall_s"]) == STAGES | {"total"}
    assert results["wall_s"]["total"] >= sum(results["wall_s"][stage] for stage in STAGES)
    assert RATES <= set(results["rates"])
    for value in [*results["wall_s"].values(), *results["rates"].values(), results["shipped_mb"]]:
        assert math.isfinite(value) and value >= 0
    evaluation = results["evaluation"]
    assert (evaluation["num_pairs"], evaluation["steps"], evaluation["resolution"]) == (8, 2, [96, 64])
    assert list(evaluation["results"]) == ROWS
    for row, scores in evaluation["results"].items():
        assert set(scores) == COLUMNS, row
        assert all(math.isfinite(value) for value in scores.values()), row

    with PIL.Image.open(output / "pairs.png") as figure:
        assert figure.size == (2 * 4 * 64, 2 * 8 * 96)  # 8 rows of 4 panels, drawn at twice the size


def test_hpfa_off_of_trains_the_papers_ablation_of_a_run(dry_run, tmp_path):
    """`--hpfa_off_of RUN`: RUN's initial weights with HPFA off, RUN's step count, and a per-pair comparison with RUN's
    shipped model whose scores are RUN's own TruePose row (the same pairs and generators)."""
    output = tmp_path / "ablation"
    run = run_script("--output_dir", str(output), "--dry_run", "--hpfa_off_of", str(dry_run))
    assert run.returncode == 0, run.stderr[-3000:]

    hpfa_init, off_init = (TruePosePipeline.from_pretrained(folder / "init") for folder in (dry_run, output))
    assert (hpfa_init.target_unet.config.hpfa_sigma, hpfa_init.target_unet.config.hpfa_delta) != (1.0, 0.0)
    for name, component in hpfa_init.components.items():
        if isinstance(component, torch.nn.Module):
            other = off_init.components[name].state_dict()
            assert all(torch.equal(value, other[key]) for key, value in component.state_dict().items()), name
    shipped = TruePosePipeline.from_pretrained(output / "shipped")
    assert (shipped.target_unet.config.hpfa_sigma, shipped.target_unet.config.hpfa_delta) == (1.0, 0.0)
    card = (output / "shipped" / "README.md").read_text()
    assert f"--hpfa_off_of {dry_run}" in card and "--train_steps" not in card and "HPFA off (sigma 1, delta 0)" in card

    results = json.loads((output / "results.json").read_text())
    ran = json.loads((dry_run / "results.json").read_text())
    assert results["recipe"]["train_steps"] == ran["recipe"]["train_steps"] == 5
    assert results["recipe"]["unet_launches"] == [5] and results["recipe"]["hpfa_off_of"] == str(dry_run)
    assert "vae" not in results["wall_s"] and "unet_probe" not in results["wall_s"]
    rows = results["evaluation"]["results"]
    hpfa_row = f"HPFA in training ({dry_run / 'shipped'}, the run this ablates)"
    assert list(rows) == [*ROWS[:3], hpfa_row]
    assert rows[hpfa_row] == pytest.approx(ran["evaluation"]["results"]["TruePose (guidance 2.0)"], rel=1e-5)
    comparison = results["comparison"]
    assert (comparison["first"], comparison["second"]) == (str(dry_run / "shipped"), str(output / "shipped"))
    assert set(comparison["columns"]) == COLUMNS
    for column, scores in comparison["columns"].items():
        assert scores["first"] == pytest.approx(rows[hpfa_row][column], rel=1e-6)
        assert scores["second"] == pytest.approx(rows["TruePose (guidance 2.0)"][column], rel=1e-6)
        assert scores["difference"] == pytest.approx(scores["first"] - scores["second"], abs=1e-9)
        assert scores["standard_error"] >= 0 and 0 <= scores["first_wins"] <= 8


def test_hpfa_off_of_refuses_step_counts_and_unfinished_runs(dry_run, tmp_path):
    run = run_script("--output_dir", str(tmp_path / "a"), "--dry_run", "--hpfa_off_of", str(dry_run), "--train_steps", "9")  # fmt: skip
    assert run.returncode == 2 and "--hpfa_off_of takes its step counts from the run it ablates" in run.stderr
    run = run_script("--output_dir", str(tmp_path / "b"), "--dry_run", "--hpfa_off_of", str(tmp_path))
    assert (
        run.returncode == 2 and f"--hpfa_off_of {str(tmp_path)!r} is not a finished run of this script" in run.stderr
    )
