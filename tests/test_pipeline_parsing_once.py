"""A call parses and checks each source's parsing map once: `as_parsing_batch` and `person_mask` run once per call
(per source), in the image pipeline and the animation pipeline alike."""

import sys

import numpy as np
import pytest

import truepose.conditioning.parsing as parsing_module
from truepose import TruePoseAnimationPipeline
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline


@pytest.fixture
def counts(monkeypatch):
    """How often `person_mask` and `as_parsing_batch` run, wherever truepose imported them."""
    counts = {"person_mask": 0, "as_parsing_batch": 0}
    for name, function in (
        ("person_mask", parsing_module.person_mask),
        ("as_parsing_batch", parsing_module.as_parsing_batch),
    ):

        def counted(*args, _name=name, _function=function, **kwargs):
            counts[_name] += 1
            return _function(*args, **kwargs)

        for module in [m for key, m in sys.modules.items() if key.startswith("truepose")]:
            if getattr(module, name, None) is function:
                monkeypatch.setattr(module, name, counted)
    return counts


def test_a_call_parses_each_source_once(counts):
    pipe = tiny_pipeline()
    source, parsing = tiny_person(0)
    pipe([source, source], TINY_KEYPOINTS, source_parsing=[parsing, parsing], num_inference_steps=1)
    assert counts == {"person_mask": 2, "as_parsing_batch": 1}


def test_an_animation_parses_its_source_once(counts):
    animation = TruePoseAnimationPipeline(**tiny_pipeline().components)
    animation.set_progress_bar_config(disable=True)
    source, parsing = tiny_person(0)
    animation(
        source, np.stack([TINY_KEYPOINTS] * 3), source_parsing=parsing, num_inference_steps=1, frames_per_batch=2
    )
    assert counts == {"person_mask": 1, "as_parsing_batch": 1}
