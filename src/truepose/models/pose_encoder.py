"""PoseEncoder: rendered skeleton image -> features added to TargetNet's ``conv_in`` output."""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PoseEncoder(ModelMixin, ConfigMixin):
    r"""A small conv stack from a skeleton image to latent-size features.

    Each block after the first halves the resolution, so ``len(block_out_channels) - 1`` must equal the VAE's number
    of downsamplings (3 for SD's 8x VAE). The last conv is zero-initialised: a fresh encoder adds nothing.

    Parameters:
        in_channels (`int`, defaults to 3): channels of the rendered skeleton (RGB in [0, 1]).
        block_out_channels (`tuple[int]`, defaults to `(16, 32, 64, 128)`): channels of the conv layers.
        out_channels (`int`, defaults to 320): TargetNet's ``block_out_channels[0]``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        out_channels: int = 320,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1), nn.SiLU()]
        for channels_in, channels_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            layers += [nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1), nn.SiLU()]
        self.blocks = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(block_out_channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, pose_image: torch.Tensor) -> torch.Tensor:
        """`(batch, in_channels, H, W)` skeleton -> `(batch, out_channels, H / f, W / f)` features."""
        return self.conv_out(self.blocks(pose_image))
