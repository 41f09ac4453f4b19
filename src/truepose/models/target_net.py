"""TargetNet: the denoising UNet of TruePose, with HPFA/CAA self-attention and pose features."""

import functools
import inspect
import math
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 - DiffusionPipeline looks the base class up here
from torch import nn

from .attention import (
    CAAAttnProcessor,
    CrossAttnProcessor,
    CrossAttnProcessor2_0,
    HPFAAttnProcessor,
    LayerReference,
    hpfa_log_weights,
)

# Per-call data that cannot travel as an argument lives in a context variable (one value per thread and asyncio
# task): the bank SourceNet's self-attention inputs are recorded into during `capture_reference_tokens`.
_REFERENCE_BANK: ContextVar[dict[str, torch.Tensor] | None] = ContextVar("truepose_reference_bank", default=None)
_CAPTURE_HOOKS_LOCK = threading.Lock()


class PoseConditionedConvIn(nn.Conv2d):
    """TargetNet's ``conv_in``: the pose features travel with its input as extra channels after the latents and are
    added to the convolution's output, so they stay per call (threads), inside a gradient-checkpointed recompute and
    inside one ``torch.compile`` graph. Weights and their names are the ``nn.Conv2d``'s it replaces.

    Input `(batch, in_channels [+ out_channels], h, w)`: the latents [and the pose features]; output `(batch,
    out_channels, h, w)`.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "PoseConditionedConvIn":
        """A ``PoseConditionedConvIn`` holding ``conv``'s parameters (no new weights are drawn)."""
        settings = {key: getattr(conv, key) for key in ("kernel_size", "stride", "padding", "dilation", "groups")}
        module = cls(conv.in_channels, conv.out_channels, **settings, bias=conv.bias is not None, device="meta")
        module.padding_mode = conv.padding_mode
        module.weight, module.bias = conv.weight, conv.bias
        return module

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        output = super().forward(sample[:, : self.in_channels])
        if sample.shape[1] == self.in_channels:
            return output
        return output + sample[:, self.in_channels :].to(output.dtype)


@dataclass
class SourceReference:
    """Everything TargetNet needs from the source person, for a batch of target rows.

    Attributes:
        bank (`dict[str, torch.Tensor]`): processor name -> SourceNet self-attention input `(batch, tokens, channels)`.
        person_mask (`torch.Tensor` of shape `(batch, 1, height, width)`): 1 on body, clothing and face.
        region_masks (`torch.Tensor` of shape `(batch, num_regions, height, width)`): one mask per parsing region;
            all-zero masks are padding.
        region_embeds (`torch.Tensor` of shape `(batch, num_regions, embed_dim)`): CLIP embedding of each region.
        source_dropped (`torch.Tensor` of shape `(batch,)`, bool): rows that must not see the source (the
            unconditional branch of classifier-free guidance, or condition dropout in training).
    """

    bank: dict[str, torch.Tensor]
    person_mask: torch.Tensor
    region_masks: torch.Tensor
    region_embeds: torch.Tensor
    source_dropped: torch.Tensor

    def index_select(self, index: torch.Tensor) -> "SourceReference":
        """The rows ``index`` (e.g. ``arange(b).repeat_interleave(n)`` for ``n`` images per source)."""
        return SourceReference(
            bank={name: tokens[index] for name, tokens in self.bank.items()},
            person_mask=self.person_mask[index],
            region_masks=self.region_masks[index],
            region_embeds=self.region_embeds[index],
            source_dropped=self.source_dropped[index],
        )

    def with_unconditional(self) -> "SourceReference":
        """``[unconditional ; conditional]`` rows for classifier-free guidance in one batch."""
        doubled = self.index_select(
            torch.arange(len(self.source_dropped), device=self.source_dropped.device).repeat(2)
        )
        dropped = torch.cat([torch.ones_like(self.source_dropped), self.source_dropped])
        return replace(doubled, source_dropped=dropped)


