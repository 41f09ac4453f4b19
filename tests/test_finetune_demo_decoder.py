"""examples/finetune_demo_decoder.py: only the decoder moves (the latent space the UNets learnt stays), the copied
pipelines carry the new VAE and nothing else new, and a finished run resumes without redoing steps."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderDC
from safetensors.torch import load_file

from truepose.demo import SHIPPED_MODEL

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "finetune_demo_decoder.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
WEIGHTS = "diffusion_pytorch_model.safetensors"


def run_script(output_dir: Path) -> str:
    arguments = ["--vae", str(SHIPPED_MODEL / "vae"), "--output_dir", str(output_dir), "--steps", "3"]
    arguments += ["--batch_size", "2", "--learning_rate", "1e-3", "--pipelines", str(SHIPPED_MODEL)]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_only_the_decoder_changes_and_the_pipelines_carry_it(tmp_path):
    stdout = run_script(tmp_path)
    assert "held-out PSNR" in stdout
    before = AutoencoderDC.from_pretrained(SHIPPED_MODEL / "vae", torch_dtype=torch.float32).state_dict()
    after = load_file(tmp_path / "vae" / WEIGHTS)
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("decoder.") for name in changed)
    assert any(name.startswith("decoder.conv_in") for name in changed)

    copy = tmp_path / "assets-truepose-synthetic"  # the pipeline folder's parent and name
    copied_vae = load_file(copy / "vae" / WEIGHTS)
    for name in after:
        assert torch.equal(copied_vae[name], after[name].half())
    for component in ("source_unet", "target_unet", "pose_encoder"):
        copied, shipped = load_file(copy / component / WEIGHTS), load_file(SHIPPED_MODEL / component / WEIGHTS)
        assert copied.keys() == shipped.keys()
        assert all(torch.equal(copied[name], shipped[name]) for name in shipped)


def test_a_finished_run_resumes_without_new_steps(tmp_path):
    run_script(tmp_path)
    first = load_file(tmp_path / "vae" / WEIGHTS)
    stdout = run_script(tmp_path)
    assert "resumed at step 3" in stdout and "decoder step" not in stdout  # no step was run again
    second = load_file(tmp_path / "vae" / WEIGHTS)
    assert all(torch.equal(first[name], second[name]) for name in first)
