"""The HPFA, CAA and cross-attention processors inside diffusers' `Attention`, against stock attention and explicit
computations: references by name, source-free rows, cached source keys/values, the recorder, diffusers'
`Attention` options, CAA's parameters and region choice, and the rows a projected reference keeps
(`LayerReference.select_rows`)."""

import dataclasses
import logging
import math

import pytest
import torch
from attention_references import EMBED, LQ, LS, B, R, explicit_fused_attention, explicit_weighted_attention
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from truepose.models import (
    CAAAttnProcessor,
    HPFAAttnProcessor,
    LayerReference,
)
from truepose.models.attention import CrossAttnProcessor, CrossAttnProcessor2_0


def _reference(dim=16, regions=R, embed_dim=8, dropped=False):
    g = torch.Generator().manual_seed(3)
    return LayerReference(
        tokens=torch.randn(B, LS, dim, generator=g),
        log_weight=torch.full((B, LS), float("-inf")) if dropped else torch.randn(B, LS, generator=g),
        region_indicators=(torch.rand(B, LS, regions, generator=g) > 0.5).float(),
        region_embeds=torch.randn(B, regions, embed_dim, generator=g),
        region_valid=torch.full((B, regions), not dropped),
    )


def _random_reference(dim=16, seed=3, source_key=False, num_source_free_rows=0, batch=B):
    g = torch.Generator().manual_seed(seed)
    reference = LayerReference(
        tokens=torch.randn(batch, LS, dim, generator=g),
        log_weight=torch.randn(batch, LS, generator=g),
        region_indicators=(torch.rand(batch, LS, R, generator=g) > 0.4).float(),
        region_embeds=torch.randn(batch, R, EMBED, generator=g),
        region_valid=torch.rand(batch, R, generator=g) > 0.2,
        num_source_free_rows=num_source_free_rows,
    )
    if source_key:
        reference = dataclasses.replace(
            reference, source_key=torch.randn(batch, 2, LS, 8, generator=g), source_value=torch.randn(batch, 2, LS, 8)
        )
    return reference


def _attention(dim=16, heads=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads, **kwargs)


def run(processor, attn, hidden, reference=None, **kwargs):
    """One call of ``processor`` with ``reference`` passed as TargetNet passes it (by the processor's name)."""
    return processor(
        attn, hidden, layer_references=None if reference is None else {processor.name: reference}, **kwargs
    )


def explicit_caa(caa, attn, hidden, reference):
    """CAA written out per sample: HPFA output, lowest-average valid regions, cross-attention to their embeddings."""
    hpfa_out = run(HPFAAttnProcessor("layer"), attn, hidden, reference).double()
    heads = lambda x: x.view(x.shape[0], -1, 2, 8).transpose(1, 2)  # noqa: E731
    _, mass = explicit_fused_attention(
        heads(attn.to_q(hidden)),
        heads(attn.to_k(hidden)),
        heads(attn.to_v(hidden)),
        heads(attn.to_k(reference.tokens)),
        heads(attn.to_v(reference.tokens)),
        reference.log_weight,
        reference.region_indicators,
    )
    average = mass.mean(dim=(1, 2)) / reference.region_indicators.sum(1).double().clamp_min(1e-6)
    rows = []
    for b in range(hidden.shape[0]):
        order = [r for r in average[b].argsort().tolist() if reference.region_valid[b, r]]
        chosen = order[: caa.top_k]
        if not chosen:
            rows.append(hpfa_out[b])
            continue
        embeds = reference.region_embeds[b, chosen].double()
        keys, values = embeds @ caa.caa_to_k.weight.double().T, embeds @ caa.caa_to_v.weight.double().T
        queries = hpfa_out[b] @ caa.caa_to_q.weight.double().T
        per_head = []
        for h in range(caa.num_heads):
            part = slice(8 * h, 8 * h + 8)
            probs = torch.softmax(queries[:, part] @ keys[:, part].T / math.sqrt(8), dim=-1)
            per_head.append(probs @ values[:, part])
        out = torch.cat(per_head, -1) @ caa.caa_to_out.weight.double().T + caa.caa_to_out.bias.double()
        rows.append(hpfa_out[b] + out)
    return torch.stack(rows)


def test_processor_without_reference_is_stock_attention():
    attn = _attention()
    hidden = torch.randn(B, LQ, 16)
    stock = AttnProcessor2_0()(attn, hidden)
    torch.testing.assert_close(HPFAAttnProcessor("layer")(attn, hidden), stock)
    torch.testing.assert_close(CAAAttnProcessor("layer", 16, 8, 2)(attn, hidden), stock)


