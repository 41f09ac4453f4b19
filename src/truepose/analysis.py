"""Where TargetNet's self-attention goes: the share of attention on the target's own tokens and on the source's parsing
groups and regions (the statistic TruePose, arXiv 2502.03426, reports for reference attention: clothing receives far
less attention than the body).

For every TargetNet self-attention layer (``attn1``), at chosen denoising steps, each query's attention probabilities
``P_ij`` over ``[target tokens ; source tokens]`` (HPFA weights included) are summed over

- the target's own tokens (``"target"``),
- the source tokens of each parsing group: ``"body"``, ``"clothing"``, ``"face"`` and ``"background"`` (everything
  outside the person),
- the source tokens of each CAA region present (``"upper_clothes"``, ``"arms"``, ...),

and averaged over queries, heads and the conditional rows of the batch (the classifier-free-guidance unconditional
rows never see the source). A source token that covers several groups counts for each in proportion to its pixels.

The masses come from the same trick as CAA: group/region masks are resized to each layer's token grid by
[`~truepose.models.TargetNet.prepare_reference`] (the code path of the pipeline's HPFA masks and CAA region
indicators) and appended to the values of one [`~truepose.models.attention.fused_reference_attention`] call as extra
channels; no attention matrix is materialised. The queries and keys come from recorders on TargetNet's processors,
passed with an ordinary pipeline call (``cross_attention_kwargs={"recorders": ...}``, so other calls of the same
pipeline running at the same time record nothing), which is interrupted (``pipe._interrupt``) after the last
requested step.

Example::

    from truepose.analysis import attention_heatmap, attention_shares, plot_attention_shares

    shares = attention_shares(pipe, source_image, target_keypoints, source_parsing, num_inference_steps=35)
    shares["mean"]["clothing"], shares["mean"]["body"]
    plot_attention_shares(shares, "shares.png")
    attention_heatmap(shares, source_image, "heatmap.png")

[`record_attention_shares`] records the same shares during a generation one runs anyway (the web app does).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
import torch.nn.functional as F

from .conditioning import parsing as parsing_utils
from .conditioning import to_pil_image
from .models import fused_reference_attention, token_grid

GROUPS: tuple[str, ...] = ("target", "body", "clothing", "face", "background")
"""The shares that sum to 1 per layer: the target's own tokens, then the source's parsing groups."""

_SOURCE_GROUPS = GROUPS[1:]
_ALL_SOURCE_CHANNEL = len(_SOURCE_GROUPS)  # indicator channel that is 1 on every source token
_FIRST_REGION_CHANNEL = _ALL_SOURCE_CHANNEL + 1


def group_masks(parsing: np.ndarray, label_map: Any = "atr") -> np.ndarray:
    """Masks of the source parsing groups body, clothing, face and background.

    Args:
        parsing (`np.ndarray` of shape `(H, W)`): label ids.
        label_map: the label map of ``parsing`` (name, `LabelMap` or dict).
    Returns:
        `np.ndarray` float32 of shape `(4, H, W)`; background is everything outside the person (the groups' union),
        so the four masks partition the image when the label map's groups are disjoint (all shipped ones are).
    """
    label_map = parsing_utils.get_label_map(label_map)
    groups = {name: label_map.groups[name] for name in parsing_utils.GROUP_NAMES}  # body, clothing, face
    masks = list(parsing_utils.label_group_masks(parsing, groups).values())
    masks.append(~np.logical_or.reduce(masks))  # outside the person, the union of the groups
    return np.stack(masks).astype(np.float32)


def _heatmap_layer_names(heatmap_layers: str | Sequence[str] | None, layer_indicators: dict) -> set[str]:
    sizes = {name: indicators.shape[1] for name, indicators in layer_indicators.items()}
    if heatmap_layers is None:
        return set()
    if heatmap_layers == "largest":
        return {name for name, size in sizes.items() if size == max(sizes.values())}
    if heatmap_layers == "all":
        return set(sizes)
    unknown = sorted(set(heatmap_layers) - set(sizes))
    if unknown:
        raise ValueError(f"Unknown `heatmap_layers` {unknown}; the layers are {sorted(sizes)}.")
    return set(heatmap_layers)


def _layer_indicators(
    pipe: Any,
    source: PIL.Image.Image,
    parsing: np.ndarray,
    label_map: parsing_utils.LabelMap,
    masks: np.ndarray,
    height: int | None,
    width: int | None,
) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """The analysis ``masks`` `(channels, H, W)` as each TargetNet self-attention layer sees the source tokens.

    Returns layer name -> fraction of each source token inside each mask `(1, tokens, channels)`, resized by the
    code path of the pipeline's HPFA masks and CAA region indicators ([`TruePosePipeline.encode_source`], then
    [`TargetNet.prepare_reference`] with the masks in place of the regions), and the latent size `(h, w)`.
    """
    height, width = height or source.height, width or source.width
    device = pipe._execution_device
    reference, _ = pipe.encode_source([source], [parsing], label_map, height, width, device)
    latent_size = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    analysis = replace(reference, region_masks=torch.from_numpy(masks)[None].to(device))
    layers = pipe.target_unet.prepare_reference(analysis, latent_size)
    return {name.removesuffix(".processor"): layer.region_indicators for name, layer in layers.items()}, latent_size


def _received_attention(
    query: torch.Tensor, key: torch.Tensor, source_key: torch.Tensor, log_weight: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Attention each source token receives, averaged over queries, heads and rows: `(num_source_tokens,)`.

    Column sums of the HPFA-weighted attention matrix, computed ``chunk_size`` queries at a time (float32), so at
    most `(rows, heads, chunk_size, keys)` probabilities exist at once. (Column sums cannot come from the value-channel
    trick cheaply: it would need one value channel per source token.)
    """
    num_target = key.shape[2]
    query, keys = query.float(), torch.cat([key, source_key], dim=2).float()
    bias = F.pad(log_weight.float(), (num_target, 0))[:, None, None, :]
    scale = query.shape[-1] ** -0.5
    received = torch.zeros(source_key.shape[2], dtype=torch.float64, device=query.device)
    for start in range(0, query.shape[2], chunk_size):
        logits = query[:, :, start : start + chunk_size] @ keys.transpose(-1, -2) * scale + bias
        received += logits.softmax(dim=-1)[..., num_target:].sum(dim=(0, 1, 2), dtype=torch.float64)
    return received / (query.shape[0] * query.shape[1] * query.shape[2])


