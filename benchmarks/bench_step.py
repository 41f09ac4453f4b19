#!/usr/bin/env python
"""Cost of HPFA and CAA per denoising step, and where the time of a whole TruePose generation goes.

Random weights, full SD-1.5 sizes by default (nothing is downloaded). In one run:

1. a plain diffusers ``UNet2DConditionModel`` step;
2. reference attention (Animate Anyone): the same UNet with stock ``AttnProcessor2_0``-style self-attention over
   ``[target ; source]`` keys/values, no weights, no mask (`ReferenceAttnProcessor` below);
3. TargetNet with HPFA only (``caa_blocks=()``); 4. TargetNet with HPFA + CAA (default ``caa_blocks``);
   plus the same two with the attention replaced by the mask-free form (`maskfree_reference_attention`), and CAA with
   the library's form before commit 3b2eab0 (`unpadded_reference_attention`), both written here, not in the library;
5. a whole generation through `TruePosePipeline` with full-size random components, its time split into TargetNet
   steps, SourceNet, VAE encode/decode, CLIP, parser, pose encoder and glue (total minus model calls).

All UNet variants share one set of weights (``load_state_dict(assign=True)``), so they cost no extra memory.
Timings are medians of ``--repeats`` runs after one warm-up, the variants interleaved round-robin so that a change
of machine load hits them alike. Peak memory is measured in a separate pass at the end (CUDA:
``max_memory_allocated``; CPU: peak RSS via ``/proc/self/status`` VmHWM reset through ``/proc/self/clear_refs``,
with glibc's mmap threshold lowered to 1 MiB during that pass so freed activations go back to the OS).

Prints tables and, on its last line, one JSON object. Examples::

    python benchmarks/bench_step.py --quick                 # reduced sizes, < 1 min on a 2-core CPU
    python benchmarks/bench_step.py --steps 3 --repeats 3   # full size on CPU: 3 generation steps, extrapolated to 35
    python benchmarks/bench_step.py --device cuda --compile --offload
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: E402
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection  # noqa: E402

import truepose.models.attention as truepose_attention  # noqa: E402
from truepose import TruePosePipeline  # noqa: E402
from truepose.conditioning import parsing as parsing_utils  # noqa: E402
from truepose.models import (  # noqa: E402
    PoseEncoder,
    SourceReference,
    TargetNet,
    capture_reference_tokens,
)
from truepose.models.attention import (  # noqa: E402
    HPFAAttnProcessor,
    LayerReference,
    fused_reference_attention,
    hpfa_log_weights,
)
from truepose.pipeline import SD15_SCHEDULER_CONFIG  # noqa: E402
from truepose.testing import TINY_KEYPOINTS, tiny_person  # noqa: E402

TARGETS = {
    "hpfa_over_reference": 1.05,
    "caa_over_hpfa": 1.10,
    "glue_fraction": 0.03,
    "oneoff_fraction": 0.05,
    "peak_mem_ratio_hpfa_over_reference": 1.10,
}

SDP_BACKENDS = {-1: "error", 0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}

# Log-weights below this are "never attend": exp(-1000) is 0 in every float format, and -1000 / scale stays finite in
# fp16 for head dims up to 256 (the mask-free form puts log w / scale in a key channel).
MIN_LOG_WEIGHT = -1000.0


@dataclass(frozen=True)
class Size:
    """Model and image sizes of one benchmark configuration."""

    name: str
    unet_channels: tuple[int, ...]
    height: int
    width: int
    steps: int
    vae_channels: tuple[int, ...]
    clip: dict = field(hash=False)


FULL = Size(
    name="full (SD-1.5 UNet, SD VAE, CLIP ViT-L/14, 512x352)",
    unet_channels=(320, 640, 1280, 1280),
    height=512,
    width=352,
    steps=35,
    vae_channels=(128, 256, 512, 512),
    clip=dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=768,
    ),
)
QUICK = Size(
    name="quick (UNet 64-128-256-256, VAE 32-64-128-128, 4-layer CLIP, 256x176)",
    unet_channels=(64, 128, 256, 256),
    height=256,
    width=176,
    steps=5,
    vae_channels=(32, 64, 128, 128),
    clip=dict(
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        patch_size=14,
        image_size=224,
        projection_dim=768,
    ),
)
EMBED_DIM = 768  # SD-1.5 cross-attention width = CLIP projection = CAA region embedding width


# ----------------------------------------------------------------------------------------------------------------------
# Alternative attention forms (benchmark only; the library keeps `fused_reference_attention`)
# ----------------------------------------------------------------------------------------------------------------------


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def maskfree_reference_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    source_key: torch.Tensor,
    source_value: torch.Tensor,
    source_log_weight: torch.Tensor,
    region_indicators: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`fused_reference_attention` without an attention mask, so flash kernels stay eligible.

    Queries get one extra channel that is 1, keys one that is ``log w_j / scale`` (0 on target tokens), so
    ``scale * q'.k'_j = scale * q.k_j + log w_j`` exactly; ``scale = 1 / sqrt(head_dim)`` of the *original* head dim is
    passed explicitly. Values get the region indicators as extra channels (as in the library). Queries, keys and
    values are zero-padded to one common width, a multiple of 8 (flash/efficient kernels need equal, aligned dims).

    Shapes as in [`fused_reference_attention`].
    """
    head_dim, value_dim = query.shape[-1], value.shape[-1]
    num_regions = 0 if region_indicators is None else region_indicators.shape[-1]
    width = _round_up(max(head_dim + 1, value_dim + num_regions), 8)
    scale = 1.0 / math.sqrt(head_dim)
    batch, heads, num_queries, _ = query.shape
    num_target, num_source = key.shape[2], source_key.shape[2]

    q = query.new_zeros(batch, heads, num_queries, width)
    q[..., :head_dim] = query
    q[..., head_dim] = 1.0
    keys = query.new_zeros(batch, heads, num_target + num_source, width)
    keys[:, :, :num_target, :head_dim] = key
    keys[:, :, num_target:, :head_dim] = source_key
    log_weight = source_log_weight.float().clamp_min(MIN_LOG_WEIGHT) / scale
    keys[:, :, num_target:, head_dim] = log_weight[:, None, :].to(query.dtype)
    values = query.new_zeros(batch, heads, num_target + num_source, width)
    values[:, :, :num_target, :value_dim] = value
    values[:, :, num_target:, :value_dim] = source_value
    if region_indicators is not None:
        values[:, :, num_target:, value_dim : value_dim + num_regions] = region_indicators[:, None].to(query.dtype)
    out = F.scaled_dot_product_attention(q, keys, values, scale=scale)
    if region_indicators is None:
        return out[..., :value_dim], None
    return out[..., :value_dim], out[..., value_dim : value_dim + num_regions]