@dataclass
class SourceConditions:
    """What the frozen encoders (CLIP, VAE, parsing) give for a batch of sources: SourceNet's inputs and the masks
    and embeddings TargetNet reads beside SourceNet's tokens.

    Attributes:
        image_embeds (`torch.Tensor` of shape `(batch, 1, dim)`): CLIP image embeddings (0 on dropped rows).
        source_latents (`torch.Tensor` of shape `(batch, 4, h, w)`): scaled VAE latents of the sources.
        person_mask, region_masks, region_embeds, source_dropped: as in [`SourceReference`].
    """

    image_embeds: torch.Tensor
    source_latents: torch.Tensor
    person_mask: torch.Tensor
    region_masks: torch.Tensor
    region_embeds: torch.Tensor
    source_dropped: torch.Tensor

    def reference(self, bank: dict[str, torch.Tensor]) -> SourceReference:
        """The [`SourceReference`] of these sources, given SourceNet's tokens ``bank``."""
        return SourceReference(bank, self.person_mask, self.region_masks, self.region_embeds, self.source_dropped)


def token_grid(latent_size: tuple[int, int], num_tokens: int) -> tuple[int, int]:
    """The `(height, width)` of the layer with ``num_tokens`` tokens, halving (rounding up) like UNet downsamplers."""
    height, width = latent_size
    while height * width > num_tokens:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    if height * width != num_tokens:
        raise ValueError(f"No UNet resolution of latent size {latent_size} has {num_tokens} tokens.")
    return height, width


def check_truepose_settings(hpfa_sigma: float, hpfa_delta: float, caa_top_k: int) -> None:
    """Refuse HPFA/CAA settings outside their domain (``sigma > 0``, ``delta > -1``, ``top_k >= 0``)."""
    if not hpfa_sigma > 0 or not hpfa_delta > -1 or caa_top_k < 0:
        raise ValueError(
            f"Need hpfa_sigma > 0, hpfa_delta > -1 and caa_top_k >= 0; got {hpfa_sigma}, {hpfa_delta}, {caa_top_k}."
        )


