"""The hourglass "skip" generator of Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018).

An encoder-decoder with one level per scale. Level ``i`` takes its input down with a
stride-2 convolution (plus a second convolution), hands it to level ``i + 1``, upsamples
what comes back, concatenates an optional 1x1 "skip" branch taken from its own input and
mixes the two with a ``kernel_up`` convolution and a 1x1 convolution. Every convolution
uses reflection padding and is followed by BatchNorm and LeakyReLU(0.2); the output is a
1x1 convolution and a sigmoid, so estimates lie in (0, 1).

The architecture is data (:class:`~napari_dip.architecture.NetworkConfig`); presets are in
:mod:`napari_dip.presets`.
"""

from __future__ import annotations

import torch
from torch import nn

from .architecture import NetworkConfig

__all__ = ["NetworkConfig", "SkipNetwork"]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2,
        padding_mode="reflect" if kernel > 1 else "zeros",
    )


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, kernel, stride), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class _Level(nn.Module):
    def __init__(self, cin: int, config: NetworkConfig, i: int):
        super().__init__()
        down, up, skip = config.channels_down[i], config.channels_up[i], config.channels_skip[i]
        self.skip = _conv_bn_act(cin, skip, config.kernel_skip) if skip else None
        self.down = nn.Sequential(
            _conv_bn_act(cin, down, config.kernel_down, stride=2),
            _conv_bn_act(down, down, config.kernel_down),
        )
        self.deeper = _Level(down, config, i + 1) if i + 1 < config.scales else None
        below = config.channels_up[i + 1] if self.deeper is not None else down
        mode = config.upsample
        self.upsample = nn.Upsample(
            scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None
        )
        self.merge = nn.Sequential(
            nn.BatchNorm2d(skip + below),
            _conv_bn_act(skip + below, up, config.kernel_up),
            _conv_bn_act(up, up, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = self.upsample(d)
        if self.skip is not None:
            d = torch.cat([self.skip(x), d], dim=1)
        return self.merge(d)


class SkipNetwork(nn.Module):
    """Hourglass generator mapping (N, in_channels, H, W) to (N, out_channels, H, W) in (0, 1).

    H and W must be multiples of ``config.size_multiple`` and at least ``config.min_size``.
    """

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.body = _Level(in_channels, config, 0)
        self.head = nn.Conv2d(config.channels_up[0], out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(z)))
