"""How much memory a run needs, how much the device has, and the tile size that fits.

The estimate counts the values the network's layers output for the padded image (from the
architecture, without building anything), then

    bytes = ACTIVATION_FACTOR * 4 * activations + 16 * parameters + data + OVERHEAD

(4-byte floats; a training step keeps the activations for the backward pass and needs
gradients of a similar size; parameters come with their gradients and Adam's two moments).
An ensemble of K members (one network K times as wide, grouped) has K times the
activations, parameters, inputs and kept estimates; the measurement is shared.
``ACTIVATION_FACTOR`` = 2 was calibrated on the CPU against the peak resident memory of
three training steps (measured 1.4-2.7x, the higher values on small images where fixed
costs dominate), so the estimate errs on the high side.

Pure Python apart from :func:`available_bytes`, which imports torch to ask the device.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: Activations are counted once by the meta forward pass; a training step needs about twice.
ACTIVATION_FACTOR = 2.0
#: Fixed costs of a run beyond the tensors counted (allocator slack, library workspaces).
OVERHEAD = 100 * 2**20
#: A run may plan on this fraction of the memory that is free when it starts.
USABLE_FRACTION = 0.8


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def activation_count(config, in_channels: int, out_channels: int, shape: tuple[int, ...],
                     z_strides: tuple[int, ...] | None = None) -> int:
    """Values output by the layers (convolutions, BatchNorms, activations, upsamplings, the
    head) of the skip network in one forward pass on an input of spatial ``shape``;
    equal to a count with forward hooks on every leaf module (tested)."""
    total = 0
    size = list(shape)
    for i in range(config.scales):
        pixels = math.prod(size)
        strides = [2] * len(size) if z_strides is None else [z_strides[i], 2, 2]
        down_size = [-(-n // s) for n, s in zip(size, strides, strict=True)]
        down_pixels = math.prod(down_size)
        down, up, skip = config.channels_down[i], config.channels_up[i], config.channels_skip[i]
        total += 3 * skip * pixels  # skip branch: conv, BN, activation
        total += 6 * down * down_pixels  # two conv-BN-activation blocks
        below = config.channels_up[i + 1] if i + 1 < config.scales else down
        total += below * pixels  # upsampling
        total += (skip + below) * pixels  # the merge's BatchNorm
        total += 6 * up * pixels  # kernel_up and 1x1 conv-BN-activation blocks
        size = down_size
    return total + out_channels * math.prod(shape)  # the head


def estimate_bytes(config, in_channels: int, out_channels: int, shape: tuple[int, ...],
                   z_strides: tuple[int, ...] | None = None, measurement_values: int = 0,
                   members: int = 1) -> int:
    """Bytes a DIP run of the network ``config`` needs on an estimate of spatial ``shape``
    (padded: (H, W), or (D, H, W) with ``z_strides``). ``measurement_values`` counts the
    values of y, the mask and the like; ``members``: an ensemble's fits in one network."""
    pixels = math.prod(shape)
    activations = members * activation_count(config, in_channels, out_channels, shape,
                                             z_strides)
    params = members * parameter_count(config, in_channels, out_channels, len(shape))
    # z, the averaged estimate, the early-stopping copy and the last output (each member's),
    # plus the data
    data = 4 * (members * pixels * (in_channels + 3 * out_channels) + measurement_values)
    return int(ACTIVATION_FACTOR * 4 * (activations + members * pixels * in_channels)
               + 16 * params + data + OVERHEAD)


def parameter_count(config, in_channels: int, out_channels: int, dims: int = 2) -> int:
    """Weights and biases of the skip network (BatchNorm's scale and shift included)."""

    def conv(cin, cout, k):
        return cin * cout * k**dims + cout

    total = 0
    cin = in_channels
    for i in range(config.scales):
        down, up, skip = config.channels_down[i], config.channels_up[i], config.channels_skip[i]
        below = config.channels_up[i + 1] if i + 1 < config.scales else down
        if skip:
            total += conv(cin, skip, config.kernel_skip) + 2 * skip
        total += conv(cin, down, config.kernel_down) + conv(down, down, config.kernel_down) \
            + 4 * down
        total += 2 * (skip + below) + conv(skip + below, up, config.kernel_up) \
            + conv(up, up, 1) + 4 * up
        cin = down
    return total + conv(config.channels_up[0], out_channels, 1)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """Memory left under a cgroup (v2) limit, e.g. in a container; None without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def system_available() -> int | None:
    """Bytes of main memory free for a new allocation, or None when unknown."""
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if not values:
        try:
            import psutil  # optional

            values.append(int(psutil.virtual_memory().available))
        except Exception:  # noqa: BLE001 - any failure just means "unknown"
            pass
    if not values:
        try:
            values.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(values)


def available_bytes(device) -> int | None:
    """Free memory of ``device`` (a torch.device) in bytes, or None when it cannot be told."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # blocks torch has cached but not handed out are free for this run too
        return int(free + torch.cuda.memory_reserved(device)
                   - torch.cuda.memory_allocated(device))
    if device.type == "mps":
        try:
            limit = torch.mps.recommended_max_memory()
            return int(limit - torch.mps.driver_allocated_memory())
        except Exception:  # noqa: BLE001 - older torch: fall back to main memory
            return system_available()
    return system_available()


def largest_tile(bytes_per_side, budget: int, multiple: int, minimum: int,
                 maximum: int) -> int | None:
    """The largest tile side (a multiple of ``multiple``, between ``minimum`` and
    ``maximum``) whose ``bytes_per_side(side)`` fits ``budget``; None if even the smallest
    does not."""
    side = max(minimum, (maximum // multiple) * multiple)
    while True:
        need = bytes_per_side(side)
        if need <= budget:
            return side
        if side <= minimum:
            return None
        # memory grows with the area: jump close to the answer, then step down
        guess = int(side * math.sqrt(budget / need)) // multiple * multiple
        side = max(minimum, min(side - multiple, guess))
