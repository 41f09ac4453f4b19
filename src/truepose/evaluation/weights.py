# Copyright 2026 The TruePose developers. Licensed under the Apache License, Version 2.0.
"""The local weight files of the metrics and the models built from them: LPIPS (AlexNet backbone) and the two FID
backbones, torchvision's Inception-v3 (CFLD) and pytorch-fid's TF-Inception port (PIDM, PCDMs, GFLA scripts).

Every file is found offline (`resolve_weights_file`: an argument, an environment variable or the torch hub cache) and
read with `torch.load(weights_only=True)`; nothing is downloaded (see `docs/evaluation.md`).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from .images import to_float

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_ENV = "TRUEPOSE_LPIPS_BACKBONE"
INCEPTION_FILENAME = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
INCEPTION_ENV = "TRUEPOSE_INCEPTION_WEIGHTS"
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
PYTORCH_FID_ENV = "TRUEPOSE_PYTORCH_FID_WEIGHTS"

INCEPTION_SIZE = 299
# FID backbones: torchvision's Inception-v3 (CFLD) and pytorch-fid's TF-Inception port (PIDM, PCDMs, GFLA scripts).
FID_BACKBONES = ("torchvision", "pytorch-fid")
DEFAULT_FID_BACKBONE = "torchvision"
FID_DIMS = 2048
# Feature sizes pytorch-fid offers (`--dims`); only 2048 is comparable with published numbers.
PYTORCH_FID_DIMS = (64, 192, 768, 2048)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_weights_file(
    path: str | os.PathLike | None, *, filename: str, url: str, env_var: str, purpose: str, argument: str
) -> Path:
    """Finds a weight file offline: `path` (a file, or a folder holding `filename`), else `$env_var`, else
    the torch hub cache (`<torch hub dir>/checkpoints/<filename>`). Raises `FileNotFoundError` explaining where to put
    the file otherwise."""
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if path is not None:
        source = f"`{argument}`"
    elif os.environ.get(env_var):
        path, source = os.environ[env_var], f"${env_var}"
    else:
        path, source = hub_file, "the torch hub cache"
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / filename
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"{purpose} needs the weight file '{filename}', which was not found at {str(candidate)!r} "
        f"(looked in {source}). Nothing is downloaded at evaluation time: fetch it once from {url} and either put it "
        f"at {str(hub_file)!r} (the torch hub cache), set ${env_var}=/path/to/{filename}, or pass `{argument}`."
    )


def _load_state_dict(path: Path, purpose: str) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{purpose}: {str(path)!r} is not a state dict (got {type(state).__name__}).")
    return state


# `resolve_weights_file` arguments of every weight file a metric needs: "lpips" and one per FID backbone.
WEIGHT_FILES: dict[str, dict[str, str]] = {
    "lpips": {
        "filename": ALEXNET_FILENAME,
        "url": ALEXNET_URL,
        "env_var": ALEXNET_ENV,
        "purpose": "LPIPS (AlexNet backbone)",
        "argument": "lpips_backbone_path / --lpips-backbone",
    },
    "torchvision": {
        "filename": INCEPTION_FILENAME,
        "url": INCEPTION_URL,
        "env_var": INCEPTION_ENV,
        "purpose": "FID (torchvision Inception-v3)",
        "argument": "inception_weights_path / --inception-weights",
    },
    "pytorch-fid": {
        "filename": PYTORCH_FID_FILENAME,
        "url": PYTORCH_FID_URL,
        "env_var": PYTORCH_FID_ENV,
        "purpose": "FID (pytorch-fid TF-Inception)",
        "argument": "inception_weights_path / --inception-weights",
    },
}


def check_fid_backbone(fid_backbone: str, fid_dims: int = FID_DIMS) -> None:
    """Raises a `ValueError` for an unknown backbone or feature size, an `ImportError` when pytorch-fid is needed but
    not installed."""
    if fid_backbone not in FID_BACKBONES:
        raise ValueError(f"`fid_backbone` must be one of {FID_BACKBONES}, got {fid_backbone!r}.")
    if fid_backbone == "torchvision" and fid_dims != FID_DIMS:
        raise ValueError(f"`fid_dims` must be {FID_DIMS} with the torchvision backbone, got {fid_dims}.")
    if fid_backbone == "pytorch-fid":
        if fid_dims not in PYTORCH_FID_DIMS:
            raise ValueError(f"`fid_dims` must be one of {PYTORCH_FID_DIMS} with pytorch-fid, got {fid_dims}.")
        if importlib.util.find_spec("pytorch_fid") is None:
            raise ImportError(
                "`fid_backbone='pytorch-fid'` needs the pytorch-fid package: `pip install pytorch-fid` (or "
                "`pip install truepose[eval]`)."
            )


def check_weight_files(
    *,
    compute_lpips: bool = True,
    compute_fid: bool = True,
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    lpips_backbone_path: str | os.PathLike | None = None,
    inception_weights_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Finds every weight file the requested metrics need, before any work is done.

    Returns `{"lpips": path, "fid": path}` (only the requested ones). Raises one `FileNotFoundError` that lists every
    missing file with where it was looked for and where to get it.
    """
    wanted: dict[str, tuple[str | os.PathLike | None, dict[str, str]]] = {}
    if compute_lpips:
        wanted["lpips"] = (lpips_backbone_path, WEIGHT_FILES["lpips"])
    if compute_fid:
        check_fid_backbone(fid_backbone)
        wanted["fid"] = (inception_weights_path, WEIGHT_FILES[fid_backbone])
    found, missing = {}, []
    for key, (path, spec) in wanted.items():
        try:
            found[key] = resolve_weights_file(path, **spec)
        except FileNotFoundError as error:
            missing.append(str(error))
    if len(missing) == 1:
        raise FileNotFoundError(missing[0])
    if missing:
        raise FileNotFoundError(f"{len(missing)} weight files are missing:\n- " + "\n- ".join(missing))
    return found


