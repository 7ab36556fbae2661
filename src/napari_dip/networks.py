"""The hourglass "skip" generator of Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018).

An encoder-decoder with one level per scale. Level ``i`` takes its input down with a
stride-2 convolution (plus a second convolution), hands it to level ``i + 1``, upsamples
what comes back, concatenates an optional 1x1 "skip" branch taken from its own input and
mixes the two with a ``kernel_up`` convolution and a 1x1 convolution. Every convolution
uses reflection padding and is followed by BatchNorm and LeakyReLU(0.2); the output is a
1x1 convolution and a sigmoid, so estimates lie in (0, 1).

The architecture is data (:class:`NetworkConfig`); presets in :mod:`napari_dip.presets`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    """Per-scale channel counts and kernel sizes of the skip network.

    ``channels_down[i]``, ``channels_up[i]`` and ``channels_skip[i]`` describe scale ``i``
    (0 = full resolution). A skip count of 0 means no skip branch at that scale.
    """

    channels_down: tuple[int, ...] = (128,) * 5
    channels_up: tuple[int, ...] = (128,) * 5
    channels_skip: tuple[int, ...] = (4,) * 5
    kernel_down: int = 3
    kernel_up: int = 3
    kernel_skip: int = 1
    upsample: str = "bilinear"

    def __post_init__(self):
        n = len(self.channels_down)
        if n == 0 or len(self.channels_up) != n or len(self.channels_skip) != n:
            raise ValueError("channels_down, channels_up and channels_skip need one entry per scale")
        if self.upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest', got {self.upsample!r}")

    @property
    def scales(self) -> int:
        return len(self.channels_down)

    @property
    def min_size(self) -> int:
        """Smallest input side: the deepest level still needs 2 pixels for reflection padding."""
        return 2 ** (self.scales + 1)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (one halving per scale)."""
        return 2**self.scales

    def to_dict(self) -> dict:
        return asdict(self)


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
