"""`PoseEncoder`: its output shapes, zero start and SD-1.5 defaults."""

import torch

from truepose.models import PoseEncoder


def test_pose_encoder_shapes_and_zero_start():
    encoder = PoseEncoder(block_out_channels=(4, 8, 8), out_channels=6)
    assert encoder.downscale_factor == 4
    out = encoder(torch.rand(2, 3, 16, 24))
    assert out.shape == (2, 6, 4, 6) and (out == 0).all()  # a fresh encoder adds nothing
    torch.nn.init.normal_(encoder.conv_out.weight)
    assert encoder(torch.rand(2, 3, 16, 24)).abs().sum() > 0
    assert [m.stride for m in encoder.blocks if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (2, 2), (2, 2)]


def test_pose_encoder_defaults_fit_sd15():
    """The documented defaults: RGB skeleton in, SD-1.5's 320 channels out at the 8x VAE's latent size."""
    encoder = PoseEncoder()
    config = encoder.config
    assert (config.in_channels, tuple(config.block_out_channels), config.out_channels) == (3, (16, 32, 64, 128), 320)
    convs = [m for m in encoder.blocks if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 16), (16, 32), (32, 64), (64, 128)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in [*convs, encoder.conv_out])
    assert (encoder.conv_out.in_channels, encoder.conv_out.out_channels) == (128, 320)
    assert encoder.downscale_factor == 8
    assert sum(isinstance(m, torch.nn.SiLU) for m in encoder.blocks) == len(convs)