def test_hpfa_processor_matches_explicit_reference():
    attn, reference = _attention(), _reference()
    hidden = torch.randn(B, LQ, 16)
    processor = HPFAAttnProcessor("layer")
    out = run(processor, attn, hidden, reference)

    split = lambda x: x.view(B, -1, 2, 8).transpose(1, 2)  # noqa: E731
    expected, _ = explicit_weighted_attention(
        split(attn.to_q(hidden)),
        split(attn.to_k(hidden)),
        split(attn.to_v(hidden)),
        split(attn.to_k(reference.tokens)),
        split(attn.to_v(reference.tokens)),
        reference.log_weight.exp(),
    )
    expected = attn.to_out[0](expected.transpose(1, 2).reshape(B, LQ, 16).float())
    assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize(
    "processor, stock", [(CrossAttnProcessor2_0(), AttnProcessor2_0()), (CrossAttnProcessor(), AttnProcessor())]
)
def test_cross_attention_processors_are_stock_attention_and_take_truepose_arguments_quietly(processor, stock):
    """Cross-attention with a mask, and a spatial norm fed by ``temb``: every argument reaches the stock processor;
    TargetNet's per-call arguments are accepted through `Attention.forward` without diffusers' warning."""
    attn = _attention(cross_attention_dim=12)
    g = torch.Generator().manual_seed(4)
    hidden, context = torch.randn(B, LQ, 16, generator=g), torch.randn(B, 5, 12, generator=g)
    mask = torch.zeros(B, 1, 5)
    mask[0, 0, 3:] = float("-inf")
    expected = stock(attn, hidden, context, mask)
    torch.testing.assert_close(processor(attn, hidden, context, mask, layer_references={}, recorders={}), expected)
    per_call = {"layer_references": {"layer": _random_reference()}, "recorders": {"layer": print}}
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("diffusers").addHandler(handler)
    try:
        attn.set_processor(stock)
        torch.testing.assert_close(attn(hidden, context, mask, **per_call), expected)
        assert "are not expected by" in records[-1].getMessage()  # diffusers' warning, for the stock processor
        records.clear()
        attn.set_processor(processor)
        torch.testing.assert_close(attn(hidden, context, mask, **per_call), expected)
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert records == []

    normed = _attention(dim=32, spatial_norm_dim=4)  # GroupNorm(32 groups) inside
    pixels, temb = torch.randn(B, 32, 4, 4, generator=g), torch.randn(B, 4, 2, 2, generator=g)
    torch.testing.assert_close(processor(normed, pixels, temb=temb), stock(normed, pixels, temb=temb))


@pytest.mark.parametrize("num_source_free_rows", [1, B])
def test_source_free_rows_skip_the_source_with_the_same_result(num_source_free_rows):
    """Leading rows run plain self-attention: equal to attending to the source with a ``-inf`` bias (HPFA and CAA)."""
    attn, hidden = _attention(), torch.randn(B, LQ, 16)
    biased = _reference()
    biased.log_weight[:num_source_free_rows] = float("-inf")
    biased.region_valid[:num_source_free_rows] = False
    split = dataclasses.replace(biased, num_source_free_rows=num_source_free_rows)
    caa = CAAAttnProcessor("layer", 16, 8, num_heads=2, top_k=2)
    torch.nn.init.normal_(caa.caa_to_out.weight)
    for processor in (HPFAAttnProcessor("layer"), caa):
        expected = run(processor, attn, hidden, biased)
        torch.testing.assert_close(run(processor, attn, hidden, split), expected, atol=1e-6, rtol=1e-5)
    stock = AttnProcessor2_0()(attn, hidden)
    torch.testing.assert_close(run(caa, attn, hidden, split)[:num_source_free_rows], stock[:num_source_free_rows])


@pytest.mark.parametrize("num_source_free_rows", [0, 1])
def test_source_keys_values_projected_once_equal_projected_per_call(num_source_free_rows):
    """``project_source`` caches ``to_k``/``to_v`` of the source tokens; HPFA and CAA give the same output."""
    attn, hidden = _attention(), torch.randn(B, LQ, 16)
    reference = dataclasses.replace(_reference(), num_source_free_rows=num_source_free_rows)
    caa = CAAAttnProcessor("layer", 16, 8, num_heads=2, top_k=2)
    torch.nn.init.normal_(caa.caa_to_out.weight)
    for processor in (HPFAAttnProcessor("layer"), caa):
        cached = processor.project_source(attn, reference)
        assert cached.source_key.shape == (B, 2, LS, 8) and reference.source_key is None
        expected = run(processor, attn, hidden, reference)
        torch.testing.assert_close(run(processor, attn, hidden, cached), expected, atol=1e-6, rtol=1e-5)
        # the cache is really read: other cached values change the output
        other = dataclasses.replace(cached, source_value=cached.source_value + 1)
        assert not torch.allclose(
            run(processor, attn, hidden, other)[num_source_free_rows:], expected[num_source_free_rows:]
        )