def unpadded_reference_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    source_key: torch.Tensor,
    source_value: torch.Tensor,
    source_log_weight: torch.Tensor,
    region_indicators: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The library's form before commit 3b2eab0: CAA's region indicators widen the values only.

    Values are then ``head_dim + num_regions`` wide while queries/keys stay ``head_dim`` wide; no fused SDPA kernel
    takes unequal widths, so SDPA falls back to the math kernel, which materialises the attention matrix. Kept here
    to measure what the padding in the library buys. Without regions it is the library function.
    """
    if region_indicators is None:
        return fused_reference_attention(
            query, key, value, source_key, source_value, source_log_weight, region_indicators
        )
    num_target, head_dim = key.shape[2], value.shape[-1]
    keys = torch.cat([key, source_key], dim=2)
    values = torch.cat([value, source_value], dim=2)
    indicators = F.pad(region_indicators, (0, 0, num_target, 0)).to(values.dtype)
    values = torch.cat([values, indicators[:, None].expand(-1, values.shape[1], -1, -1)], dim=-1)
    bias = F.pad(source_log_weight, (num_target, 0)).to(query.dtype)[:, None, None, :]
    out = F.scaled_dot_product_attention(query, keys, values, attn_mask=bias)
    return out[..., :head_dim], out[..., head_dim:]


ATTENTION_FORMS: dict[str, Callable] = {
    "library": fused_reference_attention,
    "maskfree": maskfree_reference_attention,
    "unpadded": unpadded_reference_attention,
}


@contextlib.contextmanager
def attention_form(name: str) -> Iterator[None]:
    """Make the HPFA/CAA processors call ``ATTENTION_FORMS[name]`` (they look the function up at call time)."""
    original = truepose_attention.fused_reference_attention
    truepose_attention.fused_reference_attention = ATTENTION_FORMS[name]
    try:
        yield
    finally:
        truepose_attention.fused_reference_attention = original


class ReferenceAttnProcessor(AttnProcessor2_0):
    r"""Reference attention (Animate Anyone) baseline: ``AttnProcessor2_0`` with keys/values over ``[x ; bank]``.

    ``tokens`` `(batch, num_source_tokens, channels)` is SourceNet's ``attn1`` input at this layer; no weights, no
    mask (every row sees the source; the compute is the same either way).
    """

    def __init__(self):
        super().__init__()
        self.tokens: torch.Tensor | None = None

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.tokens is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        batch_size = hidden_states.shape[0]
        context = torch.cat([hidden_states, self.tokens.to(hidden_states.dtype)], dim=1)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        hidden_states = F.scaled_dot_product_attention(query, key, value)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


# ----------------------------------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------------------------------


def make_sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


@contextlib.contextmanager
def record_sdpa_backends(counts: dict[str, int]) -> Iterator[None]:
    """Count, by kernel, the SDPA calls made inside the block (``torch._fused_sdp_choice`` on each call's inputs)."""
    original = F.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        try:
            choice = torch._fused_sdp_choice(query, key, value, attn_mask, dropout_p, is_causal, scale=scale)
            counts[SDP_BACKENDS.get(int(choice), str(choice))] += 1
        except Exception:  # noqa: BLE001 - bookkeeping only
            counts["unknown"] += 1
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)

    F.scaled_dot_product_attention = recording
    torch.nn.functional.scaled_dot_product_attention = recording
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        torch.nn.functional.scaled_dot_product_attention = original


