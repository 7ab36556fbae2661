"""The hourglass "skip" generator of Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018).

An encoder-decoder with one level per scale. Level ``i`` takes its input down with a
stride-2 convolution (plus a second convolution), hands it to level ``i + 1``, upsamples
what comes back, concatenates an optional 1x1 "skip" branch taken from its own input and
mixes the two with a ``kernel_up`` convolution and a 1x1 convolution. Every convolution
uses reflection padding and is followed by BatchNorm and LeakyReLU(0.2); the output is a
1x1 convolution and a sigmoid, so estimates lie in (0, 1).

The architecture is data (:class:`~napari_dip.architecture.NetworkConfig`); presets are in
:mod:`napari_dip.presets`.

Ensembles: ``members=K`` builds K such networks side by side as one, every convolution
grouped (``groups=K``) and every BatchNorm K times as wide (BatchNorm normalises each
channel on its own, so each member keeps its own statistics). Member k's channels are the
k-th block of each layer's channels; the skip concatenation joins each member's skip
channels with its own upsampled channels, in the single network's order. The input is the
members' inputs concatenated along the channels, (N, K * in_channels, ...), and the output
is (K * N, out_channels, ...), member after member. :func:`combine_members` makes one from
K single networks (their weights concatenated, so member k computes exactly what network k
does) and :meth:`SkipNetwork.member` takes one back out. ``members=1`` is the single
network, unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .architecture import NetworkConfig

__all__ = ["NetworkConfig", "SkipNetwork", "combine_members", "make_network"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_LINEAR_MODE = {2: "bilinear", 3: "trilinear"}


def _conv(cin: int, cout: int, kernel: int, stride=1, dims: int = 2, members: int = 1
          ) -> nn.Module:
    """A convolution of one member's ``cin`` to ``cout`` channels, ``members`` of them
    side by side (grouped)."""
    return _CONV[dims](
        cin * members, cout * members, kernel, stride=stride, padding=(kernel - 1) // 2,
        padding_mode="reflect" if kernel > 1 else "zeros", groups=members,
    )


def _conv_bn_act(cin: int, cout: int, kernel: int, stride=1, dims: int = 2,
                 members: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, kernel, stride, dims, members),
                         _NORM[dims](cout * members), nn.LeakyReLU(0.2))


def _grouped_cat(a: torch.Tensor, b: torch.Tensor, members: int) -> torch.Tensor:
    """Concatenate along the channels member by member: each member's channels of ``a``,
    then its channels of ``b`` (one member: a plain concatenation)."""
    if members == 1:
        return torch.cat([a, b], dim=1)
    n, _, *spatial = a.shape
    joined = torch.cat([a.reshape(n, members, -1, *spatial),
                        b.reshape(n, members, -1, *spatial)], dim=2)
    return joined.reshape(n, -1, *spatial)


class _Level(nn.Module):
    def __init__(self, cin: int, config: NetworkConfig, i: int,
                 z_strides: tuple[int, ...] | None = None, members: int = 1):
        super().__init__()
        dims = 2 if z_strides is None else 3
        k = members
        self.members = members
        down, up, skip = config.channels_down[i], config.channels_up[i], config.channels_skip[i]
        # 2-D: stride 2; 3-D: (z, 2, 2), with z = 1 where a short Z axis is not downsampled.
        stride = 2 if z_strides is None else (z_strides[i], 2, 2)
        self.skip = _conv_bn_act(cin, skip, config.kernel_skip, dims=dims, members=k) \
            if skip else None
        self.down = nn.Sequential(
            _conv_bn_act(cin, down, config.kernel_down, stride=stride, dims=dims, members=k),
            _conv_bn_act(down, down, config.kernel_down, dims=dims, members=k),
        )
        self.deeper = _Level(down, config, i + 1, z_strides, members) \
            if i + 1 < config.scales else None
        below = config.channels_up[i + 1] if self.deeper is not None else down
        mode = config.upsample if dims == 2 or config.upsample == "nearest" \
            else _LINEAR_MODE[dims]
        self.upsample = nn.Upsample(
            scale_factor=2 if z_strides is None else (float(z_strides[i]), 2.0, 2.0),
            mode=mode, align_corners=False if mode != "nearest" else None
        )
        self.merge = nn.Sequential(
            _NORM[dims]((skip + below) * k),
            _conv_bn_act(skip + below, up, config.kernel_up, dims=dims, members=k),
            _conv_bn_act(up, up, 1, dims=dims, members=k),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = self.upsample(d)
        if self.skip is not None:
            d = _grouped_cat(self.skip(x), d, self.members)
        return self.merge(d)


class SkipNetwork(nn.Module):
    """Hourglass generator mapping (N, in_channels, H, W) to (N, out_channels, H, W) in (0, 1).

    H and W must be multiples of ``config.size_multiple`` and at least ``config.min_size``.

    With ``z_strides`` (one entry per scale, 1 or 2; see
    :func:`napari_dip.architecture.z_strides`) it is the 3-D version for volumes: Conv3d,
    BatchNorm3d and trilinear (or nearest) upsampling on (N, C, D, H, W); Y and X are halved
    at every scale and Z only where its stride is 2, so D must be a multiple of 2 to the
    number of those.

    With ``members=K``: K networks side by side (see the module's docstring), mapping
    (N, K * in_channels, ...) to (K * N, out_channels, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, config: NetworkConfig,
                 z_strides: tuple[int, ...] | None = None, members: int = 1):
        super().__init__()
        if z_strides is not None and len(z_strides) != config.scales:
            raise ValueError(f"z_strides needs one entry per scale ({config.scales}), "
                             f"got {z_strides!r}")
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        self.config = config
        self.members = members
        self.in_channels, self.out_channels = in_channels, out_channels
        self.z_strides = None if z_strides is None else tuple(int(s) for s in z_strides)
        self.body = _Level(in_channels, config, 0, self.z_strides, members)
        self.head = _CONV[2 if z_strides is None else 3](
            config.channels_up[0] * members, out_channels * members, 1, groups=members)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = torch.sigmoid(self.head(self.body(z)))
        if self.members == 1:
            return out
        n, _, *spatial = out.shape  # members' channel blocks -> member after member
        return out.reshape(n, self.members, self.out_channels, *spatial).transpose(0, 1) \
            .reshape(self.members * n, self.out_channels, *spatial)

    def member(self, k: int) -> SkipNetwork:
        """Member ``k`` as a single network of its own (a copy of its weights)."""
        if not 0 <= k < self.members:
            raise ValueError(f"member {k} of a network of {self.members} members")
        with torch.random.fork_rng(devices=[]):  # its own initial weights are replaced
            single = SkipNetwork(self.in_channels, self.out_channels, self.config,
                                 self.z_strides).to(next(self.parameters()))
        state = {}
        for name, value in self.state_dict().items():
            if value.ndim == 0:  # BatchNorm's step count
                state[name] = value.clone()
            else:
                size = value.shape[0] // self.members
                state[name] = value[k * size:(k + 1) * size].clone()
        single.load_state_dict(state)
        return single


def make_network(in_channels: int, out_channels: int, config: NetworkConfig,
                 z_strides: tuple[int, ...] | None = None, members: int = 1) -> SkipNetwork:
    """The 2-D skip network, or the 3-D one when ``z_strides`` is given; ``members``
    networks side by side as one (an ensemble)."""
    return SkipNetwork(in_channels, out_channels, config, z_strides, members)


def combine_members(networks: list[SkipNetwork]) -> SkipNetwork:
    """K single networks of one architecture as one network of K members whose member k
    has exactly network k's weights (and BatchNorm statistics). One network: itself."""
    if len(networks) == 1:
        return networks[0]
    first = networks[0]
    if any(n.members != 1 for n in networks) or any(
            (n.config, n.z_strides, n.in_channels, n.out_channels)
            != (first.config, first.z_strides, first.in_channels, first.out_channels)
            for n in networks):
        raise ValueError("combine_members needs single networks of one architecture")
    with torch.random.fork_rng(devices=[]):  # its own initial weights are replaced
        grouped = SkipNetwork(first.in_channels, first.out_channels, first.config,
                              first.z_strides, members=len(networks)
                              ).to(next(first.parameters()))  # its device and dtype
    states = [n.state_dict() for n in networks]
    grouped.load_state_dict({
        name: value.clone() if value.ndim == 0
        else torch.cat([s[name] for s in states], dim=0)
        for name, value in states[0].items()})
    return grouped
