import math

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from truepose.analysis import GROUPS, attention_heatmap, attention_shares, group_masks, plot_attention_shares
from truepose.conditioning.parsing import LABEL_MAPS
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

LAYER = "up_blocks.1.attentions.0.transformer_blocks.0.attn1"
STEP = 1


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def person():
    return tiny_person(0)


@pytest.fixture(scope="module")
def recorded(pipe, person):
    """Shares at step 1 of 2, plus the layer's input and reference captured independently at that step."""
    source, parsing = person
    captured, step = {}, {"index": -1}

    def count(module, args):
        step["index"] += 1

    def grab(module, args, kwargs):
        if step["index"] == STEP:
            captured["hidden_states"] = args[0].detach().clone()
            captured["reference"] = kwargs["layer_references"][LAYER + ".processor"]

    handles = [
        pipe.target_unet.register_forward_pre_hook(count),
        pipe.target_unet.get_submodule(LAYER).register_forward_pre_hook(grab, with_kwargs=True),
    ]
    try:
        shares = attention_shares(
            pipe,
            source,
            TINY_KEYPOINTS,
            parsing,
            num_inference_steps=2,
            timestep_index=STEP,
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        for handle in handles:
            handle.remove()
    return shares, captured


@torch.no_grad()
def explicit_attention(attn, hidden_states, reference):
    """Float64 attention matrix of the conditional rows `(rows, heads, queries, target + source keys)`."""
    weight = {name: getattr(attn, name).weight.double() for name in ("to_q", "to_k", "to_v")}
    hidden, tokens = hidden_states.double(), reference.tokens.double()
    context = torch.cat([hidden, tokens], dim=1)

    def heads(x):
        return x.view(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2)

    query, keys = heads(F.linear(hidden, weight["to_q"])), heads(F.linear(context, weight["to_k"]))
    bias = F.pad(reference.log_weight.double(), (hidden.shape[1], 0))[:, None, None, :]
    probs = (query @ keys.transpose(-1, -2) / math.sqrt(query.shape[-1]) + bias).softmax(dim=-1)
    conditional = torch.isfinite(reference.log_weight).any(dim=1)
    return probs[conditional]


def test_shares_sum_to_one_per_layer(recorded, pipe):
    shares, _ = recorded
    attn1_layers = [n.removesuffix(".processor") for n in pipe.target_unet.attn_processors if "attn1" in n]
    assert sorted(shares["layers"]) == sorted(attn1_layers)
    for layer in [*shares["layers"].values(), shares["mean"]]:
        assert sum(layer[group] for group in GROUPS) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= layer[group] <= 1 for group in GROUPS)
        assert layer["source"] == pytest.approx(1 - layer["target"], abs=1e-12)
        # the ATR regions cover the person: region shares add up to body + clothing + face
        person = layer["body"] + layer["clothing"] + layer["face"]
        assert sum(layer["regions"].values()) == pytest.approx(person, abs=1e-5)
    assert shares["regions"] == ("hair", "upper_clothes", "pants", "face", "arms")
    assert shares["steps"] == [STEP] and len(shares["timesteps"]) == 1


def test_shares_equal_an_explicit_float64_attention_matrix(recorded, pipe, person):
    shares, captured = recorded
    _, parsing = person
    attn = pipe.target_unet.get_submodule(LAYER)
    probs = explicit_attention(attn, captured["hidden_states"], captured["reference"])
    num_target = captured["hidden_states"].shape[1]
    grid = (32, 32)  # the tiny UNet's first level: 32x32 latents
    assert num_target == grid[0] * grid[1]

    atr = LABEL_MAPS["atr"]
    masks = {
        "body": np.isin(parsing, atr.groups["body"]),
        "clothing": np.isin(parsing, atr.groups["clothing"]),
        "face": np.isin(parsing, atr.groups["face"]),
        "background": parsing == 0,
        "upper_clothes": parsing == 4,
        "arms": np.isin(parsing, (14, 15)),
    }
    source_probs = probs[..., num_target:]
    expected = {"target": probs[..., :num_target].sum(-1).mean().item()}
    for name, mask in masks.items():
        fraction = F.adaptive_avg_pool2d(torch.from_numpy(mask).double()[None, None], grid).flatten()
        expected[name] = (source_probs @ fraction).mean().item()

    layer = shares["layers"][LAYER]
    for name in ("target", "body", "clothing", "face", "background"):
        assert layer[name] == pytest.approx(expected[name], abs=1e-5), name
    for name in ("upper_clothes", "arms"):
        assert layer["regions"][name] == pytest.approx(expected[name], abs=1e-5), name
    # what each source token receives, for the heatmap
    received = source_probs.mean(dim=(0, 1, 2)).reshape(grid).numpy()
    np.testing.assert_allclose(shares["received"][LAYER], received, atol=1e-7)
    assert shares["received"][LAYER].sum() == pytest.approx(layer["source"], abs=1e-5)