class PeakMemory:
    """Peak memory *increase* during one call: CUDA allocator peak, or CPU peak RSS (VmHWM reset via clear_refs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reason: str | None = None
        self.mode = "cuda" if device.type == "cuda" else "clear_refs"
        self._libc = None
        if device.type == "cuda":
            return
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self._libc = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._read_status("VmHWM")
        except OSError as error:
            try:
                import psutil  # noqa: F401
            except ImportError:
                self.reason = f"cannot reset peak RSS through /proc/self/clear_refs ({error}) and psutil is missing"
                return
            self.mode = "psutil"  # sample RSS every millisecond in a thread (may miss very short peaks)

    @staticmethod
    def _read_status(field_name: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(f"{field_name} not in /proc/self/status")

    @property
    def available(self) -> bool:
        return self.reason is None

    @contextlib.contextmanager
    def low_mmap_threshold(self) -> Iterator[None]:
        """Allocations >= 1 MiB through mmap, so freed activations leave RSS (glibc only; no-op elsewhere).

        glibc cannot restore its dynamic threshold afterwards, which is why this pass runs after all timings.
        """
        if self._libc is not None:
            self._libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
            self._libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD
        yield

    def measure(self, fn: Callable[[], object]) -> int | None:
        if not self.available:
            return None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            fn()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - base
        if self._libc is not None:
            self._libc.malloc_trim(0)
        if self.mode == "psutil":
            return self._measure_psutil(fn)
        base = self._read_status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        fn()
        return self._read_status("VmHWM") - base

    @staticmethod
    def _measure_psutil(fn: Callable[[], object]) -> int:
        import psutil

        process = psutil.Process()
        base = process.memory_info().rss
        peak, done = [base], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.001)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            fn()
        finally:
            done.set()
            thread.join()
        return max(peak[0], process.memory_info().rss) - base


def time_round_robin(
    calls: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]
) -> dict[str, list[float]]:
    """Run every call ``repeats`` times, interleaved; returns seconds per call."""
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        for name, fn in calls.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


class ComponentTimer:
    """Wall time spent inside module forwards and pipeline methods, synchronising CUDA at both ends."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._handles: list = []
        self._restore: list[tuple[object, str]] = []

    def _timed(self, name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            self.sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                self.calls[name].append(time.perf_counter() - start)

        return wrapper

    def method(self, obj: object, attribute: str, name: str) -> None:
        """Time every call of ``obj.attribute`` (an instance attribute shadows the bound method until `remove`)."""
        setattr(obj, attribute, self._timed(name, getattr(obj, attribute)))
        self._restore.append((obj, attribute))

    def module(self, module: torch.nn.Module, name: str) -> None:
        starts: list[float] = []

        def pre_hook(*_):
            self.sync()
            starts.append(time.perf_counter())

        def post_hook(*_):
            self.sync()
            self.calls[name].append(time.perf_counter() - starts.pop())

        self._handles += [module.register_forward_pre_hook(pre_hook), module.register_forward_hook(post_hook)]

    def total(self, name: str) -> float:
        return float(sum(self.calls.get(name, [])))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for obj, attribute in self._restore:
            delattr(obj, attribute)
        self._handles, self._restore = [], []


# ----------------------------------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------------------------------


def unet_kwargs(size: Size) -> dict:
    """SD-1.5's UNet config (diffusers defaults) at ``size``'s widths."""
    return dict(
        sample_size=64,
        block_out_channels=size.unet_channels,
        cross_attention_dim=EMBED_DIM,
        attention_head_dim=8,
    )


def _non_processor_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".processor." not in k}


def shared_weights(cls: type, weights_from: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """A new ``cls(**kwargs)`` whose UNet parameters *are* ``weights_from``'s (no copy, no extra memory)."""
    with torch.device("meta"):
        model = cls(**kwargs)
    missing, unexpected = model.load_state_dict(_non_processor_state(weights_from), strict=False, assign=True)
    if unexpected or any(".processor." not in k for k in missing):
        raise RuntimeError(f"weights do not match: missing {missing}, unexpected {unexpected}")
    if any(p.is_meta for p in model.parameters()):
        raise RuntimeError("some parameters stayed on the meta device")
    return model.eval()


def make_person(height: int, width: int, seed: int = 0) -> tuple[PIL.Image.Image, np.ndarray, np.ndarray]:
    """A blocky person image, its ATR parsing map `(H, W)` and COCO-18 keypoints in that frame (the tiny test person)."""
    _, parsing = tiny_person(seed)
    parsing = np.asarray(PIL.Image.fromarray(parsing.astype(np.uint8)).resize((width, height), PIL.Image.NEAREST))
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(18, 3))
    image = palette[parsing] + rng.integers(-20, 20, size=(height, width, 3))
    keypoints = TINY_KEYPOINTS.copy()
    present = keypoints[:, 2] > 0
    keypoints[present, 0] *= width / 64
    keypoints[present, 1] *= height / 64
    return PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)), parsing.astype(np.int64), keypoints


@dataclass
class StepSetup:
    """Everything a denoising step needs, shared by all variants."""

    latents: torch.Tensor
    timestep: torch.Tensor
    encoder_hidden_states: torch.Tensor
    pose_features: torch.Tensor
    source_reference: SourceReference
    latent_size: tuple[int, int]