_SET_BY_ATTENTION_SHARES = (
    "callback_on_step_end",
    "output_type",
    "num_images_per_prompt",
    "return_dict",
    "cross_attention_kwargs",
)


def _recorded_steps(timestep_index: int | Sequence[int] | None, num_steps: int) -> list[int]:
    """The sorted denoising steps ``timestep_index`` names (negative ones count from the end; `None`: all)."""
    if timestep_index is None:
        return list(range(num_steps))
    indices = [timestep_index] if isinstance(timestep_index, int) else list(timestep_index)
    if not indices or any(not -num_steps <= i < num_steps for i in indices):
        raise ValueError(f"`timestep_index` {timestep_index!r} is outside the {num_steps} steps.")
    return sorted({i % num_steps for i in indices})


def _analysis_masks(parsing: np.ndarray, label_map: parsing_utils.LabelMap) -> tuple[list[str], np.ndarray]:
    """The names of the CAA regions present in ``parsing`` and the masks whose attention mass is measured,
    `(channels, H, W)` float32: the source groups (body, clothing, face, background), one channel that is 1 on every
    source token, then one per region (the channel layout `_layer_shares` reads)."""
    region_names, region_masks = parsing_utils.region_masks(parsing, label_map)
    masks = np.concatenate(
        [group_masks(parsing, label_map), np.ones((1, *parsing.shape), np.float32), region_masks.astype(np.float32)]
    )
    return region_names, masks


