"""Attention processors of TruePose: HPFA and CAA on TargetNet's self-attention, and its cross-attention.

TargetNet's self-attention attends over ``[target tokens ; source tokens]`` (reference attention), where the source
tokens are SourceNet's self-attention inputs at the same layer. HPFA (human-parsing-guided fusion attention) weights
the source tokens with ``1 + delta`` on the parsed person (body, clothing, face) and ``sigma`` elsewhere; a weight on
the attention probabilities with renormalisation is an additive ``log w`` bias on the logits, so HPFA is one fused
``scaled_dot_product_attention`` call (see [`hpfa_log_weights`] and [`fused_reference_attention`]).

CAA (CLIP-guided attention alignment) reads, from the same attention call, how much attention each parsing region of
the source received, picks the ``top_k`` least attended regions and cross-attends to their CLIP embeddings through a
zero-initialised output projection.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0
from torch import nn


def hpfa_log_weights(person_mask: torch.Tensor, sigma: float, delta: float) -> torch.Tensor:
    """HPFA weights of the source tokens, as log-weights (attention-logit biases).

    Paper, Eq. (6): ``w_j = 1 + delta`` where the parsing mask is set (body, clothing, face) and ``w_j = sigma``
    elsewhere; target tokens keep weight 1 (bias 0). The person-mask rule: a token is on the person when at least
    half of its area is (person fraction ``>= 0.5``).

    Args:
        person_mask (`torch.Tensor` of shape `(batch, num_source_tokens)`): each token's person fraction in [0, 1]
            (or a 0/1 mask).
    Returns:
        `torch.Tensor` of shape `(batch, num_source_tokens)`, float32: ``log w_j``.
    """
    log_on, log_off = math.log(1.0 + delta), math.log(sigma)
    return torch.where(person_mask >= 0.5, log_on, log_off).to(torch.float32)


def fused_reference_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    source_key: torch.Tensor,
    source_value: torch.Tensor,
    source_log_weight: torch.Tensor,
    region_indicators: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weighted softmax attention over ``[target ; source]`` keys in one fused SDPA call.

    ``P_ij = w_j exp(q_i.k_j / sqrt(d)) / sum_k w_k exp(q_i.k_k / sqrt(d))`` with ``w = 1`` on target tokens and
    ``w_j = exp(source_log_weight_j)`` on source tokens (``-inf`` removes a source token). The bias is passed
    broadcast as `(batch, 1, 1, keys)`; no attention matrix is materialised by this code.

    When ``region_indicators`` is given, they are appended to the values as extra channels (zeros on target tokens),
    so the extra output channels are each query's attention mass on each region: ``sum_{j in region r} P_ij``.

    Args:
        query (`torch.Tensor` of shape `(batch, heads, num_queries, head_dim)`).
        key, value (`torch.Tensor` of shape `(batch, heads, num_target_tokens, head_dim)`).
        source_key, source_value (`torch.Tensor` of shape `(batch, heads, num_source_tokens, head_dim)`).
        source_log_weight (`torch.Tensor` of shape `(batch, num_source_tokens)`).
        region_indicators (`torch.Tensor` of shape `(batch, num_source_tokens, num_regions)`, *optional*).
    Returns:
        The attention output `(batch, heads, num_queries, head_dim)` and, with ``region_indicators``, the region
        masses `(batch, heads, num_queries, num_regions)`.
    """
    num_target_tokens, head_dim = key.shape[2], value.shape[-1]
    scale = query.shape[-1] ** -0.5
    keys = torch.cat([key, source_key], dim=2)
    values = torch.cat([value, source_value], dim=2)
    bias = F.pad(source_log_weight, (num_target_tokens, 0)).to(query.dtype)[:, None, None, :]
    if region_indicators is None:
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=bias), None

    indicators = F.pad(region_indicators, (0, 0, num_target_tokens, 0)).to(values.dtype)
    values = torch.cat([values, indicators[:, None].expand(-1, values.shape[1], -1, -1)], dim=-1)
    # Fused kernels want one width for q, k and v: zero-pad q and k (q.k unchanged) and v to a multiple of 8.
    width = -(-values.shape[-1] // 8) * 8
    query, keys = (F.pad(t, (0, width - t.shape[-1])) for t in (query, keys))
    values = F.pad(values, (0, width - values.shape[-1]))
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=bias, scale=scale)
    return out[..., :head_dim], out[..., head_dim : head_dim + indicators.shape[-1]]


