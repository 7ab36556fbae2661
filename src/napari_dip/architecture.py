"""Network architecture as data: :class:`NetworkConfig` (torch-free, so presets and request
checking import without torch). The network itself is in :mod:`napari_dip.networks`."""

from __future__ import annotations

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
