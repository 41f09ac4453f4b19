"""Latents and the VAE that makes them: the VAE's spatial compression, the lock that serialises a shared VAE's
encodes and decodes, and the checks of latents (the caller's initial noise, and each denoising step's result)."""

import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderTiny


def vae_spatial_compression(vae: AutoencoderKL | AutoencoderTiny | AutoencoderDC) -> int:
    """How many pixels one latent spans per side (8 for SD's VAE): `AutoencoderDC` states it, the others halve the
    resolution between consecutive blocks."""
    if isinstance(vae, AutoencoderDC):
        return vae.spatial_compression_ratio
    return 2 ** (len(vae.config.block_out_channels) - 1)


_VAE_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_VAE_LOCKS_GUARD = threading.Lock()


def vae_lock(vae: torch.nn.Module) -> threading.Lock:
    """The lock of ``vae`` (one per VAE object, shared by every pipeline holding it): encoding and decoding hold it,
    because decoding with a float16 VAE marked ``force_upcast`` casts the shared VAE to float32 for its duration."""
    with _VAE_LOCKS_GUARD:
        return _VAE_LOCKS.setdefault(vae, threading.Lock())


def check_latents_tensor(latents: Any, shape: tuple[int, ...] | None = None) -> None:
    """Refuse initial ``latents`` that are not a real floating-point tensor with values (not on the meta device),
    that do not have ``shape`` (when given), or that hold NaN or inf. A tensor on another device is moved, as in
    diffusers (noise drawn on the CPU for reproducibility is common)."""
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"`latents` must be a torch.Tensor, got {type(latents).__name__}.")
    if not latents.is_floating_point():
        raise TypeError(
            f"`latents` must be a real floating-point tensor (e.g. torch.float32, noise from torch.randn), got "
            f"{latents.dtype}."
        )
    if latents.is_meta:
        raise ValueError("`latents` is on the meta device and holds no values; pass noise on the CPU or the GPU.")
    if shape is not None and tuple(latents.shape) != shape:
        raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
    if not torch.isfinite(latents).all():
        raise ValueError("`latents` holds non-finite values (NaN or inf).")


def check_finite_latents(
    latents: Any,
    step: int,
    num_steps: int,
    guidance_scale: float | None = None,
    eta: float | None = None,
    callback: Callable | None = None,
) -> None:
    """Raise a clear error when the denoising loop's latents hold NaN or inf at ``step``: after the scheduler step
    (``guidance_scale`` and ``eta`` are named as likely causes) or as returned by ``callback``.

    One ``torch.isfinite(latents).all()`` per step: on a GPU that is one host synchronisation per step, small next to
    a UNet forward.
    """
    if callback is not None and not isinstance(latents, torch.Tensor):
        raise TypeError(
            f"`callback_on_step_end` returned `latents` of type {type(latents).__name__} at step index {step} (of "
            f"{num_steps} steps); return a torch.Tensor (or leave `latents` out of the returned dict)."
        )
    if torch.isfinite(latents).all():
        return
    if callback is not None:
        raise ValueError(
            f"`callback_on_step_end` returned `latents` holding non-finite values (NaN or inf) at step index {step} "
            f"(of {num_steps} steps)."
        )
    causes = [f"`guidance_scale` {guidance_scale:g}"] if guidance_scale not in (None, 1) else []
    causes += [f"`eta` {eta:g}"] if eta else []
    overflow = f"the model overflowed in {latents.dtype}"
    if latents.dtype == torch.float16:
        overflow += " (float16 overflows above 65504: load the pipeline with dtype=torch.bfloat16 or torch.float32)"
    raise ValueError(
        f"The latents became non-finite (NaN or inf) at step index {step} (of {num_steps} steps), after the scheduler "
        f"step: {' or '.join(causes) + ' too large, or ' if causes else ''}{overflow}."
    )