class _AttentionRecorder:
    """What one [`attention_shares`] call records: the recorders handed to TargetNet's processors and the step
    callback that counts the steps and interrupts the generation after the last requested one.

    ``totals``: layer name -> `(channels,)` float64 sum over the recorded steps of the attention mass on each mask
    channel; ``received``: layer name -> `(num_source_tokens,)` sum of [`_received_attention`] (``heatmap_names``
    only); ``timesteps``: the recorded steps' timesteps.
    """

    def __init__(
        self,
        steps: list[int],
        layer_indicators: dict[str, torch.Tensor],
        heatmap_names: set[str],
        heatmap_chunk_size: int,
    ) -> None:
        self.steps = steps
        self.layer_indicators = layer_indicators
        self.heatmap_names = heatmap_names
        self.heatmap_chunk_size = heatmap_chunk_size
        self.step = 0
        self.timesteps: list[int] = []
        self.totals: dict[str, torch.Tensor] = {}
        self.received: dict[str, torch.Tensor] = {}

    def recorders(self) -> dict[str, Callable[..., None]]:
        """Processor name -> recorder, for ``cross_attention_kwargs={"recorders": ...}``."""
        return {name + ".processor": self._recorder(name) for name in self.layer_indicators}

    def _recorder(self, name: str) -> Callable[..., None]:
        """The recorder of layer ``name``: at a requested step, adds the layer's attention mass on each mask channel
        (and, for a heatmap layer, the attention each source token receives)."""

        def record(query, key, value, source_key, source_value, log_weight):
            if self.step not in self.steps:
                return
            indicators = self.layer_indicators[name].to(query.device)
            _, mass = fused_reference_attention(
                query, key, value, source_key, source_value, log_weight, indicators.expand(len(query), -1, -1)
            )
            self.totals[name] = self.totals.get(name, 0) + mass.double().mean(dim=(0, 1, 2))
            if name in self.heatmap_names:
                layer_received = _received_attention(query, key, source_key, log_weight, self.heatmap_chunk_size)
                self.received[name] = self.received.get(name, 0) + layer_received

        return record

    def next_step(self, pipeline: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        """``callback_on_step_end``: the step that ends was ``step``."""
        if step in self.steps:
            self.timesteps.append(int(timestep))
        self.step = step + 1
        if self.step > self.steps[-1]:
            pipeline._interrupt = True  # the remaining steps are skipped: nothing more to record
        return callback_kwargs


def _layer_shares(
    totals: dict[str, torch.Tensor], count: int, region_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Layer name -> shares (see [`attention_shares`]'s ``"layers"``) from the recorded mass ``totals`` of
    ``count`` steps."""
    layers: dict[str, dict[str, Any]] = {}
    for name, total in totals.items():
        share = (total / count).tolist()
        source_share = share[_ALL_SOURCE_CHANNEL]
        entry = {"target": 1.0 - source_share}
        entry.update({group: share[i] for i, group in enumerate(_SOURCE_GROUPS)})
        entry["source"] = source_share
        entry["regions"] = {region: share[_FIRST_REGION_CHANNEL + i] for i, region in enumerate(region_names)}
        layers[name] = entry
    return layers


def _mean_shares(layers: dict[str, dict[str, Any]], region_names: Sequence[str]) -> dict[str, Any]:
    """The shares of ``layers`` averaged over layers (each layer counts once)."""
    mean: dict[str, Any] = {
        key: float(np.mean([layer[key] for layer in layers.values()])) for key in (*GROUPS, "source")
    }
    mean["regions"] = {
        region: float(np.mean([layer["regions"][region] for layer in layers.values()])) for region in region_names
    }
    return mean


@torch.no_grad()
def record_attention_shares(
    pipe: Any,
    source: PIL.Image.Image,
    source_parsing: Any = None,
    parsing_label_map: Any = "atr",
    num_inference_steps: int = 35,
    timestep_index: int | Sequence[int] | None = None,
    heatmap_layers: str | Sequence[str] | None = "largest",
    heatmap_chunk_size: int = 1024,
    height: int | None = None,
    width: int | None = None,
) -> tuple[dict[str, Any], Callable[[], dict[str, Any]]]:
    """Records [`attention_shares`] during one ordinary call of ``pipe`` on ``source`` (e.g. the generation a user
    asked for, so the shares need no second run); the arguments are [`attention_shares`]'s.

    Returns:
        ``(call_kwargs, finish)``: pass ``**call_kwargs`` (``source_parsing``, ``parsing_label_map``,
        ``callback_on_step_end``, ``cross_attention_kwargs``) to the call of ``pipe`` with ``source`` and the same
        ``num_inference_steps``, ``height`` and ``width``; ``finish()`` then returns the shares. The call stops after
        the last requested step (with ``timestep_index=None``, the last step: the call returns its images).
    """
    num_steps = int(num_inference_steps)
    steps = _recorded_steps(timestep_index, num_steps)

    # the parsing the pipeline will use (parsed once here when the pipeline has a parser), and the analysis masks
    # as each layer sees them
    parsing_maps, label_map = pipe.parse_sources([source], source_parsing, parsing_label_map)
    parsing = parsing_maps[0]
    region_names, masks = _analysis_masks(parsing, label_map)
    layer_indicators, latent_size = _layer_indicators(pipe, source, parsing, label_map, masks, height, width)
    recorder = _AttentionRecorder(
        steps, layer_indicators, _heatmap_layer_names(heatmap_layers, layer_indicators), heatmap_chunk_size
    )
    call_kwargs = {
        "source_parsing": parsing,
        "parsing_label_map": label_map,
        "callback_on_step_end": recorder.next_step,
        "cross_attention_kwargs": {"recorders": recorder.recorders()},
    }

    def finish() -> dict[str, Any]:
        count = len(steps)
        layers = _layer_shares(recorder.totals, count, region_names)
        return {
            "layers": layers,
            "mean": _mean_shares(layers, region_names),
            "received": {
                name: (total / count).reshape(token_grid(latent_size, total.numel())).cpu().numpy()
                for name, total in recorder.received.items()
            },
            "groups": GROUPS,
            "regions": tuple(region_names),
            "steps": steps,
            "timesteps": recorder.timesteps,
            "source_size": tuple(parsing.shape),
            "latent_size": tuple(latent_size),
        }

    return call_kwargs, finish


@torch.no_grad()
def attention_shares(
    pipe: Any,
    source_image: PIL.Image.Image | np.ndarray,
    target_pose: Any,
    source_parsing: Any = None,
    parsing_label_map: Any = "atr",
    num_inference_steps: int = 35,
    timestep_index: int | Sequence[int] | None = None,
    guidance_scale: float = 2.0,
    generator: torch.Generator | None = None,
    heatmap_layers: str | Sequence[str] | None = "largest",
    heatmap_chunk_size: int = 1024,
    **pipeline_kwargs,
) -> dict[str, Any]:
    r"""Share of TargetNet self-attention on the target's tokens and on each source parsing group and region.

    Runs ``pipe`` on one source/pose pair and records, at the requested denoising steps, every TargetNet ``attn1``
    layer's attention mass (see the module docstring). The generation stops after the last requested step.

    Args:
        pipe ([`TruePosePipeline`]): the pipeline (any size, any device; left as it was found).
        source_image (`PIL.Image.Image` or `np.ndarray`): one RGB source person.
        target_pose: one target pose, as the pipeline takes it (keypoints `(18, 2|3)`, skeleton image, ...).
        source_parsing (label-id map `(H, W)`, *optional*): parsing of the source; the pipeline's parser otherwise.
        parsing_label_map: label table of ``source_parsing`` (``"atr"``, ``"lip"``, ... or a `LabelMap`/dict).
        num_inference_steps (`int`): steps of the generation the statistic is taken from.
        timestep_index (`int`, sequence of `int` or `None`): denoising step(s) to record, 0 = the first (noisiest);
            negative values count from the end; `None` averages over all steps.
        guidance_scale (`float`): as in the pipeline; only the conditional rows are measured.
        generator (`torch.Generator`, *optional*): for a reproducible generation.
        heatmap_layers (`"largest"`, `"all"`, `None` or layer names): layers for which the attention each source
            token receives is recorded (for [`attention_heatmap`]); ``"largest"`` = the layers with most tokens.
        heatmap_chunk_size (`int`): queries per block when recording the heatmap (memory: `(rows, heads, chunk,
            keys)` float32 probabilities at a time).
        pipeline_kwargs: more pipeline arguments (``height``, ``width``, ``latents``, ...).

    Returns:
        `dict` with

        - ``"layers"``: layer name (e.g. ``"up_blocks.1.attentions.0.transformer_blocks.0.attn1"``) -> shares: one
          float per entry of [`GROUPS`] (they sum to 1), ``"source"`` (= 1 - target) and ``"regions"``
          (region name -> share of all attention);
        - ``"mean"``: the same, averaged over layers (each layer counts once);
        - ``"received"``: layer name -> `np.ndarray` `(h_l, w_l)`, attention each source token receives per query
          (averaged over queries, heads, rows and steps; it sums to the layer's ``"source"`` share);
        - ``"groups"``, ``"regions"`` (names present), ``"steps"`` (indices recorded), ``"timesteps"``,
          ``"source_size"`` `(H, W)` and ``"latent_size"`` `(h, w)`.
    """
    for argument in _SET_BY_ATTENTION_SHARES:
        if argument in pipeline_kwargs:
            raise ValueError(f"`{argument}` is set by `attention_shares` and cannot be passed.")
    if isinstance(source_image, (list, tuple)) or (isinstance(source_image, np.ndarray) and source_image.ndim == 4):
        raise ValueError("`attention_shares` takes one source image (and one target pose).")
    source = to_pil_image(source_image, "source_image")
    call_kwargs, finish = record_attention_shares(
        pipe, source, source_parsing, parsing_label_map, num_inference_steps, timestep_index, heatmap_layers,
        heatmap_chunk_size, pipeline_kwargs.get("height"), pipeline_kwargs.get("width"),
    )  # fmt: skip
    pipe(
        source,
        target_pose,
        num_inference_steps=int(num_inference_steps),
        guidance_scale=guidance_scale,
        generator=generator,
        output_type="latent",
        **call_kwargs,
        **pipeline_kwargs,
    )
    return finish()


# ----------------------------------------------------------------------------------------------------------------------
# Pictures (PIL only, no plotting library needed)
# ----------------------------------------------------------------------------------------------------------------------

GROUP_COLOURS: dict[str, tuple[int, int, int]] = {
    "target": (150, 150, 150),
    "body": (228, 120, 60),
    "clothing": (60, 120, 200),
    "face": (230, 190, 60),
    "background": (110, 180, 110),
}

# a perceptually ordered dark-to-bright ramp (inferno-like) for heatmaps
_RAMP = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39],
     [252, 255, 164]],
    dtype=np.float64,
)  # fmt: skip


def _font(size: int) -> PIL.ImageFont.ImageFont:
    try:
        return PIL.ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return PIL.ImageFont.load_default()


def short_layer_name(name: str) -> str:
    """``"up_blocks.1.attentions.0.transformer_blocks.0.attn1"`` -> ``"up1.a0.t0"``; ``"mid_block..."`` -> ``"mid.a0.t0"``."""
    parts = name.split(".")
    block = parts[0].replace("_blocks", "").replace("_block", "")
    numbers = [p for p in parts[1:] if p.isdigit()]
    if block == "mid":
        return "mid." + ".".join(f"{p}{n}" for p, n in zip(("a", "t"), numbers))
    return f"{block}{numbers[0]}." + ".".join(f"{p}{n}" for p, n in zip(("a", "t"), numbers[1:]))


def plot_attention_shares(
    shares: dict[str, Any], path: str | os.PathLike | None = None, title: str | None = None
) -> PIL.Image.Image:
    """Bar chart of [`attention_shares`]: one stacked bar per layer and for the mean, then the mean region shares.

    Args:
        shares: the result of [`attention_shares`].
        path: where to save the PNG (optional).
        title: a heading; by default the recorded steps.
    Returns:
        The chart as a `PIL.Image.Image`.
    """
    font, small = _font(13), _font(11)
    rows = [(short_layer_name(name), layer) for name, layer in shares["layers"].items()] + [("mean", shares["mean"])]
    regions = sorted(shares["mean"]["regions"].items(), key=lambda item: -item[1])
    label_width, bar_width, row_height, margin = 110, 560, 22, 12
    top = 58
    regions_top = top + len(rows) * row_height + 40
    height = regions_top + 22 + len(regions) * row_height + margin
    image = PIL.Image.new("RGB", (label_width + bar_width + 2 * margin + 60, height), "white")
    draw = PIL.ImageDraw.Draw(image)
    steps = shares.get("steps", [])
    heading = title or f"TargetNet self-attention shares (steps {steps[0]}..{steps[-1]} of the recorded run)"
    draw.text((margin, 8), heading, fill="black", font=font)
    x = margin
    for group in GROUPS:  # legend
        draw.rectangle([x, 32, x + 12, 44], fill=GROUP_COLOURS[group])
        draw.text((x + 16, 31), group, fill="black", font=small)
        x += 24 + int(draw.textlength(group, font=small))
    for i, (label, layer) in enumerate(rows):
        y = top + i * row_height
        draw.text((margin, y + 3), label, fill="black", font=small)
        x0 = margin + label_width
        for group in GROUPS:
            width = layer[group] * bar_width
            draw.rectangle([x0, y, x0 + width, y + row_height - 4], fill=GROUP_COLOURS[group])
            text = f"{100 * layer[group]:.0f}%"
            if width > draw.textlength(text, font=small) + 4:
                draw.text((x0 + 2, y + 3), text, fill="white" if group != "face" else "black", font=small)
            x0 += width
    draw.text((margin, regions_top), "mean share of all attention per source region", fill="black", font=font)
    largest = max([value for _, value in regions] + [1e-12])
    for i, (region, value) in enumerate(regions):
        y = regions_top + 22 + i * row_height
        draw.text((margin, y + 3), region, fill="black", font=small)
        x0 = margin + label_width
        width = value / largest * (bar_width - 60)
        draw.rectangle([x0, y, x0 + width, y + row_height - 4], fill=(90, 90, 160))
        draw.text((x0 + width + 4, y + 3), f"{100 * value:.1f}%", fill="black", font=small)
    if path is not None:
        image.save(path, format="PNG")
    return image


def _colourise(values: np.ndarray) -> np.ndarray:
    """`(H, W)` in [0, 1] -> `(H, W, 3)` uint8 through the heatmap ramp."""
    positions = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(positions).astype(int).clip(0, len(_RAMP) - 2)
    fraction = (positions - low)[..., None]
    return (_RAMP[low] * (1 - fraction) + _RAMP[low + 1] * fraction).round().astype(np.uint8)


def attention_map(shares: dict[str, Any], layers: Sequence[str] | None = None) -> np.ndarray:
    """Attention received per source pixel `(H, W)`, averaged over ``layers`` (default: all recorded).

    Each layer's per-token map is divided by the pixels per token, upsampled bilinearly to the source size and the
    layers averaged; the map sums to (about) the layers' mean ``"source"`` share.
    """
    names = list(shares["received"]) if layers is None else list(layers)
    if not names:
        raise ValueError("No per-token attention was recorded; call `attention_shares(..., heatmap_layers=...)`.")
    height, width = shares["source_size"]
    total = np.zeros((height, width), dtype=np.float64)
    for name in names:
        grid = torch.from_numpy(np.asarray(shares["received"][name], dtype=np.float64))
        per_pixel = grid * grid.numel() / (height * width)
        total += F.interpolate(per_pixel[None, None], size=(height, width), mode="bilinear")[0, 0].numpy()
    return total / len(names)


def attention_heatmap(
    shares: dict[str, Any],
    source_image: PIL.Image.Image | np.ndarray,
    path: str | os.PathLike | None = None,
    layers: Sequence[str] | None = None,
    alpha: float = 0.6,
    min_height: int = 256,
) -> PIL.Image.Image:
    """The source image beside an overlay of the attention each source pixel receives from the target's queries.

    Args:
        shares: the result of [`attention_shares`] (with ``heatmap_layers`` recorded).
        source_image: the source image the shares were computed for.
        path: where to save the PNG (optional).
        layers: layers to average (default: all recorded in ``shares["received"]``).
        alpha: opacity of the heatmap over the image.
        min_height: small images are upscaled to at least this height for viewing.
    Returns:
        `PIL.Image.Image` `[source | overlay | colour bar]`, the map normalised to its maximum.
    """
    source = to_pil_image(source_image, "source_image")
    values = attention_map(shares, layers)
    if source.size != (values.shape[1], values.shape[0]):
        source = source.resize((values.shape[1], values.shape[0]), PIL.Image.BICUBIC)
    normalised = values / max(values.max(), 1e-12)
    overlay = (1 - alpha) * np.asarray(source, dtype=np.float64) + alpha * _colourise(normalised)
    overlay = PIL.Image.fromarray(overlay.round().astype(np.uint8))
    scale = max(1, -(-min_height // source.height))
    size = (source.width * scale, source.height * scale)
    source, overlay = source.resize(size, PIL.Image.NEAREST), overlay.resize(size, PIL.Image.NEAREST)
    bar = PIL.Image.fromarray(_colourise(np.linspace(1, 0, size[1])[:, None].repeat(12, axis=1)))
    gap = 8
    image = PIL.Image.new("RGB", (2 * size[0] + 3 * gap + 12 + 40, size[1]), "white")
    image.paste(source, (0, 0))
    image.paste(overlay, (size[0] + gap, 0))
    image.paste(bar, (2 * size[0] + 2 * gap, 0))
    draw = PIL.ImageDraw.Draw(image)
    small = _font(11)
    draw.text((2 * size[0] + 2 * gap + 16, 0), "max", fill="black", font=small)
    draw.text((2 * size[0] + 2 * gap + 16, size[1] - 14), "0", fill="black", font=small)
    if path is not None:
        image.save(path, format="PNG")
    return image
