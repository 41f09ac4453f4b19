"""benchmarks/bench_train.py: a short run of two variants times every step and writes its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_run_times_each_variant(tmp_path):
    output = tmp_path / "result.json"
    arguments = ["--steps", "3", "--warmup", "1", "--batch_size", "2", "--variants", "eager", "heads16_channels_last"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), *arguments, "--output", str(output)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    assert json.loads(output.read_text()) == printed
    assert list(printed["variants"]) == ["eager", "heads16_channels_last"]
    for result in printed["variants"].values():
        assert 0 < result["step_s"] < result["first_step_with_loading_s"]
    assert "| heads16_channels_last |" in run.stdout
