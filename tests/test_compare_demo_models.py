"""examples/compare_demo_models.py: the paired differences it reports are the differences of its two models' own
per-pair scores (checked here against `examples/evaluate_demo_model.py`'s table row of each model)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from truepose.demo import SHIPPED_MODEL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


def run_example(name: str, *arguments: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_paired_differences_match_each_models_table_row(tiny_model, tmp_path):
    common = ["--num_pairs", "3", "--steps", "2", "--batch_size", "2"]
    output = tmp_path / "comparison.json"
    run = run_example("compare_demo_models.py", str(SHIPPED_MODEL), tiny_model, *common, "--output", str(output))
    comparison = json.loads(output.read_text())
    assert "| garment_delta_e |" in run.stdout

    for model, side in ((str(SHIPPED_MODEL), "first"), (tiny_model, "second")):
        table = tmp_path / f"{side}.json"
        run_example("evaluate_demo_model.py", "--model", model, *common, "--output", str(table))
        row = json.loads(table.read_text())["results"]["TruePose (guidance 2.0)"]
        for column, scores in comparison["columns"].items():
            # the same images up to float rounding: the table's script switches settings between its variants
            assert scores[side] == pytest.approx(row[column], abs=1e-3)
    for scores in comparison["columns"].values():
        assert scores["difference"] == pytest.approx(scores["first"] - scores["second"], abs=1e-9)
        assert scores["standard_error"] > 0 and 0 <= scores["first_wins"] <= 3
    assert comparison["columns"]["ssim"]["difference"] > 0  # the trained model beats random weights


def test_one_pair_is_refused():
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "compare_demo_models.py"), "a", "b", "--num_pairs", "1"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "--num_pairs must be at least 2" in run.stderr