def make_step_setup(
    size: Size, source_unet: UNet2DConditionModel, device: torch.device, dtype: torch.dtype
) -> StepSetup:
    """Batch-2 (CFG) step inputs; the SourceNet bank from one SourceNet pass; masks from the hand-made parsing."""
    generator = torch.Generator().manual_seed(0)
    h, w = size.height // 8, size.width // 8
    _, parsing, _ = make_person(size.height, size.width)
    label_map = parsing_utils.get_label_map("atr")
    person = torch.from_numpy(parsing_utils.person_mask(parsing, label_map).astype(np.float32))[None, None]
    _, regions = parsing_utils.region_masks(parsing, label_map)
    regions = torch.from_numpy(regions.astype(np.float32))[None]
    source_latents = torch.randn(1, 4, h, w, generator=generator).to(device, dtype)
    image_embeds = torch.randn(1, 1, EMBED_DIM, generator=generator).to(device, dtype)
    with torch.inference_mode():
        bank = capture_reference_tokens(source_unet, source_latents, image_embeds)
    reference = SourceReference(
        bank=bank,
        person_mask=person.to(device),
        region_masks=regions.to(device),
        region_embeds=torch.randn(1, regions.shape[1], EMBED_DIM, generator=generator).to(device, dtype),
        source_dropped=torch.zeros(1, dtype=torch.bool, device=device),
    ).with_unconditional()
    return StepSetup(
        latents=torch.randn(2, 4, h, w, generator=generator).to(device, dtype),
        timestep=torch.tensor(500, device=device),
        encoder_hidden_states=torch.cat([torch.zeros_like(image_embeds), image_embeds]),
        pose_features=0.1 * torch.randn(2, size.unet_channels[0], h, w, generator=generator).to(device, dtype),
        source_reference=reference,
        latent_size=(h, w),
    )


