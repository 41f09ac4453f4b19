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


def test_dry_run_on_cpu(tmp_path):
    output = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT), "--output_dir", str(output), "--dry_run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]

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
