"""HPFA/CAA processors against explicit computations: dtypes, kernel widths, row selection, recorder, diffusers'
`Attention` options and CAA's region choice (tests added for the mutants `benchmarks/mutation.sh attention` found)."""

import dataclasses
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from truepose.models import CAAAttnProcessor, HPFAAttnProcessor, LayerReference, fused_reference_attention
from truepose.models.attention import CrossAttnProcessor, CrossAttnProcessor2_0, select_low_attention_regions

B, LQ, LS, R, EMBED = 2, 7, 6, 3, 8


def explicit_fused_attention(q, k, v, sk, sv, log_weight, indicators):
    """float64, attention matrix materialised: output and per-region attention mass."""
    q, k, v, sk, sv = (t.double() for t in (q, k, v, sk, sv))
    keys, values = torch.cat([k, sk], 2), torch.cat([v, sv], 2)
    bias = torch.cat([torch.zeros(q.shape[0], k.shape[2], dtype=torch.double), log_weight.double()], 1)
    probs = torch.softmax(q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias[:, None, None, :], dim=-1)
    return probs @ values, probs[..., k.shape[2] :] @ indicators.double()[:, None]


def random_qkv(head_dim, heads=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, heads, LQ, head_dim)] * 3 + [(B, heads, LS, head_dim)] * 2
    return [torch.randn(*shape, generator=g).to(dtype) for shape in shapes]


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.bfloat16, 3e-2)])
def test_fused_attention_keeps_the_input_dtype(dtype, tolerance):
    """float32 log-weights and indicators (what `hpfa_log_weights` and the masks give) with float64 or bfloat16
    queries: cast to the queries' dtype, result in that dtype."""
    q, k, v, sk, sv = random_qkv(8, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    log_weight, indicators = torch.randn(B, LS, generator=g), torch.rand(B, LS, R, generator=g)
    out, mass = fused_reference_attention(q, k, v, sk, sv, log_weight, indicators)
    expected_out, expected_mass = explicit_fused_attention(q, k, v, sk, sv, log_weight, indicators)
    assert out.dtype == mass.dtype == dtype
    assert (out.double() - expected_out).abs().max() < tolerance
    assert (mass.double() - expected_mass).abs().max() < tolerance


@pytest.mark.parametrize("head_dim", [40, 8, 64])  # SD-1.5's 320 / 8 heads, and widths that are already 8k
def test_fused_attention_gives_the_kernel_one_width_padded_to_a_multiple_of_8(monkeypatch, head_dim):
    """With region indicators the values gain `R` channels; q, k and v reach SDPA with one width, the next multiple of
    8 (what fused kernels dispatch on), and the result is unchanged."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(query, key, value, **kwargs):
        calls.append((query.shape[-1], key.shape[-1], value.shape[-1]))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    q, k, v, sk, sv = random_qkv(head_dim)
    g = torch.Generator().manual_seed(2)
    log_weight, indicators = torch.randn(B, LS, generator=g), torch.rand(B, LS, R, generator=g)
    out, mass = fused_reference_attention(q, k, v, sk, sv, log_weight, indicators)
    width = -(-(head_dim + R) // 8) * 8
    assert calls == [(width, width, width)]
    expected_out, expected_mass = explicit_fused_attention(q, k, v, sk, sv, log_weight, indicators)
    assert (out.double() - expected_out).abs().max() < 1e-5 and (mass.double() - expected_mass).abs().max() < 1e-5


def test_low_attention_regions_divide_by_fractional_sizes():
    """Region sizes are sums of token fractions and can be below one token at coarse layers."""
    mass = torch.tensor([[0.10, 0.15, 0.9]])[:, None, None, :]
    size = torch.tensor([[0.5, 1.0, 1.0]])  # averages 0.2, 0.15, 0.9
    indices, valid = select_low_attention_regions(mass, size, torch.ones(1, 3, dtype=torch.bool), top_k=1)
    assert indices.tolist() == [[1]] and valid.tolist() == [[True]]


def _reference(dim=16, seed=3, source_key=False, num_source_free_rows=0, batch=B):
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


@pytest.mark.parametrize("source_key", [False, True])
def test_select_rows_selects_every_field(source_key):
    reference = _reference(source_key=source_key, num_source_free_rows=1)
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


def _attention(dim=16, heads=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads, **kwargs)


def run(processor, attn, hidden, reference=None, **kwargs):
    """One call of ``processor`` with ``reference`` passed as TargetNet passes it (by the processor's name)."""
    return processor(
        attn, hidden, layer_references=None if reference is None else {processor.name: reference}, **kwargs
    )


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
    per_call = {"layer_references": {"layer": _reference()}, "recorders": {"layer": print}}
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


def test_one_head_with_a_source_free_row():
    """`num_source_free_rows` counts rows (dim 0), whatever the number of heads."""
    attn, hidden = _attention(heads=1), torch.randn(B, LQ, 16)
    biased = _reference()
    biased.log_weight[:1] = float("-inf")
    processor = HPFAAttnProcessor("layer")
    expected = run(processor, attn, hidden, biased)
    split = dataclasses.replace(biased, num_source_free_rows=1)
    torch.testing.assert_close(run(processor, attn, hidden, split), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cached", [False, True])
def test_recorder_gets_the_rows_that_see_the_source(cached):
    attn, hidden = _attention(), torch.randn(B, LQ, 16)
    processor = HPFAAttnProcessor("layer")
    reference = dataclasses.replace(_reference(), num_source_free_rows=1)
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
    reference = _reference() if with_reference else None
    for processor in (HPFAAttnProcessor("layer"), CAAAttnProcessor("layer", 16, EMBED, 2)):
        expected = (run(processor, plain, hidden, reference) + hidden) / 2.0
        torch.testing.assert_close(run(processor, options, hidden, reference), expected)


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
    reference = _reference(seed=5)
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
    reference = _reference(seed=7)
    reference.tokens = reference.tokens.double()
    caa = CAAAttnProcessor("layer", 16, EMBED, num_heads=2, top_k=2).double()
    torch.nn.init.normal_(caa.caa_to_out.weight)
    out = run(caa, attn, hidden, reference)
    assert out.dtype == torch.float64
    assert (out - explicit_caa(caa, attn, hidden, reference)).abs().max() < 1e-10