def build_unets(size: Size, device: torch.device, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """TargetNet (HPFA+CAA) with random weights, and weight-sharing plain / reference / HPFA-only / Source UNets."""
    torch.manual_seed(0)
    kwargs = unet_kwargs(size)
    caa = TargetNet(**kwargs, region_embed_dim=EMBED_DIM).eval().to(device, dtype)
    unets = {
        "caa": caa,
        "hpfa": shared_weights(TargetNet, caa, **kwargs, region_embed_dim=EMBED_DIM, caa_blocks=()),
        "plain": shared_weights(UNet2DConditionModel, caa, **kwargs),
        "reference": shared_weights(UNet2DConditionModel, caa, **kwargs),
        "source": shared_weights(UNet2DConditionModel, caa, **kwargs),
    }
    unets["reference"].set_attn_processor(
        {
            name: ReferenceAttnProcessor() if name.endswith("attn1.processor") else AttnProcessor2_0()
            for name in unets["reference"].attn_processors
        }
    )
    return unets


def step_calls(unets: dict[str, torch.nn.Module], setup: StepSetup) -> dict[str, Callable[[], object]]:
    """One denoising step (batch 2) per variant."""
    layer_references = unets["caa"].prepare_reference(setup.source_reference, setup.latent_size)
    for name, processor in unets["reference"].attn_processors.items():
        if isinstance(processor, ReferenceAttnProcessor):
            processor.tokens = setup.source_reference.bank[name]
    x, t, emb = setup.latents, setup.timestep, setup.encoder_hidden_states

    def target_step(unet: torch.nn.Module, form: str) -> Callable[[], object]:
        def call():
            with torch.inference_mode(), attention_form(form):
                return unet(
                    x, t, emb, pose_features=setup.pose_features, layer_references=layer_references, return_dict=False
                )

        return call

    def unet_step(unet: torch.nn.Module) -> Callable[[], object]:
        def call():
            with torch.inference_mode():
                return unet(x, t, emb, return_dict=False)

        return call

    return {
        "plain": unet_step(unets["plain"]),
        "reference": unet_step(unets["reference"]),
        "hpfa": target_step(unets["hpfa"], "library"),
        "caa": target_step(unets["caa"], "library"),
        "hpfa_maskfree": target_step(unets["hpfa"], "maskfree"),
        "caa_maskfree": target_step(unets["caa"], "maskfree"),
        "caa_unpadded": target_step(unets["caa"], "unpadded"),
    }


VARIANT_LABELS = {
    "plain": "1 plain UNet2DConditionModel",
    "reference": "2 reference attention (AttnProcessor2_0, [x;src])",
    "hpfa": "3 TargetNet HPFA (caa_blocks=())",
    "caa": "4 TargetNet HPFA+CAA (default)",
    "hpfa_maskfree": "3' HPFA, mask-free form",
    "caa_maskfree": "4' HPFA+CAA, mask-free form",
    "caa_unpadded": '4" HPFA+CAA, unpadded (pre-3b2eab0)',
}


# ----------------------------------------------------------------------------------------------------------------------
# Attention-level check and micro-benchmark
# ----------------------------------------------------------------------------------------------------------------------


def attention_check_and_timing(
    size: Size, num_regions: int, device: torch.device, dtype: torch.dtype, repeats: int
) -> dict:
    """Exactness of the alternative forms in float32 (CPU) and their speed at the largest layer's shapes."""
    generator = torch.Generator().manual_seed(0)
    batch, heads = 2, 8
    head_dim = size.unet_channels[0] // heads
    tokens = (size.height // 8) * (size.width // 8)

    def inputs(num_tokens: int, tensor_dtype: torch.dtype, tensor_device: torch.device):
        q, k, v, sk, sv = (torch.randn(batch, heads, num_tokens, head_dim, generator=generator) for _ in range(5))
        mask = (torch.rand(batch, num_tokens, generator=generator) > 0.4).float()
        log_w = hpfa_log_weights(mask, sigma=0.3, delta=0.6)
        log_w[0] = float("-inf")  # the CFG unconditional row
        indicators = torch.rand(batch, num_tokens, num_regions, generator=generator)
        moved = [t.to(tensor_device, tensor_dtype) for t in (q, k, v, sk, sv)]
        return (*moved, log_w.to(tensor_device), indicators.to(tensor_device, tensor_dtype))

    # exactness, float32 on CPU, a layer-sized problem
    q, k, v, sk, sv, log_w, indicators = inputs(min(tokens, 1024), torch.float32, torch.device("cpu"))
    errors = {}
    for form in ("maskfree", "unpadded"):
        for with_regions in (False, True):
            ind = indicators if with_regions else None
            ref_out, ref_mass = fused_reference_attention(q, k, v, sk, sv, log_w, ind)
            out, mass = ATTENTION_FORMS[form](q, k, v, sk, sv, log_w, ind)
            error = (out - ref_out).abs().max().item()
            if with_regions:
                error = max(error, (mass - ref_mass).abs().max().item())
            errors[f"{form}{'_regions' if with_regions else ''}"] = error

    # speed at the largest layer, on the benchmark device and dtype
    sync = make_sync(device)
    q, k, v, sk, sv, log_w, indicators = inputs(tokens, dtype, device)
    calls, backends = {}, {}
    for form in ATTENTION_FORMS:
        for with_regions in (False, True):
            ind = indicators if with_regions else None
            name = f"{form}{'+regions' if with_regions else ''}"
            calls[name] = lambda f=ATTENTION_FORMS[form], i=ind: f(q, k, v, sk, sv, log_w, i)
            counts: dict[str, int] = defaultdict(int)
            with torch.inference_mode(), record_sdpa_backends(counts):
                calls[name]()  # warm-up, and the kernel it gets
            backends[name] = ",".join(sorted(counts))
    calls["reference (no mask)"] = lambda: F.scaled_dot_product_attention(
        q, torch.cat([k, sk], 2), torch.cat([v, sv], 2)
    )
    backends["reference (no mask)"] = SDP_BACKENDS.get(
        int(torch._fused_sdp_choice(q, torch.cat([k, sk], 2), torch.cat([v, sv], 2), None, 0.0, False)), "?"
    )
    with torch.inference_mode():
        times = time_round_robin(calls, repeats, sync)
    return {
        "shape": f"batch {batch}, heads {heads}, {tokens} queries, {2 * tokens} keys, head dim {head_dim}, "
        f"{num_regions} regions, {str(dtype).removeprefix('torch.')}",
        "max_abs_error_vs_library_fp32": errors,
        "ms": {name: 1000 * statistics.median(t) for name, t in times.items()},
        "sdpa_kernel": backends,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Where HPFA's extra time goes: one self-attention layer, processor level
# ----------------------------------------------------------------------------------------------------------------------


class _NoBiasForm:
    """`fused_reference_attention` with the HPFA bias dropped (plain reference attention inside the HPFA processor)."""

    def __call__(self, query, key, value, source_key, source_value, source_log_weight, region_indicators=None):
        keys, values = torch.cat([key, source_key], dim=2), torch.cat([value, source_value], dim=2)
        return F.scaled_dot_product_attention(query, keys, values), None


class CachedSourceHPFAAttnProcessor(HPFAAttnProcessor):
    """HPFA with SourceNet's keys/values projected once per generation instead of at every step (a proposal; all
    rows through the source, so compare it with the unsplit library row)."""

    def __init__(self, source_key: torch.Tensor, source_value: torch.Tensor):
        super().__init__("layer")
        self.source_key, self.source_value = source_key, source_value

    def attend(
        self, attn: Attention, hidden_states: torch.Tensor, reference=None, recorder=None
    ) -> tuple[torch.Tensor, None]:
        query, key, value = (self._project_heads(attn, hidden_states, f) for f in (attn.to_q, attn.to_k, attn.to_v))
        out, _ = fused_reference_attention(query, key, value, self.source_key, self.source_value, reference.log_weight)
        return out.transpose(1, 2).reshape(hidden_states.shape[0], -1, attn.heads * value.shape[-1]), None


def layer_breakdown(size: Size, device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Milliseconds of one ``attn1`` layer at the largest resolution (batch 2, CFG rows), by processor variant."""
    torch.manual_seed(0)
    channels, heads = size.unet_channels[0], 8
    num_tokens = (size.height // 8) * (size.width // 8)
    attn = Attention(channels, heads=heads, dim_head=channels // heads).eval().to(device, dtype)
    hidden_states = torch.randn(2, num_tokens, channels).to(device, dtype)
    tokens = torch.randn(2, num_tokens, channels).to(device, dtype)
    person = (torch.rand(2, num_tokens) > 0.4).float()
    log_weight = hpfa_log_weights(person, 0.3, 0.6).to(device)
    log_weight[0] = float("-inf")  # unconditional row
    reference = LayerReference(
        tokens=tokens,
        log_weight=log_weight,
        region_indicators=torch.rand(2, num_tokens, 5).to(device, dtype),
        region_embeds=torch.randn(2, 5, EMBED_DIM).to(device, dtype),
        region_valid=torch.ones(2, 5, dtype=torch.bool, device=device),
        num_source_free_rows=1,  # the library skips the source keys for the CFG unconditional row
    )
    hpfa = HPFAAttnProcessor("layer")
    with torch.inference_mode():
        cached = CachedSourceHPFAAttnProcessor(
            hpfa._project_heads(attn, tokens, attn.to_k), hpfa._project_heads(attn, tokens, attn.to_v)
        )
    unsplit = HPFAAttnProcessor("layer")  # the unconditional row attends to [target ; source] with a -inf bias
    baseline = ReferenceAttnProcessor()
    baseline.tokens = tokens
    unsplit_reference = dataclasses.replace(reference, num_source_free_rows=0)
    references = {hpfa: reference, unsplit: unsplit_reference, cached: unsplit_reference}

    def call(processor, form: str | None = None) -> Callable[[], object]:
        kwargs = {"layer_references": {"layer": references[processor]}} if processor in references else {}

        def run():
            with torch.inference_mode(), attention_form(form or "library"):
                return processor(attn, hidden_states, **kwargs)

        return run

    ATTENTION_FORMS["nobias"] = _NoBiasForm()
    calls = {
        "reference (AttnProcessor2_0 over [x;src])": call(baseline),
        "hpfa (library)": call(hpfa),
        "hpfa without the bias": call(hpfa, "nobias"),
        "hpfa mask-free form": call(hpfa, "maskfree"),
        "hpfa, source k/v projected once": call(cached),
        "hpfa, uncond row through the source (-inf bias)": call(unsplit),
    }
    sync = make_sync(device)
    for fn in calls.values():
        fn()
    times = time_round_robin(calls, repeats, sync)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------------------------------------------------
# Whole generation
# ----------------------------------------------------------------------------------------------------------------------


def build_pipeline(
    size: Size, unets: dict[str, torch.nn.Module], device: torch.device, dtype: torch.dtype
) -> TruePosePipeline:
    torch.manual_seed(1)
    vae = AutoencoderKL(
        block_out_channels=size.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**size.clip))
    feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": size.clip["image_size"]},
        crop_size={"height": size.clip["image_size"], "width": size.clip["image_size"]},
    )
    pose_encoder = PoseEncoder(block_out_channels=(16, 32, 64, 128), out_channels=size.unet_channels[0])
    scheduler = DDIMScheduler(**SD15_SCHEDULER_CONFIG)
    for module in (vae, image_encoder, pose_encoder):
        module.eval().to(device, dtype)
    pipe = TruePosePipeline(
        vae, unets["source"], unets["caa"], pose_encoder, image_encoder, feature_extractor, scheduler
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


GENERATION_PARTS = ("targetnet", "sourcenet", "vae_encode", "vae_decode", "clip", "parser", "pose_encoder")


def time_generation(
    pipe: TruePosePipeline, size: Size, steps: int, device: torch.device, sync: Callable[[], None]
) -> dict:
    """One generation with ``steps`` steps, its time split by component; per-step glue from step callbacks."""
    source, parsing, keypoints = make_person(size.height, size.width)
    timer = ComponentTimer(sync)
    timer.module(pipe.target_unet, "targetnet")
    timer.module(pipe.source_unet, "sourcenet")
    timer.module(pipe.pose_encoder, "pose_encoder")
    if pipe.parser is not None:
        timer.module(pipe.parser, "parser")
    timer.method(pipe.vae, "encode", "vae_encode")
    timer.method(pipe.vae, "decode", "vae_decode")
    timer.method(pipe, "encode_image", "clip")
    step_ends: list[float] = []

    def on_step_end(_pipe, _i, _t, kwargs):
        sync()
        step_ends.append(time.perf_counter())
        return kwargs

    try:
        sync()
        start = time.perf_counter()
        pipe(
            source,
            keypoints,
            source_parsing=parsing,
            num_inference_steps=steps,
            guidance_scale=2.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            callback_on_step_end=on_step_end,
        )
        sync()
        total = time.perf_counter() - start
    finally:
        timer.remove()
    parts = {name: timer.total(name) for name in GENERATION_PARTS}
    target_calls = timer.calls["targetnet"]
    intervals = np.diff(step_ends)  # step i (i >= 1): TargetNet call + scheduler + callback + loop glue
    per_step_glue = float(np.median(intervals - np.asarray(target_calls[1:]))) if steps > 1 else 0.0
    return {
        "steps": steps,
        "total_s": total,
        "parts_s": parts,
        "glue_s": total - sum(parts.values()),
        "targetnet_step_s": float(np.median(target_calls)),
        "per_step_glue_s": per_step_glue,
        "targetnet_calls": len(target_calls),
        "sourcenet_calls": len(timer.calls["sourcenet"]),
        "clip_calls": len(timer.calls["clip"]),
    }


def extrapolate(generation: dict, steps: int) -> dict:
    """The generation's split at ``steps`` steps: one-off parts as measured, per-step parts scaled."""
    run = generation["steps"]
    parts = dict(generation["parts_s"])
    parts["targetnet"] = steps * generation["targetnet_step_s"]
    fixed_glue = generation["glue_s"] - run * generation["per_step_glue_s"]
    glue = max(0.0, fixed_glue) + steps * generation["per_step_glue_s"]
    total = sum(parts.values()) + glue
    return {"steps": steps, "total_s": total, "parts_s": parts, "glue_s": glue}


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        pass
    return f"{model}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (UNet 64-128-256-256, 256x176, 5 steps)")
    parser.add_argument("--steps", type=int, default=None, help="generation steps actually run (default 35; 5 quick)")
    parser.add_argument("--extrapolate-to", type=int, default=35, help="steps of the generation the fractions are for")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(target_unet)")
    parser.add_argument("--offload", action="store_true", help="CUDA: also a generation with model CPU offload")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's). On a shared machine use 1: two OpenMP threads competing with other "
        "processes for 2 cores run up to 20x slower",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--no-generation", action="store_true", help="skip the whole-generation part")
    args = parser.parse_args(argv)

    size = QUICK if args.quick else FULL
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    steps = args.steps or size.steps
    sync = make_sync(device)
    wall_start = time.perf_counter()
    load_before = os.getloadavg()
    print(f"# {size.name}; device {device} ({machine_description(device)}), {dtype}")
    print(f"# torch {torch.__version__}, diffusers {__import__('diffusers').__version__}, load {load_before}")

    # -- models and one-step inputs
    start = time.perf_counter()
    unets = build_unets(size, device, dtype)
    setup = make_step_setup(size, unets["source"], device, dtype)
    print(f"# built UNets in {time.perf_counter() - start:.1f} s")
    calls = step_calls(unets, setup)

    # -- attention-level check and micro-benchmark
    num_regions = setup.source_reference.region_masks.shape[1]
    attention = attention_check_and_timing(size, num_regions, device, dtype, max(args.repeats, 5))
    print(f"\n## Attention at the largest layer ({attention['shape']})")
    print(f"max |alt - fused_reference_attention| in float32: {attention['max_abs_error_vs_library_fp32']}")
    print_table(
        ["form", "ms", "SDPA kernel"],
        [[name, f"{ms:.1f}", attention["sdpa_kernel"][name]] for name, ms in attention["ms"].items()],
    )

    layers = layer_breakdown(size, device, dtype, max(args.repeats, 5))
    print(
        f"\n## One attn1 layer at the largest resolution, processor level (ms; {attention['shape'].split(', 5')[0]})"
    )
    print_table(
        ["variant", "ms", "/reference"],
        [[k, f"{v:.1f}", f"{v / next(iter(layers.values())):.3f}"] for k, v in layers.items()],
    )

    # -- one denoising step per variant: warm-up (and kernel census), then interleaved timed repeats
    kernels: dict[str, str] = {}
    for name, fn in calls.items():
        counts: dict[str, int] = defaultdict(int)
        with record_sdpa_backends(counts):
            fn()
        sync()
        kernels[name] = " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
    times = time_round_robin(calls, args.repeats, sync)
    step_ms = {name: 1000 * statistics.median(t) for name, t in times.items()}

    # -- generation
    generation = extrapolated = offload = None
    if not args.no_generation:
        pipe = build_pipeline(size, unets, device, dtype)
        # warm-up: first calls of every component at these shapes (oneDNN/cuDNN kernel creation is seconds)
        warmup = time_generation(pipe, size, 1, device, sync)
        print(f"# warm-up generation (1 step): {warmup['total_s']:.1f} s")
        generation = time_generation(pipe, size, steps, device, sync)
        extrapolated = extrapolate(generation, args.extrapolate_to)

    # -- torch.compile of TargetNet (HPFA + CAA)
    compiled = None
    if args.compile:
        compiled = {}
        try:
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            compiled_unet = torch.compile(unets["caa"])
            layer_references = unets["caa"].prepare_reference(setup.source_reference, setup.latent_size)

            def compiled_call():
                with torch.inference_mode():
                    return compiled_unet(
                        setup.latents,
                        setup.timestep,
                        setup.encoder_hidden_states,
                        pose_features=setup.pose_features,
                        layer_references=layer_references,
                        return_dict=False,
                    )

            sync()
            start = time.perf_counter()
            out_compiled = compiled_call()[0]
            sync()
            compiled["first_call_s"] = time.perf_counter() - start
            compiled_times = time_round_robin({"compiled": compiled_call, "caa": calls["caa"]}, args.repeats, sync)
            compiled["step_ms"] = 1000 * statistics.median(compiled_times["compiled"])
            compiled["eager_step_ms"] = 1000 * statistics.median(compiled_times["caa"])
            out_eager = calls["caa"]()[0]
            compiled["max_abs_diff_vs_eager"] = (out_compiled.float() - out_eager.float()).abs().max().item()
            compiled["graph_breaks"] = int(sum(torch._dynamo.utils.counters["graph_break"].values()))
            compiled["unique_graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        except Exception as error:  # noqa: BLE001 - reported, not fatal
            compiled["error"] = f"{type(error).__name__}: {error}"[:500]

    # -- peak memory (after all timings: the CPU pass changes malloc settings for the rest of the process)
    memory: dict[str, int | None] = {}
    memory_reason = None
    if not args.no_memory:
        peak = PeakMemory(device)
        memory_reason = peak.reason
        with peak.low_mmap_threshold():
            next(iter(calls.values()))()  # first call under the new malloc settings grows the heap: not measured
            for name, fn in calls.items():
                memory[name] = peak.measure(fn)
    else:
        memory_reason = "skipped (--no-memory)"

    # -- model CPU offload (CUDA)
    if args.offload and not args.no_generation:
        if device.type != "cuda":
            offload = {"error": "--offload needs --device cuda"}
        else:
            pipe.enable_model_cpu_offload(device=device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            offload = time_generation(pipe, size, steps, device, sync)
            offload["peak_gpu_mem_gb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30

    # -- report
    ref, hpfa = step_ms["reference"], step_ms["hpfa"]
    print(f"\n## One denoising step, batch 2 (CFG), median of {args.repeats} (ms)")
    rows = []
    for name, ms in step_ms.items():
        mem = memory.get(name)
        rows.append(
            [
                VARIANT_LABELS[name],
                f"{ms:.0f}",
                f"{ms / step_ms['plain']:.3f}",
                f"{ms / ref:.3f}",
                f"{ms / hpfa:.3f}",
                "-" if mem is None else f"{mem / 2**20:.0f}",
                kernels[name],
            ]
        )
    print_table(["variant", "ms", "/plain", "/reference", "/hpfa", "peak MiB", "SDPA calls by kernel"], rows)

    result: dict = {
        "hpfa_over_reference": hpfa / ref,
        "caa_over_hpfa": step_ms["caa"] / hpfa,
        "glue_fraction": None,
        "oneoff_fraction": None,
        "peak_mem_ratio_hpfa_over_reference": None,
        "device": str(device),
    }
    if memory.get("hpfa") is not None and memory.get("reference"):
        result["peak_mem_ratio_hpfa_over_reference"] = memory["hpfa"] / memory["reference"]
        result["peak_mem_ratio_caa_over_reference"] = memory["caa"] / memory["reference"]
    else:
        result["peak_mem_null_reason"] = memory_reason

    if generation is not None:
        print(
            f"\n## Generation: {generation['steps']} steps run, split (s); extrapolated to {extrapolated['steps']} steps"
        )
        rows = []
        for name in (*GENERATION_PARTS, "glue"):
            measured = generation["glue_s"] if name == "glue" else generation["parts_s"][name]
            extra = extrapolated["glue_s"] if name == "glue" else extrapolated["parts_s"][name]
            rows.append(
                [
                    name,
                    f"{measured:.2f}",
                    f"{measured / generation['total_s']:.1%}",
                    f"{extra:.2f}",
                    f"{extra / extrapolated['total_s']:.1%}",
                ]  # fmt: skip
            )
        rows.append(["total", f"{generation['total_s']:.2f}", "100%", f"{extrapolated['total_s']:.2f}", "100%"])
        print_table(
            ["part", f"{generation['steps']} steps s", "share", f"{extrapolated['steps']} steps s", "share"], rows
        )
        print(
            f"TargetNet step in the pipeline {generation['targetnet_step_s']:.3f} s, per-step glue "
            f"{1000 * generation['per_step_glue_s']:.1f} ms; calls: TargetNet {generation['targetnet_calls']}, "
            f"SourceNet {generation['sourcenet_calls']}, CLIP {generation['clip_calls']}"
        )
        oneoff = sum(extrapolated["parts_s"][k] for k in ("sourcenet", "clip", "parser"))
        result["glue_fraction"] = extrapolated["glue_s"] / extrapolated["total_s"]
        result["oneoff_fraction"] = oneoff / extrapolated["total_s"]
        result["generation_steps_run"] = generation["steps"]
        result["generation_extrapolated_to"] = extrapolated["steps"]
        result["generation_s"] = extrapolated["total_s"]
        result["generation_split_s"] = {**extrapolated["parts_s"], "glue": extrapolated["glue_s"]}
        result["glue_fraction_measured"] = generation["glue_s"] / generation["total_s"]
    if offload is not None:
        result["offload"] = offload
    if compiled is not None:
        print(f"\n## torch.compile(target_unet): {compiled}")
        result["compile"] = compiled

    result.update(
        {
            "step_ms": step_ms,
            "reference_over_plain": ref / step_ms["plain"],
            "maskfree_hpfa_over_reference": step_ms["hpfa_maskfree"] / ref,
            "maskfree_caa_over_hpfa": step_ms["caa_maskfree"] / hpfa,
            "unpadded_caa_over_hpfa": step_ms["caa_unpadded"] / hpfa,
            "peak_mem_mib": {k: None if v is None else v / 2**20 for k, v in memory.items()},
            "attention": attention,
            "layer_ms": layers,
            "sdpa_calls_per_step": kernels,
            "targets": TARGETS,
            "dtype": str(dtype).removeprefix("torch."),
            "size": "quick" if args.quick else "full",
            "machine": machine_description(device),
            "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "wall_s": time.perf_counter() - wall_start,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        }
    )
    met = {k: None if result[k] is None else bool(result[k] <= v) for k, v in TARGETS.items()}
    verdict = {True: "ok", False: "MISSED", None: "not measured"}
    print("\n## Targets (ratio/fraction <= target): " + ", ".join(f"{k} {verdict[v]}" for k, v in met.items()))
    result["targets_met"] = met
    print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
