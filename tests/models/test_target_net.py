"""TargetNet's per-layer references against hand-made masks, and the person-mask rule (issue 14).

The rule: a token is on the person (HPFA weight ``1 + delta``) when at least half of its area is on the person
(fraction >= 0.5). docs/design.md and `TargetNet.prepare_reference` state the same rule."""

import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from truepose.models import (
    CAAAttnProcessor,
    HPFAAttnProcessor,
    SourceReference,
    TargetNet,
    capture_reference_tokens,
    token_grid,
)
from truepose.models.attention import CrossAttnProcessor, CrossAttnProcessor2_0
from truepose.models.target_net import (
    _REFERENCE_BANK,
    _record_input,
    parameters_after_reference_capture,
)
from truepose.testing import tiny_components

SIGMA, DELTA = 0.3, 0.6


LOG_ON, LOG_OFF = math.log(1 + DELTA), math.log(SIGMA)


@pytest.fixture(scope="module")
def nets():
    components = tiny_components(hpfa_sigma=SIGMA, hpfa_delta=DELTA)
    return components["source_unet"], components["target_unet"]


def make_reference(source_unet, person_mask, region_masks, dropped) -> SourceReference:
    batch = person_mask.shape[0]
    with torch.no_grad():
        bank = capture_reference_tokens(
            source_unet, torch.randn(batch, 4, 32, 32), torch.randn(batch, 1, source_unet.config.cross_attention_dim)
        )
    return SourceReference(
        bank=bank,
        person_mask=person_mask,
        region_masks=region_masks,
        region_embeds=torch.randn(batch, region_masks.shape[1], 32),
        source_dropped=torch.tensor(dropped),
    )