def _record_input(name: str, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook of SourceNet's self-attention ``name``: its input tokens into the running capture's bank."""
    bank = _REFERENCE_BANK.get()
    if bank is not None:
        bank[name] = args[0] if args else kwargs["hidden_states"]


def _install_capture_hooks(unet: UNet2DConditionModel) -> None:
    """Give SourceNet's self-attention layers (once per model) a forward pre-hook that records their input tokens
    into the bank of the `capture_reference_tokens` running in this thread; outside one it records nothing."""
    with _CAPTURE_HOOKS_LOCK:
        for module_name, module in unet.named_modules():
            if not module_name.endswith("attn1") or not hasattr(module, "set_processor"):
                continue
            hooks = module._forward_pre_hooks.values()
            if not any(isinstance(hook, functools.partial) and hook.func is _record_input for hook in hooks):
                module.register_forward_pre_hook(
                    functools.partial(_record_input, f"{module_name}.processor"), with_kwargs=True
                )


def capture_reference_tokens(
    source_unet: UNet2DConditionModel,
    source_latents: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    timestep: int = 0,
) -> dict[str, torch.Tensor]:
    """Run SourceNet once on clean source latents and return its self-attention inputs.

    The inputs are recorded by forward pre-hooks on SourceNet's self-attention layers (installed on the first
    capture, recording only during a capture and into that capture's own bank), so SourceNet keeps its processors
    (``set_default_attn_processor`` and friends work on it) and concurrent captures do not mix.

    Args:
        source_latents (`torch.Tensor` of shape `(batch, 4, h, w)`): scaled VAE latents of the source image.
        encoder_hidden_states (`torch.Tensor` of shape `(batch, 1, dim)`): CLIP image embedding.
    Returns:
        `dict[str, torch.Tensor]`: processor name -> tokens `(batch, h_l * w_l, channels)`.
    """
    _install_capture_hooks(source_unet)
    bank: dict[str, torch.Tensor] = {}
    token = _REFERENCE_BANK.set(bank)
    try:
        timesteps = torch.full((source_latents.shape[0],), timestep, device=source_latents.device, dtype=torch.long)
        source_unet(source_latents, timesteps, encoder_hidden_states, return_dict=False)
    finally:
        _REFERENCE_BANK.reset(token)
    return bank


def parameters_after_reference_capture(source_unet: UNet2DConditionModel) -> list[str]:
    """Names of SourceNet parameters that cannot influence any captured token, so never reach TargetNet.

    These are the layers whose forward starts after the last self-attention input SourceNet records: that
    attention's own projections, the rest of its transformer block, ``proj_out`` and ``conv_norm_out``/``conv_out``
    (plus adapters inside them). Found by one small no-grad forward that records the order in which layers start;
    every layer starting earlier feeds the last captured input through the UNet's main path.
    """
    captures = {
        source_unet.get_submodule(name.removesuffix(".processor"))
        for name in source_unet.attn_processors
        if name.endswith("attn1.processor")
    }
    started: list[torch.nn.Module] = []
    hooks = [
        module.register_forward_pre_hook(lambda module, args: started.append(module))
        for module in source_unet.modules()
        if module in captures or any(True for _ in module.parameters(recurse=False))
    ]
    config, parameter = source_unet.config, next(source_unet.parameters())
    size = 2 ** (len(config.block_out_channels) - 1)
    try:
        with torch.no_grad():
            source_unet(
                parameter.new_zeros(1, config.in_channels, size, size),
                torch.zeros(1, dtype=torch.long, device=parameter.device),
                parameter.new_zeros(1, 1, config.cross_attention_dim),
            )
    finally:
        for hook in hooks:
            hook.remove()
    last_capture = max(i for i, module in enumerate(started) if module in captures)
    feeding = set(started[:last_capture])
    return [
        f"{module_name}.{name}" if module_name else name
        for module_name, module in source_unet.named_modules()
        if module not in feeding
        for name, _ in module.named_parameters(recurse=False)
    ]


class TargetNet(UNet2DConditionModel):
    r"""A [`UNet2DConditionModel`] whose self-attention layers run HPFA (and CAA on ``caa_blocks``).

    It installs its processors itself, so ``save_pretrained``/``from_pretrained`` round-trip the CAA weights, and it
    stores the HPFA/CAA settings in its config beside the UNet's.

    Parameters (in addition to [`UNet2DConditionModel`]'s):
        hpfa_sigma (`float`, defaults to 0.3): weight of source tokens outside the person (background).
        hpfa_delta (`float`, defaults to 0.6): source tokens on the person get weight ``1 + hpfa_delta``.
        hpfa_blocks (`tuple[str]`): name prefixes of the layers where HPFA weights apply; other layers use plain
            reference attention (all weights 1).
        caa_blocks (`tuple[str]`): name prefixes of the layers that also run CAA.
        caa_top_k (`int`, defaults to 2): regions CAA selects; 0 disables CAA at run time.
        region_embed_dim (`int`, defaults to 768): width of the CLIP region embeddings.
    """

    _truepose_defaults = {
        "hpfa_sigma": 0.3,
        "hpfa_delta": 0.6,
        "hpfa_blocks": ("down_blocks", "mid_block", "up_blocks"),
        "caa_blocks": ("up_blocks",),
        "caa_top_k": 2,
        "region_embed_dim": 768,
    }

    @register_to_config
    def __init__(self, **kwargs):
        settings = {key: kwargs.pop(key, default) for key, default in self._truepose_defaults.items()}
        super().__init__(**kwargs)
        check_truepose_settings(settings["hpfa_sigma"], settings["hpfa_delta"], settings["caa_top_k"])
        if self.config.center_input_sample:
            raise ValueError("TargetNet needs center_input_sample=False: its input carries the pose features.")
        self.conv_in = PoseConditionedConvIn.from_conv(self.conv_in)
        self.set_attn_processor(self._truepose_processors(**settings))

    def _truepose_processors(self, caa_blocks, caa_top_k, region_embed_dim, **_) -> dict:
        processors = {}
        for name, processor in self.attn_processors.items():
            if not name.endswith("attn1.processor"):
                processors[name] = CrossAttnProcessor2_0() if isinstance(processor, AttnProcessor2_0) else processor
                continue
            attn = self.get_submodule(name.removesuffix(".processor"))
            if name.startswith(tuple(caa_blocks)):
                processors[name] = CAAAttnProcessor(name, attn.inner_dim, region_embed_dim, attn.heads, caa_top_k)
            else:
                processors[name] = HPFAAttnProcessor(name)
        return processors

    def set_truepose_settings(
        self, hpfa_sigma: float | None = None, hpfa_delta: float | None = None, caa_top_k: int | None = None
    ) -> None:
        """Change HPFA/CAA settings of a built model (e.g. ``hpfa_sigma=0.2`` against background artefacts).

        ``hpfa_sigma=1, hpfa_delta=0`` turns HPFA into plain reference attention; ``caa_top_k=0`` turns CAA off. The
        values are saved with the config.
        """
        sigma = self.config.hpfa_sigma if hpfa_sigma is None else hpfa_sigma
        delta = self.config.hpfa_delta if hpfa_delta is None else hpfa_delta
        top_k = self.config.caa_top_k if caa_top_k is None else caa_top_k
        check_truepose_settings(sigma, delta, top_k)
        self.register_to_config(hpfa_sigma=sigma, hpfa_delta=delta, caa_top_k=top_k)
        for processor in self.truepose_processors.values():
            if isinstance(processor, CAAAttnProcessor):
                processor.top_k = top_k

    @property
    def truepose_processors(self) -> dict[str, HPFAAttnProcessor]:
        """The HPFA and CAA processors by layer (processor name -> processor), one per self-attention layer; a
        [`CAAAttnProcessor`] is an HPFA processor with CAA added."""
        return {name: p for name, p in self.attn_processors.items() if isinstance(p, HPFAAttnProcessor)}

    def set_default_attn_processor(self) -> None:
        """TruePose's default processors: diffusers' [`AttnProcessor`] on the cross-attention layers (as
        [`CrossAttnProcessor`], which takes TruePose's per-call arguments), HPFA/CAA on the self-attention layers.
        Installed HPFA/CAA processors stay (with their trained CAA weights); a self-attention layer whose processor
        was replaced gets a new one (CAA zero-initialised, i.e. the identity)."""
        fresh: dict | None = None
        processors = {}
        for name, processor in self.attn_processors.items():
            if not name.endswith("attn1.processor"):
                processors[name] = CrossAttnProcessor()
            elif isinstance(processor, HPFAAttnProcessor):
                processors[name] = processor
            else:
                fresh = fresh or self._truepose_processors(**self.config)
                processors[name] = fresh[name].to(device=self.device, dtype=self.dtype)
        self.set_attn_processor(processors)

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, **settings) -> "TargetNet":
        """A TargetNet with ``unet``'s config and weights; HPFA/CAA settings from ``settings``, new layers zeroed."""
        target_net = cls(**{**dict(unet.config), **settings})
        missing, unexpected = target_net.load_state_dict(unet.state_dict(), strict=False)
        if unexpected or any(".processor." not in key for key in missing):
            raise ValueError(f"UNet weights do not match TargetNet: missing {missing}, unexpected {unexpected}.")
        target_net.to(unet.device)
        return target_net if unet.dtype == target_net.dtype else target_net.to(dtype=unet.dtype)

    def prepare_reference(
        self, source_reference: SourceReference, latent_size: tuple[int, int]
    ) -> dict[str, LayerReference]:
        """Per-layer masks, HPFA log-weights and region indicators, computed once per pipeline call.

        Masks are resized to each layer's token grid by area: the region indicators are the fraction of each token
        inside each region; a token is on the person (HPFA weight ``1 + delta``) when at least half of its area is,
        i.e. person fraction >= 0.5 (a token exactly half on the person counts as person; [`hpfa_log_weights`]).
        """
        hpfa_blocks = tuple(self.config.hpfa_blocks)
        sigma, delta = self.config.hpfa_sigma, self.config.hpfa_delta
        dropped = source_reference.source_dropped
        region_valid = (source_reference.region_masks.flatten(2).amax(dim=2) > 0) & ~dropped[:, None]
        num_source_free_rows = int(dropped.long().cumprod(dim=0).sum())  # leading dropped rows (CFG's first half)
        grids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        layer_references = {}
        for name in self.truepose_processors:
            tokens = source_reference.bank[name]
            num_tokens = tokens.shape[1]
            if num_tokens not in grids:
                grid = token_grid(latent_size, num_tokens)
                person = F.adaptive_avg_pool2d(source_reference.person_mask.float(), grid).flatten(1)
                regions = F.adaptive_avg_pool2d(source_reference.region_masks.float(), grid).flatten(2)
                grids[num_tokens] = (person, regions.transpose(1, 2))
            person, region_indicators = grids[num_tokens]
            if name.startswith(hpfa_blocks):
                log_weight = hpfa_log_weights(person, sigma, delta)
            else:
                log_weight = torch.zeros_like(person)
            log_weight = log_weight.masked_fill(dropped[:, None], float("-inf"))
            layer_references[name] = LayerReference(
                tokens=tokens,
                log_weight=log_weight,
                region_indicators=region_indicators,
                region_embeds=source_reference.region_embeds,
                region_valid=region_valid,
                num_source_free_rows=num_source_free_rows,
            )
        return layer_references

    def project_source(self, layer_references: dict[str, LayerReference]) -> dict[str, LayerReference]:
        """``layer_references`` with every layer's source keys/values projected once (``to_k``/``to_v`` of the
        SourceNet tokens), so the denoising steps of one generation skip that projection. For inference only:
        training changes the weights, so it keeps projecting at every step."""
        return {
            name: processor.project_source(self.get_submodule(name.removesuffix(".processor")), layer_references[name])
            for name, processor in self.truepose_processors.items()
        }

    def check_recorders(self, recorders: dict[str, Callable[..., None]] | None) -> None:
        """Refuse recorders (processor name -> callable, see [`HPFAAttnProcessor`]) for layers with no HPFA/CAA
        processor."""
        if recorders:
            processors = self.truepose_processors
            unknown = sorted(set(recorders) - set(processors))
            if unknown:
                raise ValueError(f"No HPFA/CAA processors named {unknown}; the processors are {sorted(processors)}.")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        pose_features: torch.Tensor | None = None,
        layer_references: dict[str, LayerReference] | None = None,
        **kwargs,
    ):
        """[`UNet2DConditionModel.forward`] plus TruePose conditions, all for this call only (one model serves any
        number of concurrent calls, and a gradient-checkpointed backward recomputes with the same conditions).

        Args:
            pose_features (`torch.Tensor` of shape `(batch, block_out_channels[0], h, w)`, *optional*): added to the
                ``conv_in`` output.
            layer_references (`dict[str, LayerReference]`, *optional*): from [`~TargetNet.prepare_reference`], passed
                to the HPFA/CAA processors in ``cross_attention_kwargs``; without it every self-attention is plain
                self-attention.
            cross_attention_kwargs (`dict`, *optional*): as in diffusers; ``{"recorders": {processor name:
                recorder}}`` switches on recorders on HPFA/CAA processors (see [`HPFAAttnProcessor`]).
        """
        cross_attention_kwargs = kwargs.pop("cross_attention_kwargs", None)
        self.check_recorders((cross_attention_kwargs or {}).get("recorders"))
        if layer_references is not None:
            cross_attention_kwargs = {**(cross_attention_kwargs or {}), "layer_references": layer_references}
        if pose_features is not None:  # added to conv_in's output by PoseConditionedConvIn
            sample = torch.cat([sample, pose_features.to(sample.dtype)], dim=1)
        return super().forward(
            sample, timestep, encoder_hidden_states, cross_attention_kwargs=cross_attention_kwargs, **kwargs
        )


# Config keys map through the signature: the UNet's parameters followed by TruePose's.
_unet_parameters = list(inspect.signature(UNet2DConditionModel.__init__).parameters.values())
TargetNet.__init__.__signature__ = TargetNet.__init__.__wrapped__.__signature__ = inspect.Signature(
    _unet_parameters
    + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, default in TargetNet._truepose_defaults.items()
    ]
)
