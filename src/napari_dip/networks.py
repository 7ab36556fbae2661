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

__all__ = ["NetworkConfig", "SkipNetwork", "make_network"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_LINEAR_MODE = {2: "bilinear", 3: "trilinear"}


def _conv(cin: int, cout: int, kernel: int, stride=1, dims: int = 2) -> nn.Module:
    return _CONV[dims](
        cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2,
        padding_mode="reflect" if kernel > 1 else "zeros",
    )


def _conv_bn_act(cin: int, cout: int, kernel: int, stride=1, dims: int = 2) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, kernel, stride, dims), _NORM[dims](cout),
                         nn.LeakyReLU(0.2))


class _Level(nn.Module):
    def __init__(self, cin: int, config: NetworkConfig, i: int,
                 z_strides: tuple[int, ...] | None = None):
        super().__init__()
        dims = 2 if z_strides is None else 3
        down, up, skip = config.channels_down[i], config.channels_up[i], config.channels_skip[i]
        # 2-D: stride 2; 3-D: (z, 2, 2), with z = 1 where a short Z axis is not downsampled.
        stride = 2 if z_strides is None else (z_strides[i], 2, 2)
        self.skip = _conv_bn_act(cin, skip, config.kernel_skip, dims=dims) if skip else None
        self.down = nn.Sequential(
            _conv_bn_act(cin, down, config.kernel_down, stride=stride, dims=dims),
            _conv_bn_act(down, down, config.kernel_down, dims=dims),
        )
        self.deeper = _Level(down, config, i + 1, z_strides) if i + 1 < config.scales else None
        below = config.channels_up[i + 1] if self.deeper is not None else down
        mode = config.upsample if dims == 2 or config.upsample == "nearest" \
            else _LINEAR_MODE[dims]
        self.upsample = nn.Upsample(
            scale_factor=2 if z_strides is None else (float(z_strides[i]), 2.0, 2.0),
            mode=mode, align_corners=False if mode != "nearest" else None
        )
        self.merge = nn.Sequential(
            _NORM[dims](skip + below),
            _conv_bn_act(skip + below, up, config.kernel_up, dims=dims),
            _conv_bn_act(up, up, 1, dims=dims),
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

    With ``z_strides`` (one entry per scale, 1 or 2; see
    :func:`napari_dip.architecture.z_strides`) it is the 3-D version for volumes: Conv3d,
    BatchNorm3d and trilinear (or nearest) upsampling on (N, C, D, H, W); Y and X are halved
    at every scale and Z only where its stride is 2, so D must be a multiple of 2 to the
    number of those.
    """

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig,
                 z_strides: tuple[int, ...] | None = None):
        super().__init__()
        if z_strides is not None and len(z_strides) != config.scales:
            raise ValueError(f"z_strides needs one entry per scale ({config.scales}), "
                             f"got {z_strides!r}")
        self.config = config
        self.z_strides = None if z_strides is None else tuple(int(s) for s in z_strides)
        self.body = _Level(in_channels, config, 0, self.z_strides)
        self.head = _CONV[2 if z_strides is None else 3](config.channels_up[0], out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(z)))


def make_network(in_channels: int, out_channels: int, config: NetworkConfig,
                 z_strides: tuple[int, ...] | None = None) -> SkipNetwork:
    """The 2-D skip network, or the 3-D one when ``z_strides`` is given."""
    return SkipNetwork(in_channels, out_channels, config, z_strides)