def load_lpips(
    lpips_backbone_path: str | os.PathLike | None = None, device: str | torch.device = "cpu", spatial: bool = False
) -> nn.Module:
    """`lpips.LPIPS(net="alex")` with its shipped linear layers and the AlexNet backbone read from a local torchvision
    `alexnet-owt-7be5be79.pth` (see `resolve_weights_file` for where it is looked up).

    `spatial=True` makes the model return `(N, 1, H, W)` distance maps instead of `(N, 1, 1, 1)` means (lpips'
    `spatial` option), for the identity metrics per region.
    """
    import lpips

    path = resolve_weights_file(lpips_backbone_path, **WEIGHT_FILES["lpips"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation, raised inside lpips
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, spatial=spatial, verbose=False)
    state = _load_state_dict(path, "LPIPS backbone")
    # lpips splits torchvision's `features` Sequential into slices that keep the original indices.
    backbone = {}
    for key in model.net.state_dict():
        _, index_and_param = key.split(".", 1)  # "slice2.3.weight" -> "3.weight"
        source_key = f"features.{index_and_param}"
        if source_key not in state:
            raise ValueError(
                f"{str(path)!r} is not a torchvision AlexNet state dict: key {source_key!r} is missing "
                f"(expected the file from {ALEXNET_URL})."
            )
        backbone[key] = state[source_key]
    model.net.load_state_dict(backbone)
    return model.eval().requires_grad_(False).to(device)


class InceptionFeatureExtractor(nn.Module):
    """torchvision Inception-v3 (IMAGENET1K_V1) returning the 2048-d average-pool features.

    Input: `(N, 3, H, W)` floats in [0, 1] (or `(N, H, W, 3)` uint8), resized to 299x299 (bilinear, antialiased) and
    ImageNet-normalized as torchvision's IMAGENET1K_V1 transforms do. Output: `(N, 2048)` float32.
    """

    feature_dim = FID_DIMS

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = to_float(images)
        images = images.to(self.mean.device, torch.float32)
        images = F.interpolate(
            images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        return self.inception((images - self.mean) / self.std)


def load_inception(
    inception_weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> InceptionFeatureExtractor:
    """Builds `torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)`, loads the local
    IMAGENET1K_V1 file `inception_v3_google-0cc3c7bd.pth` and replaces `fc` by the identity (2048-d pool features).

    As torchvision does for these weights, `transform_input=True` (the Google weights expect inputs in [-1, 1]).
    """
    from torchvision.models import inception_v3

    path = resolve_weights_file(inception_weights_path, **WEIGHT_FILES["torchvision"])
    model = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    state = _load_state_dict(path, "Inception-v3")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{str(path)!r} is not a torchvision Inception-v3 state dict (expected the file from {INCEPTION_URL}): {error}"
        ) from error
    model.fc = nn.Identity()
    return InceptionFeatureExtractor(model).eval().requires_grad_(False).to(device)


class PytorchFIDFeatureExtractor(nn.Module):
    """pytorch-fid's `InceptionV3` (the TF-Inception port) returning features as pytorch-fid's `get_activations` does.

    Input: `(N, H, W, 3)` uint8 (or `(N, 3, H, W)` floats in [0, 1], what pytorch-fid's `ToTensor` gives); the model
    itself resizes to 299x299 (bilinear, no antialiasing) and scales to [-1, 1]. Output: `(N, feature_dim)` float32;
    for `feature_dim < 2048` the block's feature map is global-average-pooled, as in pytorch-fid.
    """

    def __init__(self, model: nn.Module, feature_dim: int = FID_DIMS):
        super().__init__()
        self.model = model
        self.feature_dim = feature_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = to_float(images)
        device = next(self.model.parameters()).device
        features = self.model(images.to(device, torch.float32))[0]
        if features.shape[2:] != (1, 1):
            features = F.adaptive_avg_pool2d(features, output_size=(1, 1))
        return features.flatten(1)


def load_pytorch_fid_inception(
    weights_path: str | os.PathLike | None = None, dims: int = FID_DIMS, device: str | torch.device = "cpu"
) -> PytorchFIDFeatureExtractor:
    """`pytorch_fid.inception.InceptionV3` (output block of `dims`-d features, 2048 = final pool) with the TF-Inception
    weights `pt_inception-2015-12-05-6726825d.pth` read from a local file (see `resolve_weights_file`)."""
    from pytorch_fid import inception as pytorch_fid_inception

    check_fid_backbone("pytorch-fid", dims)
    path = resolve_weights_file(weights_path, **WEIGHT_FILES["pytorch-fid"])
    state = _load_state_dict(path, "pytorch-fid Inception")
    block = pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    # `InceptionV3` builds its network with `fid_inception_v3`, which fetches the weights with
    # `load_state_dict_from_url` (the package's only download): hand it the local state dict instead.
    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        try:
            model = pytorch_fid_inception.InceptionV3([block])
        except RuntimeError as error:
            raise ValueError(
                f"{str(path)!r} is not pytorch-fid's TF-Inception state dict (expected the file from "
                f"{PYTORCH_FID_URL}): {error}"
            ) from error
    return PytorchFIDFeatureExtractor(model, dims).eval().requires_grad_(False).to(device)


def load_fid_backbone(
    fid_backbone: str = DEFAULT_FID_BACKBONE,
    weights_path: str | os.PathLike | None = None,
    dims: int = FID_DIMS,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The feature extractor of an FID backbone (`"torchvision"` or `"pytorch-fid"`): `(N, H, W, 3)` uint8 ->
    `(N, dims)` features; it has a `feature_dim` attribute."""
    check_fid_backbone(fid_backbone, dims)
    if fid_backbone == "pytorch-fid":
        return load_pytorch_fid_inception(weights_path, dims=dims, device=device)
    return load_inception(weights_path, device=device)
