"""The attention functions against explicit float64 computations: HPFA's weights and fused attention (dtypes,
kernel widths), region masses, CAA's low-attention region choice."""

import pytest
import torch
import torch.nn.functional as F
from attention_references import HEADS, LQ, LS, B, D, R, explicit_fused_attention, explicit_weighted_attention

from truepose.models import (
    fused_reference_attention,
    hpfa_log_weights,
    select_low_attention_regions,
)


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


def random_qkv(head_dim, heads=2, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, heads, LQ, head_dim)] * 3 + [(B, heads, LS, head_dim)] * 2
    return [torch.randn(*shape, generator=g).to(dtype) for shape in shapes]


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


def test_low_attention_regions_divide_by_fractional_sizes():
    """Region sizes are sums of token fractions and can be below one token at coarse layers."""
    mass = torch.tensor([[0.10, 0.15, 0.9]])[:, None, None, :]
    size = torch.tensor([[0.5, 1.0, 1.0]])  # averages 0.2, 0.15, 0.9
    indices, valid = select_low_attention_regions(mass, size, torch.ones(1, 3, dtype=torch.bool), top_k=1)
    assert indices.tolist() == [[1]] and valid.tolist() == [[True]]
