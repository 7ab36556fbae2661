"""Network architecture as data: :class:`NetworkConfig` (torch-free, so presets and request
checking import without torch). The network itself is in :mod:`napari_dip.networks`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


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
            raise ValueError("channels_down, channels_up and channels_skip need one entry per "
                             "scale")
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


def z_strides(config: NetworkConfig, depth: int, spacing: tuple[float, float] | None = None
              ) -> tuple[int, ...]:
    """Stride along Z at each scale of a 3-D network for a volume of ``depth`` slices.

    Y and X are halved at every scale; Z only while it stays long enough (at least 8 slices
    before halving, so the deepest level keeps at least 4) and, when ``spacing`` = (z, yx)
    voxel sizes is given, only while a voxel is no more than twice as long along Z as across
    (the rule nnU-Net uses for anisotropic data): thick slices are not averaged away.
    """
    strides = []
    length = int(depth)
    sz, syx = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    for _ in range(config.scales):
        if length >= 8 and sz <= 2 * syx:
            strides.append(2)
            length = -(-length // 2)
            sz *= 2
        else:
            strides.append(1)
        syx *= 2
    return tuple(strides)


def padded_length(size: int, factor: int, multiple: int, minimum: int) -> int:
    """Measurement-side length after padding so that ``length * factor`` is a multiple of
    ``multiple`` and at least ``minimum``."""
    m = multiple
    target = max(math.ceil(size * factor / m) * m, minimum)
    target = math.ceil(target / (m * factor)) * m * factor if target % factor else target
    return target // factor


def padded_size(size: int, factor: int, config: NetworkConfig) -> int:
    """Measurement-side length after padding so that ``length * factor`` suits the network."""
    return padded_length(size, factor, config.size_multiple, config.min_size)


def size_factors(spatial_dims: int, factor: int, z_factor: int = 1) -> tuple[int, ...]:
    """Estimate/measurement size ratio along each spatial axis: (Y, X), or (Z, Y, X)."""
    return ((z_factor,) if spatial_dims == 3 else ()) + (factor, factor)


def padded_layout(spatial: tuple[int, ...], factor: int, z_factor: int,
                  spacing: tuple[float, float, float] | None, config: NetworkConfig,
                  margin: tuple[int, ...] | None = None
                  ) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(padded measurement shape, the 3-D network's Z strides or None) of a part whose
    measurement has the spatial shape ``spatial`` ((H, W) or (D, H, W)). The problem pads
    to this shape and the memory estimate counts it, so both use this one function.

    ``margin`` (one entry per spatial axis, pixels): the padding must leave at least this
    much on each side of the measurement (a valid boundary's kernel half-width)."""
    margin = (0,) * len(spatial) if margin is None else tuple(margin)
    least = [n + 2 * m for n, m in zip(spatial, margin, strict=True)]
    padded = [padded_size(n, factor, config) for n in least[-2:]]
    strides = None
    if len(spatial) == 3:
        voxel = None
        if spacing is not None:
            sz, sy, sx = spacing
            voxel = (sz / z_factor, min(sy, sx))  # the estimate's voxel size
        strides = z_strides(config, least[0] * z_factor, voxel)
        multiple = 2 ** sum(1 for st in strides if st == 2)
        padded.insert(0, padded_length(least[0], z_factor, multiple, multiple))
    return tuple(padded), strides
