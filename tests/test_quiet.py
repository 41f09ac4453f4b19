"""Quiet by default: loading and running the shipped model, or a checkpoint the library saved, prints nothing.

The load and generation run in a fresh interpreter with Python's default warning filters (what a user sees), so its
stderr is the real one: no test-runner capture, no earlier import having printed a once-only note already.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys, tempfile

    import diffusers
    import torch
    from truepose import TruePosePipeline
    from truepose.demo import SHIPPED_MODEL
    from truepose.testing import tiny_person, TINY_KEYPOINTS

    # the pipeline's own progress bars are progress, not noise: off here so stderr must stay empty; transformers'
    # weight-loading bar stays on (it must not appear inside a pipeline load)
    diffusers.utils.logging.disable_progress_bar()
    source, parsing = tiny_person(0)
    pipe = TruePosePipeline.from_pretrained(SHIPPED_MODEL)
    pipe.set_progress_bar_config(disable=True)
    pipe(source, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=2)
    with tempfile.TemporaryDirectory() as folder:
        pipe.save_pretrained(folder)
        TruePosePipeline.from_pretrained(folder, dtype=torch.float16).to("cpu")  # fp16 runs on CPU, slowly
    print("done")
    """
)


def test_loading_and_generating_the_shipped_model_prints_nothing_to_stderr():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr == ""
