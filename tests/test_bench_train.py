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


def test_variants_time_both_attention_layouts_whatever_the_model_has(tmp_path):
    """`eager` and the other plain variants run 16 heads per layer (the layout of the model shipped until
    2026-12-04), the `heads16` ones heads of 16 channels, from a model of either layout."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_train
    finally:
        sys.path.pop(0)
    from truepose.demo import SHIPPED_MODEL

    expected = {bench_train.sixteen_heads: [16, 16, 16], bench_train.heads_of_16_channels: [3, 6, 6]}
    for heads, attention_head_dim in expected.items():
        name = heads.__name__
        start = bench_train.with_attention_heads(str(SHIPPED_MODEL), str(tmp_path / f"start-{name}"), lambda c: 1)
        folder = bench_train.with_attention_heads(start, str(tmp_path / name), heads)
        for unet in ("source_unet", "target_unet"):
            config = json.loads((Path(folder) / unet / "config.json").read_text())
            assert config["block_out_channels"] == [48, 96, 96]
            assert config["attention_head_dim"] == attention_head_dim
