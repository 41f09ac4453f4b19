"""`torch.compile` of TargetNet inside the pipeline (the README's recipe): one graph (``fullgraph``), the same images
as eager, no recompilation between calls (new per-call references each time)."""

import torch
from pipeline_calls import generate_person

from truepose.testing import tiny_pipeline


def test_compiled_target_net_generates_the_eager_images():
    pipe = tiny_pipeline()
    eager = [generate_person(pipe, seed=seed) for seed in (0, 1)]
    torch._dynamo.reset()
    pipe.target_unet.compile(fullgraph=True, dynamic=False)  # fullgraph: a graph break would raise
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled = [generate_person(pipe, seed=seed) for seed in (0, 1)]
    for eager_image, compiled_image in zip(eager, compiled):
        assert abs(compiled_image - eager_image).max() < 1e-4
