"""benchmarks/bench_vs_sd15.py: its --tiny run on CPU (both sides timed, the JSON written), and the attention floor
against a hand count of one layer's q.k and p.v FLOPs."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_vs_sd15.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_vs_sd15", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_on_cpu(tmp_path, bench):
    output = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT), "--tiny", "--profile", "--output", str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    printed = json.loads(run.stdout.strip().splitlines()[-1])
    assert json.loads(output.read_text()) == printed
    assert (printed["size"], printed["steps"], printed["device"], printed["dtype"]) == ("tiny", 2, "cpu", "float32")

    plain, truepose = printed["plain"], printed["truepose"]
    assert plain["unet_calls"] == 2 and truepose["targetnet_calls"] == 2 and truepose["sourcenet_calls"] == 1
    assert plain["total_s"] > 0 and plain["step_s"] > 0
    assert all(plain["parts_s"][name] > 0 for name in ("unet", "vae_decode"))
    assert truepose["total_s"] > 0 and truepose["targetnet_step_s"] > 0
    for name in ("targetnet", "sourcenet", "vae_encode", "vae_decode", "clip", "pose_encoder"):
        assert truepose["parts_s"][name] > 0, name
    ratios = printed["truepose_over_plain"]
    assert ratios["end_to_end"] == pytest.approx(truepose["total_s"] / plain["total_s"])
    assert ratios["step"] == pytest.approx(truepose["targetnet_step_s"] / plain["step_s"])

    assert 1 < printed["attention_floor"] < 2
    flops = printed["floor_flops"]
    layers = flops["self_attention_layers"]
    assert len(layers) == 16  # SD-1.5: 2 per down block x 3, 1 in the mid block, 3 per up block x 3
    assert printed["attention_floor"] == pytest.approx(bench.attention_floor(flops["plain_step"], layers))
    assert flops["extra_attention"] == bench.extra_attention_flops(layers)
    assert flops["plain_step_one_token_context"] < flops["plain_step"]  # cross-attention over 1 token, not 77
    expected = (flops["plain_step_one_token_context"] + flops["extra_attention"]) / flops["plain_step"]
    assert printed["attention_floor_one_token_context"] == pytest.approx(expected)
    assert printed["attention_time_floor"] == pytest.approx(1 + printed["extra_attention_s"] / plain["step_s"])
    assert printed["gflop_per_s"]["plain_step"] == pytest.approx(flops["plain_step"] / plain["step_s"] / 1e9)
    assert "plain SD-1.5" in run.stdout and "Attention floor" in run.stdout and "time floor" in run.stdout

    by_op = {row["op"]: row for row in printed["profile_ms"]}
    differences = [row["truepose_ms"] - row["plain_ms"] for row in printed["profile_ms"]]
    assert differences == sorted(differences, reverse=True)
    attention = by_op["aten::_scaled_dot_product_flash_attention_for_cpu"]
    assert attention["plain_ms"] > 0 and attention["truepose_ms"] > 0
    cat = by_op["aten::cat"]  # + [own ; source] keys and values in every conditional row's self-attention
    assert cat["truepose_calls"] >= cat["plain_calls"] + 2 * len(layers) and cat["truepose_ms"] > 0
    assert "Profile of one step by operator" in run.stdout


def test_extra_attention_time_grows_with_the_source(bench, monkeypatch):
    """The timed extra attention is the conditional row's cost of the source keys: many source keys cost more than
    few; layers of one shape are timed once (a warm-up and ``repeats`` calls) and counted once each."""
    cpu, sync = torch.device("cpu"), lambda: None
    layer = {"tokens": 64, "heads": 2, "head_dim": 8}
    few = bench.time_extra_attention([{**layer, "source_tokens": 8}], cpu, torch.float32, sync, repeats=5)
    many = bench.time_extra_attention([{**layer, "source_tokens": 16384}], cpu, torch.float32, sync, repeats=5)
    assert many > 10 * max(few, 1e-5)

    calls = []
    library_call = bench.fused_reference_attention
    monkeypatch.setattr(bench, "fused_reference_attention", lambda *args: calls.append(args) or library_call(*args))
    layers = [{**layer, "source_tokens": 16}, {**layer, "source_tokens": 16}, {**layer, "source_tokens": 32}]
    bench.time_extra_attention(layers, cpu, torch.float32, sync, repeats=3)
    assert [args[3].shape[2] for args in calls] == [16] * 4 + [32] * 4


def test_floor_matches_a_hand_count_for_one_layer(bench):
    tokens, source_tokens, heads, head_dim = 6, 5, 2, 4
    layers = [{"tokens": tokens, "source_tokens": source_tokens, "heads": heads, "head_dim": head_dim}]

    # by hand: every (head, query, source key) pair is one q.k dot product and one p.v weighted sum of head_dim
    # multiply-adds each, for the one conditional row
    multiply_adds = 0
    for _head in range(heads):
        for _query in range(tokens):
            for _key in range(source_tokens):
                multiply_adds += head_dim  # q . k
                multiply_adds += head_dim  # p * v, summed over the source keys
    assert bench.extra_attention_flops(layers) == 2 * multiply_adds == 960

    # the same through torch's FLOP counter on the actual products of the conditional row
    query = torch.randn(1, heads, tokens, head_dim)
    source_key = torch.randn(1, heads, source_tokens, head_dim)
    source_value = torch.randn(1, heads, source_tokens, head_dim)
    with FlopCounterMode(display=False) as counter:
        probabilities = (query @ source_key.transpose(-1, -2)).softmax(-1)
        probabilities @ source_value
    assert bench.extra_attention_flops(layers) == counter.get_total_flops()

    plain = 10_000
    assert bench.attention_floor(plain, layers) == (plain + 960) / plain
    assert bench.extra_attention_flops(layers, conditional_rows=2) == 2 * 960
    # the source tokens default to the layer's own tokens (the source image has the target's size)
    assert bench.extra_attention_flops([{"tokens": 6, "heads": 2, "head_dim": 4}]) == 2 * 2 * 2 * 6 * 6 * 4