def partly_covered_mask() -> torch.Tensor:
    """64x64 person mask whose first 2x2-pixel tokens (32x32 grid) hold 0, 1, 2, 3, 4 person pixels."""
    mask = torch.zeros(64, 64)
    for token, pixels in enumerate([0, 1, 2, 3, 4]):
        for p in range(pixels):
            mask[p // 2, 2 * token + p % 2] = 1
    # 16x16 grid (4x4-pixel tokens), row 4: tokens with 7, 8 and 9 of 16 pixels.
    for token, pixels in zip((0, 1, 2), (7, 8, 9)):
        for p in range(pixels):
            mask[16 + p // 4, 4 * token + p % 4] = 1
    return mask


def layer_name(layers, layer):
    return next(name for name, value in layers.items() if value is layer)


def _conditions(source_unet, target_unet, seed=0):
    """Sample, timestep, CLIP states, pose features and per-layer references of a batch of 2 (row 1 sees no source)."""
    g = torch.Generator().manual_seed(seed)
    sample, embeds = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 1, 32, generator=g)
    pose = torch.randn(2, target_unet.config.block_out_channels[0], 32, 32, generator=g)
    person = torch.zeros(2, 1, 64, 64)
    person[:, :, 8:56, 16:48] = 1
    reference = make_reference(source_unet, person, torch.ones(2, 1, 64, 64), [False, False])
    return sample, embeds, pose, target_unet.prepare_reference(reference, (32, 32))


def test_person_rule_on_partly_covered_tokens(nets):
    source_unet, target_unet = nets
    mask = partly_covered_mask()
    reference = make_reference(source_unet, mask[None, None], torch.zeros(1, 1, 64, 64), [False])
    layers = target_unet.prepare_reference(reference, (32, 32))
    sizes = {layer.tokens.shape[1] for layer in layers.values()}
    assert sizes == {32 * 32, 16 * 16}  # both grids are exercised
    for layer in layers.values():
        assert layer.log_weight.shape == (1, layer.tokens.shape[1]) and layer.log_weight.dtype == torch.float32
        if layer.tokens.shape[1] == 32 * 32:
            # 0/4 and 1/4 background; 2/4 (exactly half), 3/4 and 4/4 person.
            expected = [LOG_OFF, LOG_OFF, LOG_ON, LOG_ON, LOG_ON]
            torch.testing.assert_close(layer.log_weight[0, :5], torch.tensor(expected))
            assert (layer.log_weight[0, 5:32] == LOG_OFF).all()
        else:
            row = layer.log_weight[0].view(16, 16)[4]
            torch.testing.assert_close(row[:3], torch.tensor([LOG_OFF, LOG_ON, LOG_ON]))  # 7/16, 8/16, 9/16
            assert (row[3:] == LOG_OFF).all()
        torch.testing.assert_close(layer.log_weight.exp().unique(), torch.tensor([SIGMA, 1 + DELTA]))


def test_region_indicators_valid_regions_and_dropped_rows(nets):
    source_unet, target_unet = nets
    person = torch.zeros(3, 1, 64, 64)
    person[:, :, :32] = 1
    regions = torch.zeros(3, 2, 64, 64)
    regions[:, 0, 0, 0] = 1  # one pixel: 1/4 of token 0 at 32x32, 1/16 at 16x16
    regions[:, 1, :, 62:] = 1  # the last two columns: the last column of tokens, 1/1 and 2/4
    regions[1, 1] = 0  # row 1 lacks region 1 (padding)
    reference = make_reference(source_unet, person, regions, [True, False, True])
    layers = target_unet.prepare_reference(reference, (32, 32))
    for layer in layers.values():
        n = layer.tokens.shape[1]
        side = int(math.isqrt(n))
        indicators = layer.region_indicators
        assert indicators.shape == (3, n, 2)
        assert indicators[0, 0, 0] == pytest.approx(1 / (64 // side) ** 2)
        assert indicators[0, 1:, 0].abs().sum() == 0
        last_column = indicators[0].view(side, side, 2)[:, -1, 1]
        assert torch.allclose(last_column, torch.full((side,), 2 / (64 // side)))
        assert indicators[0].view(side, side, 2)[:, :-1, 1].abs().sum() == 0
        # Region 0 present everywhere, region 1 absent in row 1; dropped rows (0 and 2) see no region.
        assert layer.region_valid.tolist() == [[False, False], [True, False], [False, False]]
        assert layer.num_source_free_rows == 1  # only the leading dropped row
        assert torch.isinf(layer.log_weight[[0, 2]]).all() and (layer.log_weight[[0, 2]] < 0).all()
        assert torch.isfinite(layer.log_weight[1]).all()
        assert (
            layer.region_embeds is reference.region_embeds
            and layer.tokens is reference.bank[layer_name(layers, layer)]
        )


def test_layers_outside_hpfa_blocks_get_plain_reference_weights():
    components = tiny_components(hpfa_sigma=SIGMA, hpfa_delta=DELTA, hpfa_blocks=("up_blocks",))
    source_unet, target_unet = components["source_unet"], components["target_unet"]
    person = torch.zeros(2, 1, 64, 64)
    person[:, :, 20:40, 20:40] = 1
    reference = make_reference(source_unet, person, torch.ones(2, 1, 64, 64), [True, True])
    layers = target_unet.prepare_reference(reference, (32, 32))
    assert {name.split(".")[0] for name in layers} == {"down_blocks", "mid_block", "up_blocks"}
    for layer in layers.values():
        assert layer.num_source_free_rows == 2
        assert torch.isneginf(layer.log_weight).all()
    reference.source_dropped = torch.tensor([False, False])
    for name, layer in target_unet.prepare_reference(reference, (32, 32)).items():
        assert layer.num_source_free_rows == 0
        if name.startswith("up_blocks"):
            assert layer.log_weight.unique().tolist() == pytest.approx([LOG_OFF, LOG_ON])
        else:
            assert (layer.log_weight == 0).all()


def test_source_reference_rows():
    reference = SourceReference(
        bank={"a": torch.arange(6.0).view(3, 2, 1)},
        person_mask=torch.arange(3.0).view(3, 1, 1, 1),
        region_masks=torch.arange(3.0).view(3, 1, 1, 1) + 10,
        region_embeds=torch.arange(3.0).view(3, 1, 1) + 20,
        source_dropped=torch.tensor([False, True, False]),
    )
    picked = reference.index_select(torch.tensor([2, 0, 0]))
    assert picked.bank["a"][:, :, 0].tolist() == [[4, 5], [0, 1], [0, 1]]
    assert picked.person_mask.flatten().tolist() == [2, 0, 0]
    assert picked.region_masks.flatten().tolist() == [12, 10, 10]
    assert picked.region_embeds.flatten().tolist() == [22, 20, 20]
    assert picked.source_dropped.tolist() == [False, False, False]
    doubled = reference.with_unconditional()  # [unconditional ; conditional]
    assert doubled.person_mask.flatten().tolist() == [0, 1, 2, 0, 1, 2]
    assert doubled.bank["a"].shape == (6, 2, 1) and doubled.region_embeds.flatten().tolist() == [20, 21, 22] * 2
    assert doubled.source_dropped.tolist() == [True, True, True, False, True, False]


def test_token_grid_halves_rounding_up():
    assert token_grid((32, 32), 1024) == (32, 32)
    assert token_grid((32, 32), 256) == (16, 16)
    assert token_grid((5, 7), 35) == (5, 7)
    assert token_grid((5, 7), 12) == (3, 4)  # ceil(5 / 2), ceil(7 / 2)
    assert token_grid((5, 7), 4) == (2, 2)
    assert token_grid((5, 7), 1) == (1, 1)
    with pytest.raises(ValueError, match=r"No UNet resolution of latent size \(5, 7\) has 6 tokens"):
        token_grid((5, 7), 6)


def test_settings_are_checked_and_stored(nets):
    _, target_unet = nets
    with pytest.raises(ValueError, match="Need hpfa_sigma > 0, hpfa_delta > -1 and caa_top_k >= 0"):
        target_unet.set_truepose_settings(hpfa_sigma=0.0)
    with pytest.raises(ValueError, match="hpfa_delta > -1"):
        target_unet.set_truepose_settings(hpfa_delta=-1.0)
    with pytest.raises(ValueError, match="caa_top_k >= 0"):
        target_unet.set_truepose_settings(caa_top_k=-1)
    target_unet.set_truepose_settings(caa_top_k=1)
    assert target_unet.config.caa_top_k == 1 and target_unet.config.hpfa_sigma == SIGMA
    assert all(p.top_k == 1 for p in target_unet.truepose_processors.values() if hasattr(p, "top_k"))
    target_unet.set_truepose_settings(hpfa_sigma=0.5, hpfa_delta=0.0, caa_top_k=2)
    assert (target_unet.config.hpfa_sigma, target_unet.config.hpfa_delta, target_unet.config.caa_top_k) == (0.5, 0, 2)
    target_unet.set_truepose_settings(hpfa_sigma=SIGMA, hpfa_delta=DELTA)


def test_forward_adds_pose_features_to_conv_in_and_forgets_them(nets):
    """``pose_features`` are added to ``conv_in``'s output for that call only; references go to the processors."""
    source_unet, target_unet = nets
    g = torch.Generator().manual_seed(0)
    sample, embeds = torch.randn(2, 4, 32, 32, generator=g), torch.randn(2, 1, 32, generator=g)
    pose = torch.randn(2, target_unet.config.block_out_channels[0], 32, 32, generator=g)
    plain_unet = UNet2DConditionModel.forward
    with torch.no_grad():
        plain = plain_unet(target_unet, sample, 3, embeds).sample
        handle = target_unet.conv_in.register_forward_hook(lambda module, args, output: output + pose)
        try:
            expected = plain_unet(target_unet, sample, 3, embeds).sample
        finally:
            handle.remove()
        out = target_unet(sample, 3, embeds, pose_features=pose, return_dict=False)[0]
        torch.testing.assert_close(out, expected)
        assert not torch.allclose(out, plain)
        torch.testing.assert_close(target_unet(sample, 3, embeds).sample, plain)  # nothing left behind
        # With references: the UNet's forward with them in `cross_attention_kwargs` (and the pose on `conv_in`), with
        # source keys/values projected or not.
        reference = make_reference(source_unet, torch.ones(2, 1, 64, 64), torch.ones(2, 1, 64, 64), [False, True])
        layers = target_unet.prepare_reference(reference, (32, 32))
        handle = target_unet.conv_in.register_forward_hook(lambda module, args, output: output + pose)
        try:
            expected = plain_unet(target_unet, sample, 3, embeds, cross_attention_kwargs={"layer_references": layers})
        finally:
            handle.remove()
        expected = expected.sample
        out = target_unet(sample, 3, embeds, pose_features=pose, layer_references=layers).sample
        torch.testing.assert_close(out, expected)
        assert not torch.allclose(out, plain)
        projected = target_unet.project_source(layers)
        assert set(projected) == set(layers) and all(p.source_key is not None for p in projected.values())
        torch.testing.assert_close(target_unet(sample, 3, embeds, layer_references=projected).sample,
                                   target_unet(sample, 3, embeds, layer_references=layers).sample)  # fmt: skip
    assert all(not hasattr(p, "reference") for p in target_unet.truepose_processors.values())


def test_set_default_attn_processor_keeps_hpfa_and_caa():
    target_unet = tiny_components(randomize_new_layers=True)["target_unet"]
    before = target_unet.attn_processors
    target_unet.set_default_attn_processor()
    after = target_unet.attn_processors
    assert set(after) == set(before)
    for name, processor in after.items():
        if name.endswith("attn1.processor"):
            assert processor is before[name]  # trained CAA weights kept
        else:
            assert type(processor) is CrossAttnProcessor  # diffusers' AttnProcessor, quiet about TruePose's arguments
            assert isinstance(processor, AttnProcessor)
    replaced = next(name for name in after if name.endswith("attn1.processor") and name.startswith("up_blocks"))
    target_unet.set_attn_processor({**after, replaced: AttnProcessor()})
    target_unet.set_default_attn_processor()
    fresh = target_unet.attn_processors[replaced]
    assert isinstance(fresh, HPFAAttnProcessor) and fresh is not before[replaced]
    assert type(fresh) is type(before[replaced]) and fresh.top_k == target_unet.config.caa_top_k
    assert all(p.abs().sum() == 0 for n, p in fresh.named_parameters() if "caa_to_out" in n)  # CAA starts as identity


def test_parameters_after_reference_capture_are_those_without_gradient(nets):
    """The listed SourceNet parameters are exactly those the captured tokens do not depend on (no gradient)."""
    source_unet, _ = nets
    source_unet.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(0)
    bank = capture_reference_tokens(
        source_unet, torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 1, 32, generator=g)
    )
    sum(tokens.square().sum() for tokens in bank.values()).backward()
    unused = {name for name, p in source_unet.named_parameters() if p.grad is None}
    source_unet.zero_grad(set_to_none=True)
    assert unused and len(unused) < len(list(source_unet.parameters()))
    assert set(parameters_after_reference_capture(source_unet)) == unused
    assert "conv_out.weight" in unused and "conv_in.weight" not in unused


def test_processors_built_from_the_config():
    """CAA on ``caa_blocks`` (sized by each layer, with the configured top-k), HPFA on the other self-attention
    layers, the UNet's own processors on cross-attention."""
    unet = tiny_components()["source_unet"]
    target_unet = TargetNet.from_unet(unet, caa_blocks=("up_blocks", "mid_block"), caa_top_k=3, region_embed_dim=24)
    for name, processor in target_unet.attn_processors.items():
        attn = target_unet.get_submodule(name.removesuffix(".processor"))
        if not name.endswith("attn1.processor"):
            assert type(unet.attn_processors[name]) is AttnProcessor2_0
            assert type(processor) is CrossAttnProcessor2_0 and isinstance(processor, AttnProcessor2_0)
        elif name.startswith(("up_blocks", "mid_block")):
            assert isinstance(processor, CAAAttnProcessor)
            assert (processor.num_heads, processor.top_k) == (attn.heads, 3)
            assert processor.caa_to_q.weight.shape == (attn.inner_dim, attn.inner_dim)
            assert processor.caa_to_k.weight.shape == (attn.inner_dim, 24)
        else:
            assert type(processor) is HPFAAttnProcessor


def test_from_unet_keeps_weights_dtype_and_refuses_other_weights():
    unet = tiny_components()["source_unet"].double()
    target_unet = TargetNet.from_unet(unet)
    assert target_unet.dtype == torch.float64
    for key, value in unet.state_dict().items():
        torch.testing.assert_close(target_unet.state_dict()[key], value)
    unet.register_buffer("extra", torch.zeros(1))
    with pytest.raises(
        ValueError, match=r"UNet weights do not match TargetNet: missing \[.*\], unexpected \['extra'\]"
    ):
        TargetNet.from_unet(unet)


def test_forward_with_references_gives_them_to_every_processor_for_that_call(nets):
    """References alone (no pose) change the output; the result equals giving each processor its reference by hand."""
    source_unet, target_unet = nets
    sample, embeds, _, layers = _conditions(source_unet, target_unet)
    processors = target_unet.attn_processors

    def by_hand(processor, reference):
        return lambda attn, hidden_states, **kwargs: processor(
            attn, hidden_states, layer_references={processor.name: reference}
        )

    with torch.no_grad():
        plain = target_unet(sample, 3, embeds).sample
        out = target_unet(sample, 3, embeds, layer_references=layers).sample
        target_unet.set_attn_processor(
            {name: by_hand(p, layers[name]) if name in layers else p for name, p in processors.items()}
        )
        try:
            expected = UNet2DConditionModel.forward(target_unet, sample, 3, embeds).sample
        finally:
            target_unet.set_attn_processor(processors)
    torch.testing.assert_close(out, expected)
    assert (out - plain).abs().max() > 1e-4


@pytest.mark.parametrize("conditions", ["none", "pose", "references"])
def test_forward_passes_diffusers_arguments_through(nets, conditions):
    """``return_dict=False`` gives a tuple on every path (plain, with pose, with references)."""
    source_unet, target_unet = nets
    sample, embeds, pose, layers = _conditions(source_unet, target_unet)
    kwargs = {"pose": {"pose_features": pose}, "references": {"layer_references": layers}, "none": {}}[conditions]
    with torch.no_grad():
        out = target_unet(sample, 3, embeds, return_dict=False, **kwargs)
    assert isinstance(out, tuple) and out[0].shape == sample.shape


def test_pose_features_in_another_dtype_are_cast(nets):
    source_unet, target_unet = nets
    sample, embeds, pose, _ = _conditions(source_unet, target_unet)
    with torch.no_grad():
        expected = target_unet(sample, 3, embeds, pose_features=pose).sample
        out = target_unet(sample, 3, embeds, pose_features=pose.double()).sample
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_recorders_are_called_by_the_named_processors_of_that_call_only(nets):
    source_unet, target_unet = nets
    sample, embeds, _, layers = _conditions(source_unet, target_unet)
    names = sorted(target_unet.truepose_processors)
    calls = []
    recorders = {"recorders": {names[0]: lambda *args: calls.append(args)}}
    with torch.no_grad():
        recorded = target_unet(sample, 3, embeds, layer_references=layers, cross_attention_kwargs=recorders).sample
        assert len(calls) == 1 and len(calls[0]) == 6
        torch.testing.assert_close(calls[0][5], layers[names[0]].log_weight)
        plain = target_unet(sample, 3, embeds, layer_references=layers).sample
    assert len(calls) == 1 and all(not hasattr(p, "recorder") for p in target_unet.truepose_processors.values())
    torch.testing.assert_close(recorded, plain)  # recording changes nothing
    with pytest.raises(ValueError, match=r"^No HPFA/CAA processors named \['nope'\]; the processors are \["):
        target_unet(sample, 3, embeds, cross_attention_kwargs={"recorders": {"nope": print}})


def test_caa_top_k_zero_is_allowed(nets):
    """``caa_top_k=0`` turns CAA off (documented), it is not an error."""
    _, target_unet = nets
    target_unet.set_truepose_settings(caa_top_k=0)
    try:
        assert all(p.top_k == 0 for p in target_unet.truepose_processors.values() if isinstance(p, CAAAttnProcessor))
    finally:
        target_unet.set_truepose_settings(caa_top_k=2)
    TargetNet(**{**dict(target_unet.config), "caa_top_k": 0})


def test_capture_defaults_to_timestep_0_and_leaves_a_working_unet():
    source_unet = tiny_components()["source_unet"]
    g = torch.Generator().manual_seed(0)
    latents, states = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 1, 32, generator=g)
    with torch.no_grad():
        plain = source_unet(latents, 0, states).sample
        default = capture_reference_tokens(source_unet, latents, states)
        at_0 = capture_reference_tokens(source_unet, latents, states, timestep=0)
        at_500 = capture_reference_tokens(source_unet, latents, states, timestep=500)
        again = capture_reference_tokens(source_unet, latents, states)
        after = source_unet(latents, 0, states).sample
    assert set(default) == set(at_0) == set(again) and len(default) > 0
    for name in default:
        torch.testing.assert_close(default[name], at_0[name])
        torch.testing.assert_close(again[name], at_0[name])
    assert any(not torch.allclose(at_500[name], at_0[name]) for name in default)
    torch.testing.assert_close(after, plain)  # the capture left nothing behind
    # SourceNet keeps diffusers' processors; the recording hooks are installed once (however many captures) on the
    # self-attention layers, and record nothing outside a capture.
    assert all(type(p) is AttnProcessor2_0 for p in source_unet.attn_processors.values())
    hooked = {
        name: [h for h in module._forward_pre_hooks.values() if getattr(h, "func", None) is _record_input]
        for name, module in source_unet.named_modules()
    }
    assert {name for name, hooks in hooked.items() if hooks} == {n.removesuffix(".processor") for n in default}
    assert all(len(hooks) <= 1 for hooks in hooked.values())
    assert _REFERENCE_BANK.get() is None


def test_set_default_attn_processor_builds_new_processors_in_the_model_dtype():
    target_unet = tiny_components()["target_unet"].double()
    name = next(n for n, p in target_unet.truepose_processors.items() if isinstance(p, CAAAttnProcessor))
    target_unet.set_attn_processor({**target_unet.attn_processors, name: AttnProcessor()})
    target_unet.set_default_attn_processor()
    fresh = target_unet.attn_processors[name]
    assert isinstance(fresh, CAAAttnProcessor)
    assert {p.dtype for p in fresh.parameters()} == {torch.float64}


def test_a_new_target_net_adds_pose_features_only_when_given():
    """Built fresh (not from the module's shared fixture): the ``conv_in`` hook is installed and starts empty."""
    target_unet = tiny_components()["target_unet"]
    g = torch.Generator().manual_seed(1)
    sample, embeds = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 1, 32, generator=g)
    pose = torch.randn(1, target_unet.config.block_out_channels[0], 32, 32, generator=g)
    with torch.no_grad():
        plain = UNet2DConditionModel.forward(target_unet, sample, 3, embeds).sample
        torch.testing.assert_close(target_unet(sample, 3, embeds).sample, plain)
        assert (target_unet(sample, 3, embeds, pose_features=pose).sample - plain).abs().max() > 1e-4


def test_truepose_processors_are_the_hpfa_and_caa_processors(nets):
    _, target_unet = nets
    processors = target_unet.truepose_processors
    assert processors and all(isinstance(p, HPFAAttnProcessor) for p in processors.values())
    assert any(isinstance(p, CAAAttnProcessor) for p in processors.values())
    assert any(not isinstance(p, CAAAttnProcessor) for p in processors.values())
