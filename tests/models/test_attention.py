import dataclasses
import math

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from truepose.models import (
    CAAAttnProcessor,
    HPFAAttnProcessor,
    LayerReference,
    fused_reference_attention,
    hpfa_log_weights,
    select_low_attention_regions,
)

B, HEADS, LQ, LS, D, R = 2, 3, 7, 6, 4, 3


def explicit_weighted_attention(q, k, v, sk, sv, weights):
    """Slow float64 reference: P_ij = w_j exp(s_ij) / sum_k w_k exp(s_ik), the attention matrix materialised."""
    q, k, v, sk, sv, weights = (t.double() for t in (q, k, v, sk, sv, weights))
    keys, values = torch.cat([k, sk], 2), torch.cat([v, sv], 2)
    w = torch.cat([torch.ones(q.shape[0], k.shape[2], dtype=torch.double), weights], 1)[:, None, None, :]
    scores = torch.exp(q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])) * w
    probs = scores / scores.sum(-1, keepdim=True)
    return probs @ values, probs


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (
        rand(B, HEADS, LQ, D),
        rand(B, HEADS, LQ, D),
        rand(B, HEADS, LQ, D),
        rand(B, HEADS, LS, D),
        rand(B, HEADS, LS, D),
    )


def test_hpfa_log_weights_are_log_of_paper_weights():
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    weights = hpfa_log_weights(mask, sigma=0.3, delta=0.6).exp()
    torch.testing.assert_close(weights, torch.tensor([[1.6, 0.3, 1.6]]))
    # person fractions: the person-mask rule, on the person from half the area up
    fractions = torch.tensor([[0.0, 0.25, 0.4999, 0.5, 0.75, 1.0]], dtype=torch.float64)
    log_weights = hpfa_log_weights(fractions, sigma=0.3, delta=0.6)
    assert log_weights.dtype == torch.float32
    torch.testing.assert_close(log_weights.exp(), torch.tensor([[0.3, 0.3, 0.3, 1.6, 1.6, 1.6]]))


def test_hpfa_equals_explicit_weighted_softmax(qkv):
    q, k, v, sk, sv = qkv
    mask = (torch.rand(B, LS, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    log_w = hpfa_log_weights(mask, sigma=0.2, delta=0.6)
    out, _ = fused_reference_attention(q, k, v, sk, sv, log_w)
    expected, _ = explicit_weighted_attention(q, k, v, sk, sv, log_w.exp())
    assert (out.double() - expected).abs().max() < 1e-5


def test_sigma_one_delta_zero_is_plain_reference_attention(qkv):
    q, k, v, sk, sv = qkv
    log_w = hpfa_log_weights(torch.ones(B, LS), sigma=1.0, delta=0.0)
    out, _ = fused_reference_attention(q, k, v, sk, sv, log_w)
    plain = torch.nn.functional.scaled_dot_product_attention(q, torch.cat([k, sk], 2), torch.cat([v, sv], 2))
    torch.testing.assert_close(out, plain)


def test_minus_inf_weights_hide_the_source(qkv):
    q, k, v, sk, sv = qkv
    hidden = torch.full((B, LS), float("-inf"))
    out, _ = fused_reference_attention(q, k, v, sk, sv, hidden)
    out_other_source, _ = fused_reference_attention(q, k, v, sk * 3 + 1, -sv, hidden)
    self_only = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, self_only)
    torch.testing.assert_close(out_other_source, self_only)


def test_region_masses_equal_explicit_attention_matrix(qkv):
    q, k, v, sk, sv = qkv
    g = torch.Generator().manual_seed(2)
    log_w = torch.randn(B, LS, generator=g)
    indicators = torch.rand(B, LS, R, generator=g)
    out, mass = fused_reference_attention(q, k, v, sk, sv, log_w, indicators)
    expected_out, probs = explicit_weighted_attention(q, k, v, sk, sv, log_w.exp())
    expected_mass = probs[..., LQ:] @ indicators.double()[:, None]
    assert (out.double() - expected_out).abs().max() < 1e-5
    assert (mass.double() - expected_mass).abs().max() < 1e-5


def test_selected_regions_are_the_lowest_average():
    mass = torch.tensor([[0.4, 0.1, 0.3, 0.05]])[:, None, None, :].expand(1, 2, 5, 4)
    size = torch.tensor([[4.0, 1.0, 1.0, 1.0]])
    valid = torch.tensor([[True, True, True, False]])
    # averages: 0.1, 0.1 (tie broken by order), 0.3, invalid
    indices, selected_valid = select_low_attention_regions(mass, size, valid, top_k=2)
    assert sorted(indices[0].tolist()) == [0, 1]
    assert selected_valid.all()
    indices, selected_valid = select_low_attention_regions(mass, size, valid, top_k=4)
    assert indices[0, -1].item() == 3 and selected_valid.tolist() == [[True, True, True, False]]


def _attention(dim=16, heads=2):
    torch.manual_seed(0)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads)


def _reference(dim=16, regions=R, embed_dim=8, dropped=False):
    g = torch.Generator().manual_seed(3)
    return LayerReference(
        tokens=torch.randn(B, LS, dim, generator=g),
        log_weight=torch.full((B, LS), float("-inf")) if dropped else torch.randn(B, LS, generator=g),
        region_indicators=(torch.rand(B, LS, regions, generator=g) > 0.5).float(),
        region_embeds=torch.randn(B, regions, embed_dim, generator=g),
        region_valid=torch.full((B, regions), not dropped),
    )


def run(processor, attn, hidden, reference=None):
    """One call of ``processor`` with ``reference`` passed as TargetNet passes it (by the processor's name)."""
    return processor(attn, hidden, layer_references=None if reference is None else {processor.name: reference})


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


def test_fresh_caa_is_identity():
    """A fresh CAA (zero ``caa_to_out``) adds nothing; trained CAA against an explicit computation:
    ``test_correctness_attention.py::test_caa_equals_explicit_computation``."""
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