def select_low_attention_regions(
    region_mass: torch.Tensor, region_size: torch.Tensor, region_valid: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the ``top_k`` parsing regions with the lowest average attention.

    The average is the attention mass on a region, averaged over queries and heads and divided by the region's size
    in tokens. Invalid regions (absent, padding, or a row that must not see the source) are never picked.

    Args:
        region_mass (`torch.Tensor` of shape `(batch, heads, num_queries, num_regions)`).
        region_size (`torch.Tensor` of shape `(batch, num_regions)`): tokens per region at this layer.
        region_valid (`torch.Tensor` of shape `(batch, num_regions)`, bool).
    Returns:
        Indices `(batch, k)` and their validity `(batch, k)` (False where fewer than ``top_k`` regions are valid),
        with ``k = min(top_k, num_regions)``.
    """
    score = region_mass.float().mean(dim=(1, 2)) / region_size.float().clamp_min(1e-6)
    score = score.masked_fill(~region_valid, float("inf"))
    lowest, indices = score.topk(min(top_k, score.shape[1]), dim=1, largest=False)
    return indices, torch.isfinite(lowest)


@dataclass
class LayerReference:
    """Per-layer source conditioning a TargetNet self-attention reads during one pipeline call.

    Attributes:
        tokens (`(batch, num_source_tokens, channels)`): SourceNet's self-attention input at this layer.
        log_weight (`(batch, num_source_tokens)`): HPFA log-weights, ``-inf`` on rows that must not see the source.
        region_indicators (`(batch, num_source_tokens, num_regions)`): fraction of each token inside each region.
        region_embeds (`(batch, num_regions, embed_dim)`): CLIP embedding of each region crop.
        region_valid (`(batch, num_regions)`, bool): region present and visible to this row.
        num_source_free_rows (`int`): the first rows never see the source (the unconditional half under
            classifier-free guidance); they run plain self-attention instead of paying for the source keys.
        source_key, source_value (`(batch, heads, num_source_tokens, head_dim)`, *optional*): ``to_k``/``to_v`` of
            ``tokens``, projected once per generation by [`HPFAAttnProcessor.project_source`]; without them the
            tokens are projected at every call (training, where the weights change between calls).
    """

    tokens: torch.Tensor
    log_weight: torch.Tensor
    region_indicators: torch.Tensor
    region_embeds: torch.Tensor
    region_valid: torch.Tensor
    num_source_free_rows: int = 0
    source_key: torch.Tensor | None = None
    source_value: torch.Tensor | None = None

    @property
    def region_size(self) -> torch.Tensor:
        return self.region_indicators.sum(dim=1)

    def select_rows(self, index: torch.Tensor) -> "LayerReference":
        """The rows ``index`` (e.g. ``[0] * n + [1] * n`` to give each of ``n`` frames the rows of one source); the
        source-free rows must stay in front."""
        num_source_free_rows = int((index < self.num_source_free_rows).long().cumprod(dim=0).sum())
        if bool((index[num_source_free_rows:] < self.num_source_free_rows).any()):
            raise ValueError("`index` must keep the source-free rows in front of the rows that see the source.")
        select = lambda tensor: None if tensor is None else tensor[index]  # noqa: E731
        return LayerReference(
            tokens=select(self.tokens),
            log_weight=select(self.log_weight),
            region_indicators=select(self.region_indicators),
            region_embeds=select(self.region_embeds),
            region_valid=select(self.region_valid),
            num_source_free_rows=num_source_free_rows,
            source_key=select(self.source_key),
            source_value=select(self.source_value),
        )


class _IgnoresTruePoseKwargs:
    """Takes (and ignores) the per-call ``layer_references`` and ``recorders`` that [`TargetNet`] passes to every
    attention layer in ``cross_attention_kwargs``; diffusers' own processors would log a warning about them."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        layer_references: dict[str, LayerReference] | None = None,
        recorders: dict[str, Callable[..., None]] | None = None,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class CrossAttnProcessor2_0(_IgnoresTruePoseKwargs, AttnProcessor2_0):
    r"""diffusers' [`AttnProcessor2_0`] for TargetNet's cross-attention layers (TruePose's per-call arguments are
    accepted and ignored)."""


class CrossAttnProcessor(_IgnoresTruePoseKwargs, AttnProcessor):
    r"""diffusers' [`AttnProcessor`] for TargetNet's cross-attention layers (TruePose's per-call arguments are
    accepted and ignored)."""


class HPFAAttnProcessor(nn.Module):
    r"""TargetNet self-attention with human-parsing-guided fusion attention over SourceNet's tokens.

    Everything of one call travels with the call (diffusers' ``cross_attention_kwargs``, filled by [`TargetNet`]), so
    one processor serves any number of concurrent calls: its [`LayerReference`] is ``layer_references[name]``;
    without ``layer_references`` it is plain self-attention. A recorder ``recorders[name]`` (analysis, benchmarks)
    is called as ``recorder(query, key, value, source_key, source_value, source_log_weight)`` with the rows that see
    the source, shapes as in [`fused_reference_attention`], before they are attended to.

    Args:
        name (`str`): the processor's name in the UNet (e.g. ``"up_blocks.1.attentions.0.transformer_blocks.0.attn1
            .processor"``), the key of its reference and recorder.
    """

    uses_regions = False

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def _project_heads(self, attn: Attention, hidden_states: torch.Tensor, to: nn.Module) -> torch.Tensor:
        batch_size = hidden_states.shape[0]
        projected = to(hidden_states)
        return projected.view(batch_size, -1, attn.heads, projected.shape[-1] // attn.heads).transpose(1, 2)

    def attend(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        reference: LayerReference | None = None,
        recorder: Callable[..., None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """HPFA attention `(batch, tokens, channels)` before the output projection, and region masses if CAA."""
        batch_size = hidden_states.shape[0]
        query = self._project_heads(attn, hidden_states, attn.to_q)
        key = self._project_heads(attn, hidden_states, attn.to_k)
        value = self._project_heads(attn, hidden_states, attn.to_v)
        region_mass = None
        if reference is None:
            out = F.scaled_dot_product_attention(query, key, value)
        else:
            out, region_mass = self.attend_reference(attn, query, key, value, reference, recorder)
        return out.transpose(1, 2).reshape(batch_size, -1, attn.heads * value.shape[-1]), region_mass

    def attend_reference(
        self,
        attn: Attention,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        reference: LayerReference,
        recorder: Callable[..., None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[`fused_reference_attention`] for the rows that see the source, plain self-attention for the first
        ``reference.num_source_free_rows`` rows (the same result as their ``-inf`` bias, without the source keys).

        Shapes as in [`fused_reference_attention`]; region masses (zero on source-free rows) only with CAA.
        """
        free = reference.num_source_free_rows
        blocks = []  # (output, region masses) of the source-free rows, then of the rows that see the source
        if free > 0:
            num_regions = reference.region_indicators.shape[-1]
            free_mass = query.new_zeros((free, *query.shape[1:3], num_regions)) if self.uses_regions else None
            blocks.append((F.scaled_dot_product_attention(query[:free], key[:free], value[:free]), free_mass))
        if free < query.shape[0]:
            if reference.source_key is None:
                tokens = reference.tokens[free:]
                source_key, source_value = (self._project_heads(attn, tokens, to) for to in (attn.to_k, attn.to_v))
            else:
                source_key, source_value = reference.source_key[free:], reference.source_value[free:]
            if recorder is not None:
                recorder(query[free:], key[free:], value[free:], source_key, source_value, reference.log_weight[free:])
            blocks.append(
                fused_reference_attention(
                    query[free:],
                    key[free:],
                    value[free:],
                    source_key,
                    source_value,
                    reference.log_weight[free:],
                    reference.region_indicators[free:] if self.uses_regions else None,
                )
            )
        if len(blocks) == 1:
            return blocks[0]
        (free_out, free_mass), (seen_out, seen_mass) = blocks
        return torch.cat([free_out, seen_out]), None if free_mass is None else torch.cat([free_mass, seen_mass])

    def project_source(self, attn: Attention, reference: LayerReference) -> LayerReference:
        """``reference`` with its source keys and values projected once, for a generation that reuses them at every
        step (`(batch, heads, num_source_tokens, head_dim)`; the same numbers [`attend_reference`] computes)."""
        source_key, source_value = (self._project_heads(attn, reference.tokens, to) for to in (attn.to_k, attn.to_v))
        return replace(reference, source_key=source_key, source_value=source_value)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        layer_references: dict[str, LayerReference] | None = None,
        recorders: dict[str, Callable[..., None]] | None = None,
    ) -> torch.Tensor:
        """Args as diffusers' processors, plus this call's ``layer_references`` (processor name ->
        [`LayerReference`], one per HPFA/CAA layer) and ``recorders`` (processor name -> recorder, any layers)."""
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{type(self).__name__} is a self-attention processor; it takes no encoder states/mask.")
        reference = None if layer_references is None else layer_references[self.name]
        recorder = None if recorders is None else recorders.get(self.name)
        residual = hidden_states
        hidden_states, region_mass = self.attend(attn, hidden_states, reference, recorder)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if region_mass is not None:
            hidden_states = hidden_states + self.align(hidden_states, region_mass, reference)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class CAAAttnProcessor(HPFAAttnProcessor):
    r"""HPFA followed by CLIP-guided attention alignment.

    After HPFA gives ``F~`` (after the output projection), the ``top_k`` parsing regions with the lowest average
    attention are selected and ``F~`` cross-attends to their CLIP embeddings; the result is added through the
    zero-initialised ``caa_to_out``, so an untrained CAA is the identity.

    Args:
        name (`str`): the processor's name in the UNet, as for [`HPFAAttnProcessor`].
        hidden_size (`int`): channels of the attention layer.
        region_embed_dim (`int`): width of the CLIP region embeddings.
        num_heads (`int`): heads of the CAA cross-attention.
        top_k (`int`): regions selected per sample; 0 turns CAA off.
    """

    uses_regions = True

    def __init__(self, name: str, hidden_size: int, region_embed_dim: int, num_heads: int, top_k: int = 2):
        super().__init__(name)
        self.num_heads = num_heads
        self.top_k = top_k
        self.caa_to_q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.caa_to_k = nn.Linear(region_embed_dim, hidden_size, bias=False)
        self.caa_to_v = nn.Linear(region_embed_dim, hidden_size, bias=False)
        self.caa_to_out = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.caa_to_out.weight)
        nn.init.zeros_(self.caa_to_out.bias)

    def align(self, hidden_states: torch.Tensor, region_mass: torch.Tensor, reference: LayerReference) -> torch.Tensor:
        """CAA residual `(batch, tokens, channels)` for HPFA output ``hidden_states``, its region masses
        `(batch, heads, tokens, num_regions)` and the layer's ``reference``. The source-free rows have no valid
        region, so their residual is zero; it is not computed."""
        free = reference.num_source_free_rows
        if self.top_k == 0 or free == len(hidden_states):
            return torch.zeros_like(hidden_states)
        seen = self.attend_regions(
            hidden_states[free:],
            region_mass[free:],
            reference.region_size[free:],
            reference.region_valid[free:],
            reference.region_embeds[free:],
        )
        return torch.cat([seen.new_zeros((free, *seen.shape[1:])), seen]) if free else seen

    def attend_regions(
        self,
        hidden_states: torch.Tensor,
        region_mass: torch.Tensor,
        region_size: torch.Tensor,
        region_valid: torch.Tensor,
        region_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """The cross-attention of ``hidden_states`` to the CLIP embeddings of the ``top_k`` least-attended regions,
        through ``caa_to_out``; zero on rows with no valid region. Shapes as in `align` and [`LayerReference`]."""
        indices, selected_valid = select_low_attention_regions(region_mass, region_size, region_valid, self.top_k)
        selected = indices[..., None].expand(-1, -1, region_embeds.shape[-1])
        region_embeds = torch.gather(region_embeds, 1, selected).to(hidden_states.dtype)

        batch_size, heads = hidden_states.shape[0], self.num_heads
        query = self.caa_to_q(hidden_states).view(batch_size, -1, heads, hidden_states.shape[-1] // heads)
        key = self.caa_to_k(region_embeds).view(batch_size, -1, heads, hidden_states.shape[-1] // heads)
        value = self.caa_to_v(region_embeds).view(batch_size, -1, heads, hidden_states.shape[-1] // heads)
        # rows with no valid region attend to one dummy key and have their output zeroed below
        key_mask = selected_valid.clone()
        key_mask[:, 0] = True
        out = F.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=key_mask[:, None, None, :]
        )
        out = self.caa_to_out(out.transpose(1, 2).reshape(batch_size, -1, hidden_states.shape[-1]))
        return out * selected_valid.any(dim=1).to(out.dtype)[:, None, None]