def test_group_masks_partition_the_image(person):
    _, parsing = person
    masks = group_masks(parsing, "atr")
    assert masks.shape == (4, *parsing.shape)
    np.testing.assert_array_equal(masks.sum(0), 1)


def test_average_over_steps_is_the_mean_of_single_steps(pipe, person, recorded):
    source, parsing = person
    at_step_1, _ = recorded

    def shares(index):
        return attention_shares(
            pipe,
            source,
            TINY_KEYPOINTS,
            parsing,
            num_inference_steps=2,
            timestep_index=index,
            generator=torch.Generator().manual_seed(0),
            heatmap_layers=None,
        )

    both, at_step_0 = shares(None), shares(0)
    assert both["steps"] == [0, 1] and at_step_0["steps"] == [0] and both["received"] == {}
    for group in GROUPS:
        expected = (at_step_0["mean"][group] + at_step_1["mean"][group]) / 2
        assert both["mean"][group] == pytest.approx(expected, abs=1e-9)


def test_pipeline_is_left_as_found(pipe, person, recorded):
    source, parsing = person
    assert "prepare_reference" not in vars(pipe.target_unet)
    assert not any(m._forward_pre_hooks for m in pipe.target_unet.modules())
    # recorders travel with the call: no processor holds one, or any other per-call attribute
    assert all(
        not hasattr(p, "recorder") and not hasattr(p, "reference")
        for p in pipe.target_unet.truepose_processors.values()
    )
    with pytest.raises(ValueError, match=r"^No HPFA/CAA processors named \['down_blocks.9.attn1.processor'\]"):
        pipe(source, TINY_KEYPOINTS, source_parsing=parsing, num_inference_steps=1,
             cross_attention_kwargs={"recorders": {"down_blocks.9.attn1.processor": print}})  # fmt: skip
    with pytest.raises(ValueError, match="timestep_index"):
        attention_shares(pipe, source, TINY_KEYPOINTS, parsing, num_inference_steps=2, timestep_index=2)


def test_plots_write_png_files(recorded, person, tmp_path):
    shares, _ = recorded
    source, _ = person
    chart = plot_attention_shares(shares, tmp_path / "shares.png")
    heatmap = attention_heatmap(shares, source, tmp_path / "heatmap.png")
    for path, image in ((tmp_path / "shares.png", chart), (tmp_path / "heatmap.png", heatmap)):
        with PIL.Image.open(path) as saved:
            assert saved.format == "PNG" and saved.size == image.size
    assert heatmap.height >= 256


def test_generation_is_interrupted_after_the_last_recorded_step(pipe, person):
    source, parsing = person
    calls = []
    handle = pipe.target_unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        shares = attention_shares(
            pipe, source, TINY_KEYPOINTS, parsing, num_inference_steps=4, timestep_index=1, heatmap_layers=None
        )
    finally:
        handle.remove()
    assert len(calls) == 2 and shares["steps"] == [1] and len(shares["timesteps"]) == 1


def test_attention_shares_steps_and_masks():
    from truepose.analysis import _analysis_masks, _recorded_steps
    from truepose.conditioning import get_label_map

    assert _recorded_steps(None, 3) == [0, 1, 2]
    assert _recorded_steps([-1, 0, 2], 3) == [0, 2]
    with pytest.raises(ValueError, match=r"^`timestep_index` 3 is outside the 3 steps\.$"):
        _recorded_steps(3, 3)
    _, parsing = tiny_person()
    regions, masks = _analysis_masks(parsing, get_label_map("atr"))
    assert masks.shape == (5 + len(regions), *parsing.shape) and masks.dtype == np.float32
    np.testing.assert_array_equal(masks[:4].sum(0), 1)  # the groups partition the image
    np.testing.assert_array_equal(masks[4], 1)  # every source token
