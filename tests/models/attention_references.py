"""Slow, explicit float64 references for the attention tests (the attention matrix materialised), and the small
shapes they use (imported by name: pytest puts this folder on the path)."""

import math

import torch

B, HEADS, LQ, LS, D, R, EMBED = 2, 3, 7, 6, 4, 3, 8


def explicit_weighted_attention(q, k, v, sk, sv, weights):
    """Slow float64 reference: P_ij = w_j exp(s_ij) / sum_k w_k exp(s_ik), the attention matrix materialised."""
    q, k, v, sk, sv, weights = (t.double() for t in (q, k, v, sk, sv, weights))
    keys, values = torch.cat([k, sk], 2), torch.cat([v, sv], 2)
    w = torch.cat([torch.ones(q.shape[0], k.shape[2], dtype=torch.double), weights], 1)[:, None, None, :]
    scores = torch.exp(q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])) * w
    probs = scores / scores.sum(-1, keepdim=True)
    return probs @ values, probs


def explicit_fused_attention(q, k, v, sk, sv, log_weight, indicators):
    """float64, attention matrix materialised: output and per-region attention mass."""
    q, k, v, sk, sv = (t.double() for t in (q, k, v, sk, sv))
    keys, values = torch.cat([k, sk], 2), torch.cat([v, sv], 2)
    bias = torch.cat([torch.zeros(q.shape[0], k.shape[2], dtype=torch.double), log_weight.double()], 1)
    probs = torch.softmax(q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias[:, None, None, :], dim=-1)
    return probs @ values, probs[..., k.shape[2] :] @ indicators.double()[:, None]