def test_one_head_with_a_source_free_row():
    """`num_source_free_rows` counts rows (dim 0), whatever the number of heads."""
    attn, hidden = _attention(heads=1), torch.randn(B, LQ, 16)
    biased = _random_reference()
    biased.log_weight[:1] = float("-inf")
    processor = HPFAAttnProcessor("layer")
    expected = run(processor, attn, hidden, biased)
    split = dataclasses.replace(biased, num_source_free_rows=1)
    torch.testing.assert_close(run(processor, attn, hidden, split), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cached", [False, True])
def test_recorder_gets_the_rows_that_see_the_source(cached):
    attn, hidden = _attention(), torch.randn(B, LQ, 16)
    processor = HPFAAttnProcessor("layer")
    reference = dataclasses.replace(_random_reference(), num_source_free_rows=1)
    passed = processor.project_source(attn, reference) if cached else reference
    records = []
    record = lambda *args: records.append(args)  # noqa: E731
    run(processor, attn, hidden, passed, recorders={"other layer": print, "layer": record})
    heads = lambda x: x.view(x.shape[0], -1, 2, 8).transpose(1, 2)  # noqa: E731
    expected = [heads(attn.to_q(hidden)), heads(attn.to_k(hidden)), heads(attn.to_v(hidden))]
    expected += [heads(attn.to_k(reference.tokens)), heads(attn.to_v(reference.tokens)), reference.log_weight]
    assert len(records) == 1 and len(records[0]) == 6
    for name, got, want in zip(
        ["query", "key", "value", "source_key", "source_value", "log_weight"], records[0], expected
    ):
        torch.testing.assert_close(got, want[1:], msg=name)


@pytest.mark.parametrize(
    "processor", [HPFAAttnProcessor("layer"), CAAAttnProcessor("layer", 16, EMBED, 2)], ids=["hpfa", "caa"]
)
def test_processors_refuse_encoder_states_and_masks(processor):
    attn, hidden = _attention(), torch.randn(B, LQ, 16)
    message = rf"^{type(processor).__name__} is a self-attention processor; it takes no encoder states/mask\.$"
    with pytest.raises(ValueError, match=message):
        processor(attn, hidden, encoder_hidden_states=hidden)
    with pytest.raises(ValueError, match=message):
        processor(attn, hidden, attention_mask=torch.zeros(B, 1, LQ))


@pytest.mark.parametrize("with_reference", [False, True])
def test_processors_follow_residual_connection_and_rescale_output_factor(with_reference):
    """diffusers' `Attention(residual_connection=True, rescale_output_factor=2)`: ``(out + x) / 2``."""
    plain, options = _attention(), _attention(residual_connection=True, rescale_output_factor=2.0)
    hidden = torch.randn(B, LQ, 16)
    reference = _random_reference() if with_reference else None
    for processor in (HPFAAttnProcessor("layer"), CAAAttnProcessor("layer", 16, EMBED, 2)):
        expected = (run(processor, plain, hidden, reference) + hidden) / 2.0
        torch.testing.assert_close(run(processor, options, hidden, reference), expected)


def test_fresh_caa_is_identity():
    """A fresh CAA (zero ``caa_to_out``) adds nothing; trained CAA against an explicit computation:
    ``test_caa_equals_explicit_computation`` below."""
    attn, reference = _attention(), _reference()
    hidden = torch.randn(B, LQ, 16)
    hpfa, caa = HPFAAttnProcessor("layer"), CAAAttnProcessor("layer", 16, 8, num_heads=2, top_k=2)
    torch.testing.assert_close(run(caa, attn, hidden, reference), run(hpfa, attn, hidden, reference))


def test_caa_adds_nothing_to_rows_that_do_not_see_the_source():
    attn, reference = _attention(), _reference(dropped=True)
    hidden = torch.randn(B, LQ, 16)
    caa = CAAAttnProcessor("layer", 16, 8, num_heads=2, top_k=2)
    torch.nn.init.normal_(caa.caa_to_out.weight)
    torch.nn.init.normal_(caa.caa_to_out.bias)
    torch.testing.assert_close(run(caa, attn, hidden, reference), AttnProcessor2_0()(attn, hidden))


def test_caa_parameters_are_bias_free_projections_and_a_biased_output():
    """The checkpoint format: q/k/v without bias (as diffusers' attention), output with bias; two regions by default."""
    caa = CAAAttnProcessor("layer", hidden_size=16, region_embed_dim=EMBED, num_heads=2)
    assert caa.top_k == 2
    shapes = {name: tuple(p.shape) for name, p in caa.state_dict().items()}
    assert shapes == {
        "caa_to_q.weight": (16, 16),
        "caa_to_k.weight": (16, EMBED),
        "caa_to_v.weight": (16, EMBED),
        "caa_to_out.weight": (16, 16),
        "caa_to_out.bias": (16,),
    }


@pytest.mark.parametrize("top_k", [0, 1, 2])
@pytest.mark.parametrize(
    "region_valid",
    [[[True] * R] * B, [[False, True, False], [False, False, False]]],
    ids=["all_valid", "partly_valid"],
)
def test_caa_equals_explicit_computation(top_k, region_valid):
    """Every region valid; or sample 0 with one valid region (so with top_k 2 one selected region is invalid and must
    be masked) and sample 1 with none (CAA adds nothing)."""
    attn, hidden = _attention(), torch.randn(B, LQ, 16)
    reference = _random_reference(seed=5)
    reference.region_valid[:] = torch.tensor(region_valid)
    caa = CAAAttnProcessor("layer", 16, EMBED, num_heads=2, top_k=top_k)
    torch.manual_seed(6)
    torch.nn.init.normal_(caa.caa_to_out.weight)
    torch.nn.init.normal_(caa.caa_to_out.bias)
    out = run(caa, attn, hidden, reference)
    assert (out.double() - explicit_caa(caa, attn, hidden, reference)).abs().max() < 1e-5
    if top_k:
        assert not torch.allclose(
            out[0], explicit_caa(CAAAttnProcessor("layer", 16, EMBED, 2, top_k=0), attn, hidden, reference)[0].float()
        )


def test_caa_in_float64_reads_float32_references():
    """Masks, log-weights and CLIP region embeddings may come in another dtype than the UNet's (SourceNet's tokens
    come in its own): cast, not an error."""
    attn = _attention().double()
    hidden = torch.randn(B, LQ, 16, dtype=torch.float64)
    reference = _random_reference(seed=7)
    reference.tokens = reference.tokens.double()
    caa = CAAAttnProcessor("layer", 16, EMBED, num_heads=2, top_k=2).double()
    torch.nn.init.normal_(caa.caa_to_out.weight)
    out = run(caa, attn, hidden, reference)
    assert out.dtype == torch.float64
    assert (out - explicit_caa(caa, attn, hidden, reference)).abs().max() < 1e-10


def test_select_rows_repeats_rows_and_keeps_source_free_rows_in_front():
    attn = _attention()
    reference = HPFAAttnProcessor("layer").project_source(
        attn, dataclasses.replace(_reference(), num_source_free_rows=1)
    )
    repeated = reference.select_rows(torch.tensor([0, 0, 0, 1, 1, 1]))
    assert repeated.num_source_free_rows == 3 and repeated.source_key.shape[0] == 6
    torch.testing.assert_close(repeated.source_value[4], reference.source_value[1])
    torch.testing.assert_close(repeated.tokens[2], reference.tokens[0])
    with pytest.raises(ValueError, match="source-free rows"):
        reference.select_rows(torch.tensor([1, 0]))


@pytest.mark.parametrize("source_key", [False, True])
def test_select_rows_selects_every_field(source_key):
    reference = _random_reference(source_key=source_key, num_source_free_rows=1)
    index = torch.tensor([0, 0, 1, 1, 1])
    selected = reference.select_rows(index)
    assert selected.num_source_free_rows == 2
    for field in ("tokens", "log_weight", "region_indicators", "region_embeds", "region_valid"):
        torch.testing.assert_close(getattr(selected, field), getattr(reference, field)[index], msg=field)
    for field in ("source_key", "source_value"):
        if source_key:
            torch.testing.assert_close(getattr(selected, field), getattr(reference, field)[index], msg=field)
        else:
            assert getattr(selected, field) is None
    with pytest.raises(ValueError, match=r"^`index` must keep the source-free rows in front of the rows that see"):
        reference.select_rows(torch.tensor([0, 1, 0]))
